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


def test_the_hint_says_what_to_do_next_at_every_stage(inventory) -> None:
    """Never "press Check" while a move runs or after the checks passed (a stale line under a running task)."""
    c = _picked(inventory)
    c.choose("host", _value(c.host_options(), "esx-03"))
    assert c.hint() == "Ready: press Check."
    c.checks = pd.DataFrame([["x", "pass", "", ""]], columns=["check", "status", "found", "remedy"])
    assert "press Migrate" in c.hint()
    c.busy = True
    assert "Running" in c.hint() and "press" not in c.hint()
    c.busy = False
    c.checks = pd.DataFrame([["x", "fail", "bad", ""]], columns=["check", "status", "found", "remedy"])
    assert "Checks failed" in c.hint() and "force" in c.hint()


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

    from runbook.engine.context import RunContext

    wz = Wizard(None, inventory, context=RunContext(via="app", run_dir="/x"))  # type: ignore[arg-type]
    assert wz.context.via == "app" and wz.context.run_dir is None  # each run makes its own directory


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
    assert wz.run.progress.layout.display is None and wz.progress.value == 100
    assert "rb-report-link" in json.dumps(wz.result_out.outputs) and wz.checks_box.selected_index is None
    wz.pick(vm=str(_vm(inv, "web-03")["moid"]))
    assert wz.result_out.outputs == () and wz.checks_out.outputs == ()
    assert wz.run.progress.layout.display == "none" and wz.progress.value == 0 and wz.state.value == ""


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


# -- the later steps: network, datastores' verdicts, advanced ---------------------------------------------------
def _with(inventory, table: str, name: str, column: str, value):
    """A copy of the inventory where the row ``name`` of ``table`` has ``column`` set to ``value``."""
    df = getattr(inventory, table).copy()
    idx = df.index[df["name"] == name][0]
    df.at[idx, column] = value
    return type(inventory)(**{**inventory.__dict__, table: df})


def test_a_cluster_of_one_host_says_host(inventory) -> None:
    c = Choices(_with(inventory, "clusters", "Cluster-A", "host_count", 1))
    assert [label for label, _ in c.cluster_options()] == ["Cluster-A (DC1, 1 host)"]


def test_a_target_host_lacking_a_port_group_asks_for_a_mapping(inventory) -> None:
    inv = _with(inventory, "hosts", "esx-03.lab.local", "port_groups", ["VM Network", "Storage Net"])
    c = _picked(inv, "app-01")  # app-01's NIC is on "App Network"
    label = next(label for label, _ in c.host_options() if label.startswith("esx-03"))
    assert label.endswith("✔ checks pass  · needs a network mapping"), label
    c.choose("host", _value(c.host_options(), "esx-03"))
    assert c.missing_port_groups() == ["App Network"] and c.needed("network")
    assert c.next_step() == "network" and not c.can_check() and c.plan() is None
    assert c.network_options() == [("Storage Net", "Storage Net"), ("VM Network", "VM Network")]
    assert c.nics_on("App Network") == [f"Network adapter 1 ({_vm(inv, 'app-01')['nics'][0]['mac']})"]
    c.choose_network("App Network", "VM Network")
    assert c.can_check() and c.plan().network_map == {"App Network": "VM Network"}
    assert "App Network -> VM Network" in c.describe()
    c.choose("host", _value(c.host_options(), "esx-02"))  # another host: the mapping goes with the old one
    assert c.network == {} and not c.needed("network") and c.can_check()


def test_a_single_port_group_on_the_target_is_picked_for_the_mapping(inventory) -> None:
    inv = _with(inventory, "hosts", "esx-03.lab.local", "port_groups", ["VM Network"])
    c = _picked(inv, "app-01")
    c.choose("host", _value(c.host_options(), "esx-03"))
    assert c.network == {"App Network": "VM Network"} and c.can_check()


def test_datastores_carry_the_verdict_of_the_storage_checks(inventory) -> None:
    inv = _with(inventory, "datastores", "nfs-02", "free_bytes", 2**29)  # 0.5 GiB free
    c = _picked(inv, "web-01", "datastore")
    labels = dict((label.split(" ")[0], label) for label, _ in c.datastore_options())
    assert labels["nfs-02"].endswith("✖ fails: free space on the target datastore"), labels
    assert labels["local-esx-01"].endswith("✔ checks pass")
    assert c.datastore_problem() == ""
    c.choose("datastore", _value(c.datastore_options(), "nfs-02"))
    problem = c.datastore_problem()
    assert problem.startswith("✖ free space on the target datastore: needs") and "Remedy: " in problem, problem


def test_advanced_picks_go_into_the_plan_and_clear_with_the_picks_above(inventory) -> None:
    c = _picked(inventory, "app-01", "datastore")
    assert [v for _, v in c.pool_options()][0] == "" and len(c.pool_options()) == 2
    c.choose("datastore", _value(c.datastore_options(), "nfs-02"))
    assert [str(d["label"]) for d in c.vm_disks()] == ["Hard disk 1", "Hard disk 2"]
    local = _value(c.disk_datastore_options(), "local-esx-01")
    c.choose_disk("Hard disk 2", local, "thin")
    c.choose_pool(c.pool_options()[1][1])
    plan = c.plan()
    assert plan.disk_placement == {"Hard disk 2": (local, "thin")} and plan.resource_pool == c.pool_options()[1][1]
    c.choose_disk("Hard disk 2", "", "thin")  # "with the VM" again: no placement
    assert c.disks == {}
    c.choose_disk("Hard disk 1", local, "same")
    c.choose("datastore", _value(c.datastore_options(), "nfs-01"))
    assert c.disks == {} and c.resource_pool == ""


def test_the_wizard_request_carries_mapping_change_id_priority_pool_and_disks(wizard, inventory) -> None:
    c = wizard.choices
    wizard.pick(vm=str(_vm(inventory, "app-01")["moid"]), kind="datastore")
    wizard.pick(datastore=_value(c.datastore_options(), "nfs-02"))
    ds, fmt = wizard.advanced.disk_pickers["Hard disk 2"]
    assert fmt.disabled  # a format changes only when the disk is copied: pick its datastore first
    ds.value = _value(c.disk_datastore_options(), "local-esx-01")
    assert not fmt.disabled
    fmt.value = "thin"
    wizard.advanced.change_id.value = "CHG-42"
    wizard.advanced.priority.value = "high"
    request = wizard.request()
    assert request.disk_placement == {"Hard disk 2": "local-esx-01:thin"}
    assert (request.change_id, request.priority, request.target_datastore) == ("CHG-42", "high", "nfs-02")
    assert "Hard disk 2" in wizard.hint.value
    wizard.pick(kind="host")  # a new pick above: the per-disk rows and placement go
    assert c.disks == {} and wizard.advanced.disk_pickers == {}


def test_the_probe_chart_marks_lost_probes_and_redraws_at_most_4_times_a_second() -> None:
    from runbook.engine.events import PingSample
    from runbook.fronts.wizard_probes import ProbeChart

    chart = ProbeChart(hz=4)
    for i in range(40):  # 40 samples in well under a second
        chart.add(PingSample("127.0.0.1", sent=10 * (i + 1), lost=3 if i >= 20 else 0, last_rtt_ms=0.2 + i / 100))
    assert chart.draws == 1 and len(chart.points) == 40
    chart.draw()
    svg = chart.widget.value
    assert svg.count('class="rb-lost"') == 1 and "3 lost by probe 210" in svg
    assert "<polyline" in svg and "400 sent, 3 lost" in svg


def test_the_run_panel_names_every_phase_of_a_move() -> None:
    from runbook.engine.events import PingSample, RunFinished, Step, TaskProgress
    from runbook.fronts.wizard_run import RunPanel

    panel = RunPanel(on_cancel=lambda: None)
    panel.start()
    shown = []
    for event in (Step("checks", "started", "checks:"), Step("checks", "ended", "All 16 checks passed"),
                  Step("submit", "started", "submitting the relocation of web-01"),
                  Step("task", "started", "task task-1 started"), TaskProgress("task-1", 45, "running"),
                  PingSample("127.0.0.1", 20, 0, 0.3), TaskProgress("task-1", 100, "success"),
                  Step("ping tail", "started", "probing 5 s more after the task"),
                  Step("verify", "started", "verifying where the vCenter says the VM is"),
                  RunFinished("SUCCEEDED", "moved", 0)):
        panel.on_event(event)
        shown.append(panel.state.value)
    assert shown == ["checks", "checks: All 16 checks passed", "submitting the relocation of web-01",
                     "task 0%", "task 45% running", "task 45% running", "task 100% success",
                     "ping tail: probing 5 s more after the task", "verifying where the vCenter says the VM is",
                     "SUCCEEDED"]
    assert panel.progress.value == 100 and "20 sent, 0 lost" in panel.ping_label.value
    assert panel.progress.layout.display is None and panel.live.layout.display is None


def test_the_record_is_a_link_relative_to_the_notebook(tmp_path) -> None:
    from runbook.fronts.wizard_run import report_link

    report = tmp_path / "reports" / "2026-12-01" / "CHG 1-120000Z" / "report.html"
    link = report_link(report, start=tmp_path / "notebooks")
    assert 'href="../reports/2026-12-01/CHG%201-120000Z/report.html"' in link
    assert "CHG 1-120000Z/report.html</a>" in link


def test_run_all_stops_quietly_at_the_chooser(capsys) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from runbook.fronts import notebook

    shell = InteractiveShell.instance()
    notebook.setup()
    result = shell.run_cell("from runbook.fronts.notebook import StopHere\nraise StopHere('Pick a VM above.')")
    assert not result.success  # the kernel answers "error": Run All stops here
    out = capsys.readouterr()
    assert out.out == "Pick a VM above.\n" and "Traceback" not in out.err and "StopHere" not in out.out + out.err
    with pytest.raises(notebook.StopHere, match="Set vm"):
        notebook.wait_for_input({"vm": ""}, "Set vm above.")
    assert notebook.wait_for_input({"vm": "web-01"}, "x") is None
    assert notebook.wait_for_input({"vm": "", "run_context": "/run/context.json"}, "x") is None


def test_the_ping_tail_is_counted_down_until_the_next_phase() -> None:
    import time

    from runbook.engine.events import Step
    from runbook.fronts.wizard_run import RunPanel

    panel = RunPanel(on_cancel=lambda: None)
    panel.start(tail_s=3)
    panel.on_event(Step("ping tail", "started", "probing 3 s more after the task"))
    time.sleep(0.3)
    assert panel.state.value in ("ping tail: 3 s left, probing after the task",
                                 "ping tail: 2 s left, probing after the task"), panel.state.value
    panel.on_event(Step("verify", "started", "verifying where the vCenter says the VM is"))
    time.sleep(0.8)
    assert panel.state.value == "verifying where the vCenter says the VM is"  # the countdown stopped
