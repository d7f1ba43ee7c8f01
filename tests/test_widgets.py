"""The migration wizard without a kernel: options, resets and enabling (runbook.choices), the ipywidgets view
over it (runbook.widgets), and one move from the widgets against a fresh lab with its change record."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from runbook import connect, read_inventory
from runbook.fronts.choices import STEPS, Choices, verdict_mark
from runbook.errors import BadInput


@pytest.fixture(scope="module")
def inventory(lab):
    """The shared lab's inventory, read once (the tests here only read it)."""
    from conftest import lab_env

    from runbook import settings_from_env

    with connect(settings_from_env(lab_env(lab))) as si:
        return read_inventory(si)


def _value(options, starts: str) -> str:
    return next(v for label, v in options if label.startswith(starts))


def _vm(inventory, name: str) -> pd.Series:
    return inventory.vms[inventory.vms["name"] == name].iloc[0]


def _picked(inventory, vm: str = "web-01", kind: str = "host") -> Choices:
    c = Choices(inventory)
    c.choose("cluster", c.cluster_options()[0][1])
    c.choose("vm", str(_vm(inventory, vm)["moid"]))
    c.choose("kind", kind)
    return c


# -- options ---------------------------------------------------------------------------------------------
def test_only_the_only_cluster_is_chosen_at_first_and_options_follow_the_picks(inventory) -> None:
    c = Choices(inventory)
    assert c.cluster_options() == [("Cluster-A (DC1, 3 hosts)", c.cluster)]  # the only choice: picked
    assert all(getattr(c, s) is None for s in STEPS[1:])
    assert c.kind_options() == [] and c.host_options() == []
    assert c.next_step() == "vm" and not c.can_check()
    names = [label.split(" · ")[0] for label, _ in c.vm_options()]
    assert "web-01" in names and names == sorted(names)
    assert c.next_step() == "vm"


def test_vm_labels_show_power_host_datastores_and_ip(inventory) -> None:
    c = Choices(inventory)
    c.choose("cluster", c.cluster_options()[0][1])
    row = _vm(inventory, "web-01")
    label = next(label for label, v in c.vm_options() if v == row["moid"])
    assert label.split(" · ") == ["web-01", row["power_state"], row["host"], ", ".join(row["datastores"]),
                                  row["guest_ip"]]
    c.choose("vm", row["moid"])
    details = c.vm_details()
    assert details["Host"] == row["host"] and details["IP"] == row["guest_ip"]


def test_the_vm_filter_narrows_the_list_and_unpicks_a_hidden_vm(inventory) -> None:
    c = _picked(inventory)
    c.filter_vms("web-0")
    assert c.vm is not None and all("web-0" in label for label, _ in c.vm_options())
    assert c.filter_vms("app-") == ["vm", "kind"]
    assert c.vm is None and c.kind is None


def test_host_candidates_exclude_the_current_host_and_carry_a_verdict(inventory) -> None:
    c = _picked(inventory)
    current = _vm(inventory, "web-01")["host"]
    labels = [label for label, _ in c.host_options()]
    assert len(labels) == 2 and not any(label.startswith(current) for label in labels)
    assert all("✔ checks pass" in label for label in labels)
    assert c.datastore_options() == [] and c.format_options() == []  # a host-only move has neither


def test_datastores_are_those_the_running_host_mounts_with_free_space(inventory) -> None:
    c = _picked(inventory, kind="both")
    target = _value(c.host_options(), "esx-03")
    assert c.datastore_options() == []  # not before the host that will run the VM is known
    c.choose("host", target)
    names = [label.split(" ")[0] for label, _ in c.datastore_options()]
    assert names == ["local-esx-03", "nfs-01", "nfs-02"]
    assert all("free of" in label for label, _ in c.datastore_options())
    c2 = _picked(inventory, kind="datastore")  # storage only: the VM's own host
    own = _vm(inventory, "web-01")["host"].split(".")[0]
    assert [label.split(" ")[0] for label, _ in c2.datastore_options()] == [f"local-{own}", "nfs-01", "nfs-02"]


def test_a_verdict_names_failing_and_warning_checks() -> None:
    df = pd.DataFrame([["a", "pass", "", ""], ["b", "warn", "", ""], ["c", "fail", "", ""]],
                      columns=["check", "status", "found", "remedy"])
    assert verdict_mark(df) == "✖ fails: c"
    assert verdict_mark(df[df.status != "fail"]) == "⚠ 1 warning: b"
    assert verdict_mark(df[df.status == "pass"]) == "✔ checks pass"


def test_a_host_that_fails_a_check_says_so(inventory) -> None:
    hosts = inventory.hosts.copy()
    hosts.loc[hosts["name"] == "esx-03.lab.local", "maintenance"] = True
    c = _picked(type(inventory)(**{**inventory.__dict__, "hosts": hosts}))
    label = next(label for label, _ in c.host_options() if label.startswith("esx-03"))
    assert "✖ fails: target host state" in label


# -- resets ------------------------------------------------------------------------------------------------
def test_changing_a_choice_clears_the_choices_below_it_and_the_checks(inventory) -> None:
    c = _picked(inventory, kind="both")
    c.choose("host", _value(c.host_options(), "esx-03"))
    c.choose("datastore", _value(c.datastore_options(), "nfs-02"))
    c.choose("disk_format", "thin")
    c.checks = pd.DataFrame(columns=["check", "status", "found", "remedy"])
    assert c.choose("host", _value(c.host_options(), "esx-02")) == ["datastore", "disk_format"]
    assert (c.datastore, c.disk_format, c.checks) == (None, None, None)
    assert c.choose("kind", "host") == ["host"]
    assert c.choose("host", c.host) == []  # the same value again changes nothing
    with pytest.raises(ValueError):
        c.choose("colour", "red")


def test_plan_is_complete_only_with_every_needed_step(inventory) -> None:
    c = _picked(inventory, kind="datastore")
    assert c.plan() is None and c.next_step() == "datastore" and "datastore" in c.hint()
    c.choose("datastore", _value(c.datastore_options(), "nfs-02"))
    assert c.disk_format == "same" and c.can_check()  # "Same format as source" unless another is picked
    assert c.plan().disk_format == "same"
    c.choose("disk_format", "thin")
    plan = c.plan()
    assert plan.target_host is None and plan.disk_format == "thin" and plan.vm == _vm(inventory, "web-01")["moid"]
    assert "nfs-02 as thin" in c.describe() and c.hint() == "Ready: press Check."


# -- enabling ----------------------------------------------------------------------------------------------
def test_migrate_needs_checks_without_failures_or_a_force_reason(inventory) -> None:
    c = _picked(inventory)
    c.choose("host", _value(c.host_options(), "esx-03"))
    assert c.can_check() and not c.can_migrate()
    c.checks = pd.DataFrame([["x", "pass", "", ""]], columns=["check", "status", "found", "remedy"])
    assert c.can_migrate()
    c.checks = pd.DataFrame([["x", "fail", "bad", ""]], columns=["check", "status", "found", "remedy"])
    assert not c.can_migrate() and not c.can_migrate("  ") and c.can_migrate("change CHG-1 approved")
    c.busy = True
    assert not c.can_migrate("reason") and not c.can_check()


# -- the ipywidgets view -----------------------------------------------------------------------------------
@pytest.fixture
def wizard(inventory):
    from runbook.vsphere.connection import Settings
    from runbook.fronts.widgets import Wizard

    return Wizard(Settings(host="127.0.0.1", port=1, scheme="http", username="u", password="p", timeout=2), inventory, ping="none")


def test_the_view_starts_empty_and_disables_what_cannot_be_used_yet(wizard) -> None:
    p = wizard.pickers
    assert p["cluster"].value == wizard.choices.cluster  # the only cluster, and nothing else pre-selected
    assert all(p[s].value is None for s in STEPS[1:])
    assert not p["cluster"].disabled and not p["vm"].disabled and p["kind"].disabled
    assert wizard.check_button.disabled and wizard.migrate_button.disabled


def test_the_view_follows_picks_and_resets_below(wizard, inventory) -> None:
    p, c = wizard.pickers, wizard.choices
    p["cluster"].value = c.cluster_options()[0][1]
    assert p["vm"].options and p["vm"].value is None and not p["vm"].disabled
    p["vm"].value = str(_vm(inventory, "web-01")["moid"])
    assert "web-01" in wizard.details.value
    p["kind"].value = "both"
    assert p["host"].value is None and len(p["host"].options) == 2
    assert p["datastore"].layout.display is None and p["datastore"].disabled
    p["host"].value = _value(p["host"].options, "esx-03")
    p["datastore"].value = _value(p["datastore"].options, "nfs-02")
    assert p["disk_format"].value == "same" and not p["disk_format"].disabled and not wizard.check_button.disabled
    p["disk_format"].value = "thin"
    assert not wizard.check_button.disabled and wizard.migrate_button.disabled
    p["host"].value = _value(p["host"].options, "esx-02")
    assert p["datastore"].value is None and p["disk_format"].value is None and wizard.check_button.disabled
    p["kind"].value = "host"
    assert p["datastore"].layout.display == "none" and p["host"].value is None
    assert p["cluster"].layout is not p["vm"].layout  # hiding one picker must not hide the others


def test_the_force_reason_enables_migrate_over_failed_checks(wizard, inventory) -> None:
    c = wizard.choices
    wizard.pick(cluster=c.cluster_options()[0][1], vm=str(_vm(inventory, "web-01")["moid"]), kind="host")
    wizard.pick(host=_value(c.host_options(), "esx-03"))
    c.checks = pd.DataFrame([["x", "fail", "bad", ""]], columns=["check", "status", "found", "remedy"])
    wizard._sync_buttons()
    assert wizard.migrate_button.disabled
    wizard.force.value = "approved in CHG-7"
    assert not wizard.migrate_button.disabled


def test_check_shows_a_connection_error_instead_of_swallowing_it(wizard, inventory) -> None:
    c = wizard.choices
    wizard.pick(cluster=c.cluster_options()[0][1], vm=str(_vm(inventory, "web-01")["moid"]), kind="host")
    wizard.pick(host=_value(c.host_options(), "esx-03"))
    wizard.check()
    shown = json.dumps(wizard.checks_out.outputs)
    assert "ConnectionFailed" in shown and wizard.error is not None
    assert c.checks is None and not c.busy and wizard.migrate_button.disabled


def test_the_chooser_cell_is_silent_when_vm_is_given_or_headless(capsys) -> None:
    from runbook.fronts.widgets import chooser

    assert chooser({"vm": "web-01"}) is None
    assert chooser({"vm": "", "run_context": "/some/run/context.json"}) is None  # headless: the next cell refuses
    assert capsys.readouterr().out == ""


def test_unknown_wizard_parameters_are_refused(inventory) -> None:
    from runbook.fronts.widgets import Wizard

    with pytest.raises(BadInput, match="colour"):
        Wizard(None, inventory, colour="red")  # type: ignore[arg-type]


# -- one move from the widgets, with its change record --------------------------------------------------------
def test_migrate_from_the_widgets_moves_the_vm_and_writes_the_record(fresh_lab, tmp_path) -> None:
    from runbook import settings_from_env
    from runbook_lab import LabControl
    from runbook.fronts.widgets import Wizard

    info = fresh_lab("default")
    settings = settings_from_env()
    with connect(settings) as si:
        inv = read_inventory(si)
    wz = Wizard(settings, inv, ping_tail=0.5)
    c = wz.choices
    wz.pick(cluster=c.cluster_options()[0][1], vm=str(_vm(inv, "web-02")["moid"]), kind="both")
    wz.pick(host=_value(c.host_options(), "esx-03"))
    wz.pick(datastore=_value(c.datastore_options(), "nfs-02"), disk_format="thin")
    wz.check()
    assert wz.choices.checks is not None and not wz.migrate_button.disabled, wz.checks_out.outputs
    wz.migrate(wait=True)
    assert wz.error is None and wz.result.outcome == "SUCCEEDED", wz.result.record
    where = LabControl(info).placement("web-02")
    assert where["host"] == "esx-03.lab.local" and "nfs-02" in where["vm_path_name"]
    run_dir = next((tmp_path / "reports").glob("*/*/record.json")).parent
    data = json.loads((run_dir / "record.json").read_text())
    assert data["parameters"]["vm"] == "web-02" and data["parameters"]["disk_format"] == "thin"
    assert data["exit_code"] == 0 and data["ping"]["probes_sent"] > 0
    html = (run_dir / "report.html").read_text()
    assert "SUCCEEDED" in html and "Ping through the move" in html and "data:image/png;base64" in html
    assert "SUCCEEDED" in json.dumps(wz.result_out.outputs) and "probes" in wz.ping_label.value
    assert c is not wz.choices and wz.choices.vm == str(_vm(inv, "web-02")["moid"])  # re-read after the move
    assert "esx-03" in wz.details.value  # the VM's new place
    from runbook.records import record

    record.validate(data)
    # A new pick clears the last run's banner, progress and result: nothing of web-02's move shows for web-03.
    assert wz.run_box.layout.display is None and wz.progress.value == 100
    wz.pick(vm=str(_vm(inv, "web-03")["moid"]))
    assert wz.result_out.outputs == () and wz.checks_out.outputs == ()
    assert wz.run_box.layout.display == "none" and wz.progress.value == 0 and wz.state.value == ""


def test_a_datastore_that_already_holds_the_disks_offers_only_the_same_format(inventory) -> None:
    c = _picked(inventory, "web-01", "both")
    c.choose("host", _value(c.host_options(), "esx-02"))
    here = [v for label, v in c.datastore_options() if label.startswith("nfs-01")]
    elsewhere = [v for label, v in c.datastore_options() if label.startswith("nfs-02")]
    assert here and elsewhere, c.datastore_options()
    c.choose("datastore", here[0])  # web-01's disk is on nfs-01: a format change would need a copy
    assert [fmt for _, fmt in c.format_options()] == ["same"]
    c.choose("datastore", elsewhere[0])
    assert [fmt for _, fmt in c.format_options()] == ["same", "thin", "thick", "eagerzeroedthick"]
