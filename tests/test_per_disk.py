"""Per-disk placement (issue 19): each disk to a datastore and format of its own, from the request to what the
vCenter reports afterwards; devices named as an admin knows them; remedies that offer only what the VM has
and what changes something.

The first tests work on hand-built inventories (no server); the last ones move a two-disk VM of the lab through
``runbook.migrate()`` over real SOAP and read the lab back through a session of their own.
"""
from __future__ import annotations

import json

import pytest
from pyVmomi import vim

import runbook
from conftest import lab_settings
from runbook.domain.checks import run_checks
from runbook.domain.checks.storage import DISK_FORMAT, FREE_SPACE, SHARED_STORAGE, TARGET_DATASTORE
from runbook.domain.move import MoveState
from runbook.domain.plan import MigrationPlan, resolve
from runbook.domain.spec import build_relocate_spec, spec_to_dict
from runbook.engine.context import RunContext
from runbook.engine.requests import build
from runbook.errors import BadInput
from runbook.vsphere.connection import login, logout
from runbook.vsphere.devices import display_name
from test_plan import GIB, make_inventory


def row(df, name: str):
    rows = df[df["check"] == name]
    assert len(rows) == 1, df["check"].tolist()
    return rows.iloc[0]


def plan(**fields) -> MigrationPlan:
    """The domain's plan as a request makes it (the text form parsed in one place)."""
    return build("migrate", {"vm": "db1", **fields}).plan()


# --- device names ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("device, name", [
    ({"key": 2000, "label": "Hard disk 1", "file": "[nfs-01] web-01/web-01.vmdk"}, "Hard disk 1 (web-01.vmdk)"),
    ({"key": 2000, "label": "disk-202-0", "file": None}, "disk-202-0 (key 2000)"),
    ({"key": 4000, "label": "Network adapter 1", "mac": "00:50:56:00:00:01"}, "Network adapter 1 (00:50:56:00:00:01)"),
    ({"key": 3000, "label": "CD/DVD drive 1", "kind": "iso", "iso": "[iso] os/ubuntu.iso"},
     "CD/DVD drive 1 (ubuntu.iso)"),
    ({"key": 3001, "label": "CD/DVD drive 2", "kind": "client-device", "iso": None}, "CD/DVD drive 2 (client device)"),
    ({"key": 3002, "label": None}, "device 3002"),
])
def test_a_device_keeps_the_servers_label_with_what_tells_it_apart(device, name):
    assert display_name(device) == name


# --- the plan -------------------------------------------------------------------------------------------

def test_each_disk_goes_to_its_own_datastore_and_the_home_stays_without_a_target_datastore():
    r = resolve(make_inventory(), plan(disk_placement={"Hard disk 1": "shared:thin"}))
    one, two = r.disks
    assert (one.target_datastore, one.target_format, one.moves, one.placed) == ("shared", "thin", True, True)
    assert (two.target_datastore, two.moves, two.placed) == ("shared", False, False)  # already there, not placed
    assert not r.home_moves and r.kind == "datastore" and r.target_datastores() == {"shared": "datastore-10"}
    spec = spec_to_dict(build_relocate_spec(r))
    assert "datastore" not in spec  # the home stays
    assert spec["disk"] == [{"diskId": 2000, "datastore": "datastore-10", "format": "thin"}]
    assert r.to_dict()["disk_placement"] == {
        "Hard disk 1 (vm_2000.vmdk)": {"datastore": "shared", "format": "thin", "moves": True}}
    assert "Hard disk 1 (vm_2000.vmdk) local-esx1 -> shared (thin)" in MoveState(resolved=r).move_words()


def test_the_home_and_unplaced_disks_follow_the_target_datastore_placed_ones_their_own():
    r = resolve(make_inventory(), plan(target_datastore="shared", disk_placement=["2001=local-esx1:thick"]))
    spec = spec_to_dict(build_relocate_spec(r))
    assert spec["datastore"] == "datastore-10" and r.home_moves
    assert spec["disk"] == [{"diskId": 2000, "datastore": "datastore-10", "format": "same"},
                            {"diskId": 2001, "datastore": "datastore-11", "format": "thick"}]
    assert r.target_datastores() == {"shared": "datastore-10", "local-esx1": "datastore-11"}


def test_an_unknown_disk_is_refused_naming_the_vms_disks():
    with pytest.raises(BadInput) as refused:
        resolve(make_inventory(), plan(disk_placement={"Hard disk 3": "shared"}))
    text = str(refused.value)
    assert "VM db1 has no disk 'Hard disk 3'" in text and "\n" not in text
    assert "Hard disk 1 (vm_2000.vmdk) key 2000, Hard disk 2 (vm_2001.vmdk) key 2001" in text


def test_one_disk_placed_twice_is_refused():
    with pytest.raises(BadInput, match="placed twice"):
        resolve(make_inventory(), plan(disk_placement={"Hard disk 1": "shared", "2000": "local-esx2"}))


def test_a_format_for_a_disk_that_stays_is_refused_naming_that_disk():
    with pytest.raises(BadInput, match=r"Hard disk 2 \(vm_2001.vmdk\), thin on shared: it stays there"):
        resolve(make_inventory(), plan(disk_placement={"Hard disk 2": "shared:thick"}))


# --- the checks -----------------------------------------------------------------------------------------

def test_free_space_is_summed_per_target_datastore():
    inv = make_inventory()
    inv.datastores.loc[inv.datastores["name"] == "local-esx2", "free_bytes"] = 30 * GIB
    both = plan(target_host="esx2", disk_placement=["Hard disk 1=shared:thick", "Hard disk 2=local-esx2"])
    df = run_checks(inv, both)
    found = row(df, FREE_SPACE)["found"]
    # 100 GiB thick to shared fits; Hard disk 2 (thin, 5 GiB committed) to local-esx2 fits its 30 GiB
    assert "needs 100.0 GiB (Hard disk 1 (vm_2000.vmdk) as thick) of 500.0 GiB free on shared" in found
    assert "needs 5.0 GiB (Hard disk 2 (vm_2001.vmdk) as thin) of 30.0 GiB free on local-esx2" in found
    assert row(df, FREE_SPACE)["status"] == "warn"  # local-esx2 is left under the 10% margin
    # both disks to shared: their sum is what counts
    inv.datastores.loc[inv.datastores["name"] == "shared", "free_bytes"] = 104 * GIB
    df = run_checks(inv, plan(target_host="esx2", target_datastore="shared"))
    assert row(df, FREE_SPACE)["status"] == "warn"


def test_thin_is_offered_only_for_a_disk_it_would_change():
    inv = make_inventory()
    inv.datastores.loc[inv.datastores["name"] == "local-esx1", "free_bytes"] = 1 * GIB
    thin_already = run_checks(inv, MigrationPlan(vm="web1", target_datastore="local-esx1"))  # web1's disk is thin
    assert row(thin_already, FREE_SPACE)["status"] == "fail"
    assert "thin" not in row(thin_already, FREE_SPACE)["remedy"]
    inv.datastores.loc[inv.datastores["name"] == "shared", "free_bytes"] = 1 * GIB
    thick = run_checks(inv, plan(disk_placement={"Hard disk 1": "shared"}))  # 100 GiB thick, 100 committed
    assert "thin" not in row(thick, FREE_SPACE)["remedy"]  # fully committed: thin saves nothing
    inv.vms.at[inv.vms.index[inv.vms["name"] == "db1"][0], "disks"][0]["committed_bytes"] = 20 * GIB
    thick = run_checks(inv, plan(disk_placement={"Hard disk 1": "shared"}))
    assert "copy Hard disk 1 (vm_2000.vmdk) as thin" in row(thick, FREE_SPACE)["remedy"]


def test_each_target_datastore_must_be_reachable_from_the_run_host():
    df = run_checks(make_inventory(), plan(disk_placement={"Hard disk 1": "local-esx2"}))  # db1 runs on esx1
    assert row(df, TARGET_DATASTORE)["status"] == "fail"
    assert "datastore local-esx2 is not mounted on host esx1" in row(df, TARGET_DATASTORE)["found"]


def test_a_thick_format_onto_nfs_warns():
    df = run_checks(make_inventory(), plan(disk_placement={"Hard disk 2": "iso:eagerzeroedthick"}))
    assert row(df, DISK_FORMAT)["status"] == "warn" and "iso is NFS" in row(df, DISK_FORMAT)["found"]
    df = run_checks(make_inventory(), plan(disk_placement={"Hard disk 2": "iso:thin"}))
    assert row(df, DISK_FORMAT)["status"] == "pass"


def test_the_shared_storage_remedy_names_only_devices_the_vm_has():
    no_cdrom = run_checks(make_inventory(), MigrationPlan(vm="db1", target_host="esx2"))  # home on local-esx1
    remedy = row(no_cdrom, SHARED_STORAGE)["remedy"]
    assert row(no_cdrom, SHARED_STORAGE)["status"] == "fail"
    assert "CD" not in remedy and "ISO" not in remedy and "--datastore" in remedy and "--disk" in remedy
    with_iso = run_checks(make_inventory(), MigrationPlan(vm="app1", target_host="esx2", target_datastore="shared"))
    remedy = row(with_iso, SHARED_STORAGE)["remedy"]
    assert "point CD/DVD drive 1 (ubuntu.iso) at an ISO" in remedy and "--disk" not in remedy


def test_placing_the_disk_on_shared_storage_lets_the_host_move():
    """db1's disk 1 is on esx1's local datastore: moving it alone to shared storage is enough for esx2."""
    df = run_checks(make_inventory(), plan(target_host="esx2", disk_placement={"Hard disk 1": "shared"}))
    assert row(df, SHARED_STORAGE)["status"] == "fail"  # the home (VM files) stays on local-esx1
    assert "local-esx1 (holds VM files)" in row(df, SHARED_STORAGE)["found"]
    assert "Hard disk" not in row(df, SHARED_STORAGE)["found"]


def test_check_texts_show_names_as_the_operator_wrote_them():
    inv = make_inventory()
    inv.hosts.loc[inv.hosts["name"] == "esx2", "name"] = "esx%2f2"
    for column in ("hosts",):
        inv.datastores[column] = inv.datastores[column].map(lambda hs: ["esx%2f2" if h == "esx2" else h for h in hs])
    df = run_checks(inv, MigrationPlan(vm="db1", target_host="esx/2"))
    texts = " ".join(df["found"]) + " ".join(df["remedy"])
    assert "esx/2" in texts and "%2f" not in texts


# --- on the lab, through real SOAP ---------------------------------------------------------------------------

def _disks(si, name: str) -> list[tuple[str, str, str]]:
    """(label, datastore, format) of each disk, read attribute by attribute from the lab."""
    view = si.content.viewManager.CreateContainerView(si.content.rootFolder, [vim.VirtualMachine], True)
    try:
        vm = next(v for v in view.view if v.name == name)
        disks = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
        home = vm.config.files.vmPathName.split("]")[0].strip("[")
        return home, [(d.deviceInfo.label, d.backing.datastore.name, "thin" if d.backing.thinProvisioned else
                       "eagerzeroedthick" if d.backing.eagerlyScrub else "thick") for d in disks]
    finally:
        view.DestroyView()


def test_two_disks_to_two_datastores_on_the_lab(fresh_lab, tmp_path):
    """app-02 (two thin disks on nfs-01, on esx-02): disk 1 to nfs-02, disk 2 to local-esx-02 as thick."""
    info = fresh_lab()
    settings = lab_settings(info)
    request = build("migrate", {"vm": "app-02", "ping": "none",
                                "disk_placement": ["Hard disk 1=nfs-02", "Hard disk 2=local-esx-02:thick"]})
    res = runbook.migrate(request, settings=settings, context=RunContext(reports_dir=tmp_path / "reports"))
    assert res.outcome == "SUCCEEDED", res.summary
    si = login(settings)
    try:
        home, disks = _disks(si, "app-02")
    finally:
        logout(si)
    assert home == "nfs-01"  # no target datastore: the home stays
    assert disks == [("Hard disk 1", "nfs-02", "thin"), ("Hard disk 2", "local-esx-02", "thick")]
    verification = res.state.verification
    assert verification["ok"].all() and len(verification) == 4
    assert any(item.startswith("Hard disk 2 (app-02_1.vmdk)") for item in verification["item"])
    saved = json.loads((res.run_dir / "record.json").read_text())
    assert saved["parameters"]["disk_placement"] == {"Hard disk 1": "nfs-02", "Hard disk 2": "local-esx-02:thick"}
    placed = saved["plan"]["disk_placement"]
    assert placed["Hard disk 1 (app-02.vmdk)"]["datastore"] == "nfs-02"
    assert placed["Hard disk 2 (app-02_1.vmdk)"] == {"datastore": "local-esx-02", "format": "thick", "moves": True}
    assert [d["datastore"] for d in saved["placement"]["after"]["disks"]] == ["nfs-02", "local-esx-02"]
    assert "Hard disk 2 (app-02_1.vmdk) nfs-01 -> local-esx-02 (thick)" in saved["move"]


def test_a_placed_disk_with_a_host_and_a_target_datastore_on_the_lab(fresh_lab, tmp_path):
    """app-01 (disk 1 on nfs-02, disk 2 on nfs-01) to esx-03 with its home on nfs-01, disk 1 to local-esx-03."""
    info = fresh_lab()
    settings = lab_settings(info)
    request = build("migrate", {"vm": "app-01", "ping": "none", "target_host": "esx-03.lab.local",
                                "target_datastore": "nfs-01", "disk_placement": {"Hard disk 1": "local-esx-03:thick"}})
    res = runbook.migrate(request, settings=settings, context=RunContext(reports_dir=tmp_path / "reports"))
    assert res.outcome == "SUCCEEDED", res.summary
    si = login(settings)
    try:
        home, disks = _disks(si, "app-01")
        host = next(v for v in si.content.viewManager.CreateContainerView(
            si.content.rootFolder, [vim.VirtualMachine], True).view if v.name == "app-01").runtime.host.name
    finally:
        logout(si)
    assert (home, host) == ("nfs-01", "esx-03.lab.local")
    assert disks == [("Hard disk 1", "local-esx-03", "thick"), ("Hard disk 2", "nfs-01", "thick")]
    assert res.state.verification["ok"].all()


def test_the_command_line_takes_disk_placement_from_the_request(lab, tmp_path):
    """``--disk`` is derived from the request's field: repeatable, read through the notebook by papermill."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from conftest import lab_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVC_")}
    env.update(lab_env(lab), RUNBOOK_REPORTS=str(tmp_path / "reports"))
    runbook_cmd = str(Path(sys.executable).with_name("runbook"))
    ok = subprocess.run([runbook_cmd, "check", "--vm", "app-02", "--disk", "Hard disk 1=nfs-02:thick",
                         "--disk", "Hard disk 2=nfs-02"], env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Hard disk 1 (app-02.vmdk) nfs-01 -> nfs-02 as thick" in ok.stdout
    assert "Hard disk 2 (app-02_1.vmdk) nfs-01 -> nfs-02" in ok.stdout
    saved = json.loads(next((tmp_path / "reports").rglob("record.json")).read_text())
    assert saved["parameters"]["disk_placement"] == {"Hard disk 1": "nfs-02:thick", "Hard disk 2": "nfs-02"}
    bad = subprocess.run([runbook_cmd, "check", "--vm", "app-02", "--disk", "Hard disk 3=nfs-02"], env=env,
                         capture_output=True, text=True, timeout=300)
    lines = [line for line in bad.stderr.splitlines() if line.startswith("runbook:")]
    assert bad.returncode == 2 and len(lines) == 1, bad.stderr
    assert "VM app-02 has no disk 'Hard disk 3' (its disks: Hard disk 1 (app-02.vmdk) key" in lines[0]
