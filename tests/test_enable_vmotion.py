"""Tests of runbook.vmotion and the enable-vmotion runbook: the plan on plain data, then the whole remedy
(check, dry run, apply, move, disable, bad input) against throw-away prereq-failures labs, asserted through
what the vCenter itself reports."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from runbook import connect, read_inventory
import runbook_lab as lab_mod
from runbook.records import record
from runbook.domain.checks import run_checks
from runbook.domain.checks.hosts import ENABLE_VMOTION_COMMAND, VMOTION_NETWORK
from runbook.fronts.cli import _parser
from runbook.errors import BadInput, NotFound
from runbook.vsphere.inventory import CLUSTER_COLUMNS, HOST_COLUMNS, VMK_COLUMNS
from runbook.engine.requests import build
from runbook.fronts.pipeline import notebook_path, run_notebook
from runbook.domain.plan import MigrationPlan
from runbook.domain.vmotion import (ADAPTER_COLUMNS, HostNetwork, VmotionRemediation, adapter_table, plan_vmotion,
                             port_group_uplinks)
from conftest import objects_by_name

RUNBOOK = Path(sys.executable).with_name("runbook")
ESX04, ESX05, ESX06, ESX08 = (f"esx-0{n}.lab.local" for n in (4, 5, 6, 8))


# ----- the plan on plain data (no server) -------------------------------------------------------------

def _host(name: str, moid: str, **values: Any) -> dict[str, Any]:
    row = dict.fromkeys(HOST_COLUMNS)
    row.update(name=name, moid=moid, cluster="C1", connection_state="connected", power_state="poweredOn",
               maintenance=False)
    row.update(values)
    return row


def _vmk(host: str, moid: str, device: str, port_group: str, services: list[str]) -> dict[str, Any]:
    return {"host": host, "host_moid": moid, "device": device, "port_group": port_group, "ip": "10.0.0.1",
            "services": services, "vmotion": "vmotion" in services}


def make_inventory() -> SimpleNamespace:
    """h1: management only; h2: vMotion on vmk1; h3: in maintenance; h4: disconnected;
    h5: management on a port group without uplinks; h6: two adapters, none for management."""
    hosts = [_host("h1", "host-1"), _host("h2", "host-2"), _host("h3", "host-3", maintenance=True),
             _host("h4", "host-4", connection_state="disconnected"), _host("h5", "host-5", cluster="C2"),
             _host("h6", "host-6", cluster="C2")]
    vmks = [_vmk("h1", "host-1", "vmk0", "Management Network", ["management"]),
            _vmk("h2", "host-2", "vmk0", "Management Network", ["management"]),
            _vmk("h2", "host-2", "vmk1", "vMotion", ["vmotion"]),
            _vmk("h3", "host-3", "vmk0", "Management Network", ["management"]),
            _vmk("h4", "host-4", "vmk0", "Management Network", ["management"]),
            _vmk("h5", "host-5", "vmk0", "Isolated", ["management"]),
            _vmk("h5", "host-5", "vmk1", "Storage", []),
            _vmk("h6", "host-6", "vmk0", "Storage", []),
            _vmk("h6", "host-6", "vmk1", "Storage 2", [])]
    clusters = [dict(dict.fromkeys(CLUSTER_COLUMNS), name=c, moid=f"domain-{c}") for c in ("C1", "C2")]
    return SimpleNamespace(hosts=pd.DataFrame(hosts, columns=HOST_COLUMNS),
                           vmkernel=pd.DataFrame(vmks, columns=VMK_COLUMNS),
                           clusters=pd.DataFrame(clusters, columns=CLUSTER_COLUMNS))


def make_network(**overrides: Any) -> dict[str, HostNetwork]:
    uplinks = {"Management Network": ("vmnic0",), "vMotion": ("vmnic1",), "Isolated": (), "Storage": ("vmnic2",),
               "Storage 2": ("vmnic3",)}
    net = {f"host-{i}": HostNetwork(f"host-{i}", uplinks, nic_manager="nm", vmotion_system="vs") for i in range(1, 7)}
    net.update(overrides)
    return net


def _one(plan) -> tuple[str, str | None, str]:
    assert len(plan.changes) == 1, plan.changes
    c = plan.changes[0]
    return c.host, c.adapter, c.action


def test_enable_defaults_to_the_management_adapter():
    plan = plan_vmotion(make_inventory(), hosts=["h1"], network=make_network())
    assert _one(plan) == ("h1", "vmk0", "enable")
    assert plan.changes[0].services == ("management",)
    assert plan.describe() == ("would enable vMotion on vmk0 of h1; nothing changed (apply to make the change)")
    assert plan.describe(applied=True) == "enabled vMotion on vmk0 of h1"


def test_a_host_with_vmotion_is_left_alone():
    plan = plan_vmotion(make_inventory(), hosts=["h1", "h2"], network=make_network())
    assert [(c.host, c.adapter, c.action) for c in plan.changes] == [("h1", "vmk0", "enable"), ("h2", "vmk1", "none")]
    assert [c.host for c in plan.pending] == ["h1"]
    assert "1 host already so" in plan.describe()
    only = plan_vmotion(make_inventory(), hosts="h2")
    assert not only.pending and only.describe() == "nothing to change: h2: vMotion already enabled on vmk1"


def test_a_named_adapter_is_used_and_hosts_are_found_by_moid():
    assert _one(plan_vmotion(make_inventory(), hosts=["host-2"], vmk="vmk0")) == ("h2", "vmk0", "enable")
    assert _one(plan_vmotion(make_inventory(), hosts=["h2"], vmk="vmk1")) == ("h2", "vmk1", "none")


def test_disable_takes_vmotion_off_every_vmotion_adapter_or_the_named_one():
    assert _one(plan_vmotion(make_inventory(), hosts=["h2"], disable=True)) == ("h2", "vmk1", "disable")
    assert _one(plan_vmotion(make_inventory(), hosts=["h1"], disable=True)) == ("h1", None, "none")
    assert _one(plan_vmotion(make_inventory(), hosts=["h2"], vmk="vmk0", disable=True)) == ("h2", "vmk0", "none")


def test_a_cluster_chooses_its_hosts():
    plan = plan_vmotion(make_inventory(), cluster="C2", vmk="vmk1", network=make_network())
    assert [(c.host, c.adapter, c.action) for c in plan.changes] == [("h5", "vmk1", "enable"), ("h6", "vmk1", "enable")]


@pytest.mark.parametrize("kwargs, words", [
    (dict(hosts=["h3"]), ["host h3 is in maintenance mode", "exit maintenance mode"]),
    (dict(hosts=["h4"]), ["host h4 is disconnected", "reconnect it"]),
    (dict(hosts=["h1"], vmk="vmk9"), ["host h1 has no VMkernel adapter vmk9 (its adapters: vmk0)", "--vmk"]),
    (dict(hosts=["h5"]), ["host h5: adapter vmk0 is on port group 'Isolated', which has no uplinks",
                          "add an uplink to the vSwitch", "--vmk (vmk1)"]),
    (dict(hosts=["h6"]), ["host h6 has no management adapter to default to (its adapters: vmk0, vmk1)", "--vmk"]),
    (dict(hosts=["h1"], network=make_network(**{"host-1": HostNetwork("host-1", {})})),
     ["host h1 has neither a virtual NIC manager nor a vMotion system"]),
    (dict(), ["choose the hosts"]),
    (dict(cluster="C1", hosts=["h1"]), ["not both"]),
])
def test_bad_input_is_one_line_naming_the_host_and_the_fix(kwargs, words):
    kwargs.setdefault("network", make_network())
    with pytest.raises(BadInput) as info:
        plan_vmotion(make_inventory(), **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_every_host_is_validated_before_any_is_planned():
    with pytest.raises(BadInput) as info:
        plan_vmotion(make_inventory(), hosts=["h1", "h3", "h4", "h5"], network=make_network())
    message = str(info.value)
    assert message.startswith("3 hosts cannot be changed: ") and message.endswith("nothing was changed on any host")
    assert all(f"host {h}" in message for h in ("h3", "h4", "h5")) and "host h1" not in message


def test_unknown_host_or_cluster_is_not_found():
    with pytest.raises(NotFound, match="no host named 'h7'"):
        plan_vmotion(make_inventory(), hosts=["h7"])
    with pytest.raises(NotFound, match="no cluster named 'C9'"):
        plan_vmotion(make_inventory(), cluster="C9")


def test_uplinks_unknown_without_the_network_read():
    assert _one(plan_vmotion(make_inventory(), hosts=["h5"])) == ("h5", "vmk0", "enable")
    table = adapter_table(make_inventory(), ["host-5", "host-1"], make_network())
    assert list(table.columns) == ADAPTER_COLUMNS
    assert table[["host", "device", "uplinks"]].values.tolist() == [
        ["h5", "vmk0", "none"], ["h5", "vmk1", "vmnic2"], ["h1", "vmk0", "vmnic0"]]
    assert adapter_table(make_inventory(), ["host-1"])["uplinks"].tolist() == ["unknown"]


def test_port_group_uplinks_follow_the_vswitch_or_the_teaming_order():
    switches = [vim.host.VirtualSwitch(name="vSwitch0", pnic=["key-vim.host.PhysicalNic-vmnic0"]),
                vim.host.VirtualSwitch(name="vSwitch1", pnic=[])]
    order = vim.host.NetworkPolicy.NicOrderPolicy(activeNic=["vmnic5"], standbyNic=["vmnic6"])
    teamed = vim.host.NetworkPolicy(nicTeaming=vim.host.NetworkPolicy.NicTeamingPolicy(nicOrder=order))
    pgs = [vim.host.PortGroup(spec=vim.host.PortGroup.Specification(name="A", vswitchName="vSwitch0")),
           vim.host.PortGroup(spec=vim.host.PortGroup.Specification(name="B", vswitchName="vSwitch1")),
           vim.host.PortGroup(spec=vim.host.PortGroup.Specification(name="C", vswitchName="vSwitch0"),
                              computedPolicy=teamed)]
    assert port_group_uplinks(pgs, switches) == {"A": ("vmnic0",), "B": (), "C": ("vmnic5", "vmnic6")}


# ----- the notebook and the command -------------------------------------------------------------------

def test_notebook_parameters_match_the_command():
    nb = json.loads(notebook_path("enable-vmotion").read_text())
    params = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    lines = [line.split("  #")[0] for line in "".join(params["source"]).splitlines()[1:]]
    assert lines == ['cluster: str = ""', "hosts: list = []", 'vmk: str = ""', "apply: bool = False",
                     "disable: bool = False", 'change_id: str = ""', 'run_context: str = ""']
    assert all(c.get("id") for c in nb["cells"])
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code")
    args = _parser().parse_args(["enable-vmotion", "--host", "a", "--host", "b", "--vmk", "vmk1", "--apply"])
    request = build("enable-vmotion", {"cluster": "", "hosts": args.hosts, "vmk": args.vmk, "apply": args.apply,
                                       "disable": args.disable})
    assert (request.hosts, request.vmk, request.apply, request.disable) == (["a", "b"], "vmk1", True, False)


def test_the_checks_remedy_is_a_valid_command():
    argv = shlex.split(ENABLE_VMOTION_COMMAND.format(host="esx-04.lab.local"))
    assert argv[0] == "runbook"
    args = _parser().parse_args(argv[1:])
    request = build(args.command, {k: v for k, v in vars(args).items() if k in ("hosts", "apply", "vmk", "disable",
                                                                                "cluster", "change_id")})
    assert (request.kind, request.hosts, request.apply, request.vmk, request.disable) == (
        "enable-vmotion", ["esx-04.lab.local"], True, "", False)


# ----- against the lab --------------------------------------------------------------------------------


def vmotion_state(si: vim.ServiceInstance) -> dict[str, tuple[Any, ...]]:
    """Every host's vMotion selection as the vCenter reports it (both managers and the summary)."""
    return {name: (h.config.vmotion.netConfig.selectedVnic,
                   tuple(h.configManager.virtualNicManager.QueryNetConfig("vmotion").selectedVnic or ()),
                   h.summary.config.vmotionEnabled) for name, h in objects_by_name(si, vim.HostSystem).items()}


def vmotion_check(si: vim.ServiceInstance, vm: str, host: str) -> pd.Series:
    checks = run_checks(read_inventory(si), MigrationPlan(vm=vm, target_host=host))
    return checks[checks["check"] == VMOTION_NETWORK].iloc[0]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RUNBOOK), *args], env=dict(os.environ), capture_output=True, text=True, timeout=300)


def last_record() -> dict[str, Any]:
    reports = Path(os.environ["RUNBOOK_REPORTS"])
    path = max(reports.rglob("record.json"), key=lambda p: p.stat().st_mtime)
    data = json.loads(path.read_text())
    record.validate(data)
    return data


@pytest.fixture
def lab_si(fresh_lab):
    """A prereq-failures lab (fast moves) and a session to it."""
    info = fresh_lab("prereq-failures")
    lab_mod.LabControl(info).set_migration_seconds(None, 0.3)
    with connect() as si:
        yield si


def test_enable_vmotion_end_to_end(lab_si):
    si = lab_si
    # the check finds the host without vMotion and names the remedy command
    row = vmotion_check(si, "app-01", ESX04)
    assert row["status"] == "fail" and ESX04 in row["found"]
    command = ENABLE_VMOTION_COMMAND.format(host=ESX04)
    assert command in row["remedy"]
    start = vmotion_state(si)
    assert start[ESX04] == (None, (), False)

    # dry run: exit 0, says what it would do, changes nothing
    dry = cli("enable-vmotion", "--host", ESX04, "--change-id", "CHG-1")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[-2] == (f"DRY RUN: would enable vMotion on vmk0 of {ESX04}; nothing changed "
                                          f"(apply to make the change)")
    assert vmotion_state(si) == start
    data = last_record()
    assert (data["outcome"], data["exit_code"], data["change_id"]) == ("DRY RUN", 0, "CHG-1")
    assert data["hosts"] == [{"host": ESX04, "host_moid": data["hosts"][0]["host_moid"], "adapter": "vmk0",
                              "change": "enable", "applied": False, "before": ["management"],
                              "after": ["management"], "vmotion_adapters_before": [],
                              "vmotion_adapters_after": [], "note": ""}]

    # the remedy command, verbatim: vMotion is on, as the vCenter reports it
    done = cli(*shlex.split(command)[1:])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2] == f"SUCCEEDED: enabled vMotion on vmk0 of {ESX04}"
    state = vmotion_state(si)
    assert state[ESX04] == ("vmotion.key-vim.host.VirtualNic-vmk0", ("vmotion.key-vim.host.VirtualNic-vmk0",), True)
    assert {h: s for h, s in state.items() if h != ESX04} == {h: s for h, s in start.items() if h != ESX04}
    data = last_record()
    assert data["outcome"] == "SUCCEEDED" and data["exit_code"] == 0
    (host,) = data["hosts"]
    assert (host["before"], host["after"]) == (["management"], ["management", "vmotion"])
    assert (host["vmotion_adapters_before"], host["vmotion_adapters_after"]) == ([], ["vmk0"])

    # the check passes and a live vMotion to the host succeeds
    assert vmotion_check(si, "app-01", ESX04)["status"] == "pass"
    vms, hosts = objects_by_name(si, vim.VirtualMachine), objects_by_name(si, vim.HostSystem)
    assert vms["web-01"].runtime.powerState == "poweredOn"
    WaitForTask(vms["web-01"].RelocateVM_Task(spec=vim.vm.RelocateSpec(host=hosts[ESX04])))
    assert vms["web-01"].runtime.host.name == ESX04

    # applying again changes nothing
    again = run_notebook(build("enable-vmotion", {"hosts": [ESX04], "apply": True}))
    assert (again.outcome, again.exit_code) == ("NO CHANGE", 0), again.record.get("error")

    # disabling restores the failure
    off = run_notebook(build("enable-vmotion", {"hosts": [ESX04], "disable": True, "apply": True}))
    assert (off.outcome, off.exit_code) == ("SUCCEEDED", 0), off.record.get("error")
    assert off.record["summary"] == f"disabled vMotion on vmk0 of {ESX04}"
    assert off.record["hosts"][0]["before"] == ["management", "vmotion"]
    assert off.record["hosts"][0]["after"] == ["management"]
    assert vmotion_state(si)[ESX04] == (None, (), False)
    assert vmotion_check(si, "app-01", ESX04)["status"] == "fail"


@pytest.mark.parametrize("kwargs, words", [
    (dict(hosts=[ESX06], vmk="vmk0"), [f"host {ESX06} is disconnected", "reconnect it"]),
    (dict(hosts=[ESX05], vmk="vmk0"), [f"host {ESX05} is in maintenance mode", "exit maintenance mode"]),
    (dict(hosts=[ESX04], vmk="vmk9"), [f"host {ESX04} has no VMkernel adapter vmk9 (its adapters: vmk0)"]),
    (dict(hosts=[ESX08]), [f"host {ESX08}: adapter vmk0 is on port group 'Management Network', which has no uplinks",
                           "add an uplink"]),
    (dict(hosts=[ESX04, ESX08]), [f"host {ESX08}", "nothing was changed on any host"]),  # ESX04 alone would do
    (dict(cluster="Cluster-A"), ["3 hosts cannot be changed", ESX05, ESX06, ESX08]),
])
def test_bad_input_changes_no_host(lab_si, kwargs, words):
    si = lab_si
    start = vmotion_state(si)
    fix = VmotionRemediation(si, **kwargs)
    fix.read()
    with pytest.raises(BadInput) as info:
        fix.run(apply=True)
    message = str(info.value)
    assert "\n" not in message and message.endswith("nothing was changed on any host")
    for word in words:
        assert word in message
    assert vmotion_state(si) == start


def test_cli_bad_input_exits_2_with_one_line(lab_si):
    start = vmotion_state(lab_si)
    result = cli("enable-vmotion", "--host", ESX04, "--vmk", "vmk9", "--apply")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"runbook: error: host {ESX04} has no VMkernel adapter vmk9 (its adapters: "
                                          f"vmk0); give one of them with --vmk; nothing was changed on any host"]
    assert not list(Path(os.environ["RUNBOOK_REPORTS"]).rglob("record.json")), "a refusal left a record"
    assert vmotion_state(lab_si) == start
