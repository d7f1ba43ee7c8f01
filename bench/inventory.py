"""Inventory benchmark: the runbook's bulk read against pyvmomi attribute-by-attribute, same lab, same run.

    .venv/bin/python bench/inventory.py                 # 1,000, 5,000 and 10,000 VMs (hosts = VMs / 32)
    .venv/bin/python bench/inventory.py --quick         # 1,000 VMs only
    .venv/bin/python bench/inventory.py --sizes 2000 --repeat 5 --sample 100
    .venv/bin/python bench/inventory.py --lab-dir DIR   # a scale lab already running from DIR (its size)

For each size a ``scale`` lab is started (and always stopped). Timed, after one untimed warm-up:
the VM table alone (``read_vm_table``) and the full inventory (``read_inventory``, all tables),
``--repeat`` runs, login excluded: median wall seconds, and client CPU seconds (this process and the
children it reaped: the read's forked child, runbook/vsphere/forked.py; the simulator's own work is not
in it), median and best. SOAP requests are
counted by the lab. A fixed reference workload is timed too: this machine's speed varies a lot from
one moment to the next, and the reference tells a slow moment from a slow change.
Memory: tracemalloc peak of one extra untimed full read (Python allocations only).
Bare bulk: the reference baseline the issue's 3 s bar was set against (pyvmomi's own bulk retrieval of a
12-column VM table, 2.7 s at 10,000 VMs when measured), timed in the same run, so the bar can be read
as a ratio that does not move with the machine's speed.
Per-attribute: ``--sample`` VMs read with pyvmomi property access (each of the runbook's 16 VM
paths, then the name of each referenced object, cached per object), turned into the same VM table
rows by the same code, checked equal to the runbook's rows, timed and extrapolated to all VMs.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402
from pyVmomi import vim, vmodl  # noqa: E402

import runbook_lab as lab_mod  # noqa: E402
from runbook.vsphere.connection import Settings, login, logout  # noqa: E402
from runbook.vsphere import fastsoap  # noqa: E402
from runbook.vsphere.inventory import (  # noqa: E402
    _VM_NAME_PATHS, VM_PATHS, _active_tasks, _vm_table, read_inventory, read_vm_table
)
from runbook.vsphere.properties import container_view, fast_enabled  # noqa: E402


def _versions() -> str:
    try:
        sim = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "golang-github-vmware-govmomi-dev"],
                             capture_output=True, text=True, timeout=10).stdout.strip() or "?"
    except OSError:
        sim = "?"
    from importlib.metadata import version

    return (f"Python {platform.python_version()}, pyvmomi {version('pyvmomi')}, pandas {pd.__version__}, "
            f"govmomi simulator {sim}, {platform.system()} {platform.release()}")


_REFERENCE_DOC = ("<r>" + "<o t='x'><p><n>name</n><v k='s'>vm-1</v></p><p><n>n</n><v k='i'>2</v></p></o>" * 40000
                  + "</r>").encode()


def _reference_s() -> float:
    """CPU seconds of a fixed workload like the reader's (an ElementTree parse, a Python walk over it):
    this machine's speed right now, to tell a slow moment from a slow change (best of 3)."""
    import xml.etree.ElementTree as ET

    best = float("inf")
    for _ in range(3):
        c = time.process_time()
        root = ET.fromstring(_REFERENCE_DOC)
        sum(len(e.text or "") + len(e.attrib) for e in root.iter())
        del root
        best = min(best, time.process_time() - c)
    return best


def client_cpu() -> float:
    """CPU seconds of this process and of its children reaped so far (a read's forked child is reaped
    before the read returns)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _timed(fn, repeat: int, control: lab_mod.LabControl) -> tuple[float, float, float, int, object]:
    """Median wall, median and best CPU seconds of ``repeat`` runs (after a warm-up), requests of one run."""
    fn()
    walls, cpus = [], []
    result = None
    requests = 0
    for _ in range(repeat):
        before = control.requests_served()
        t, c = time.perf_counter(), client_cpu()
        result = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(client_cpu() - c)
        requests = control.requests_served() - before
    return statistics.median(walls), statistics.median(cpus), min(cpus), requests, result


def _per_attribute(si: vim.ServiceInstance, vms: list) -> pd.DataFrame:
    """The VM table rows of ``vms`` read the way scripts often do: one property access at a time."""
    records: dict = {}
    names: dict = {}

    def named(ref, extra=()):  # the referenced object's name (and parent), one access each, cached
        if ref is None or ref._moId in records:
            return
        rec = {"_type": type(ref).__name__.split(".")[-1], "_ref": ref, "name": ref.name}
        for attr in extra:
            rec[attr] = getattr(ref, attr)
        records[ref._moId] = rec

    dc_of = {}
    for vm in vms:
        rec = {"_type": "VirtualMachine", "_ref": vm}
        for path in VM_PATHS:
            value = vm
            for part in path.split("."):
                value = getattr(value, part) if value is not None else None
            rec[path] = value
        records[vm._moId] = rec
        host = rec["runtime.host"]
        named(host, ("parent",))
        if host is not None:
            named(records[host._moId]["parent"])
        named(rec["resourcePool"])
        for ref in list(rec["datastore"] or ()) + list(rec["network"] or ()):
            named(ref)
        for dev in rec["config.hardware.device"] or ():
            for attr in ("datastore", "network"):
                named(getattr(dev.backing, attr, None) if dev.backing else None)
        parent = vm.parent
        while parent is not None and not isinstance(parent, vim.Datacenter):
            parent = parent.parent
        dc_of[vm._moId] = names.setdefault(parent._moId, parent.name) if parent is not None else None
    return _vm_table(records, dc_of, _active_tasks(si, si.RetrieveContent()))[1]


def _receive(si: vim.ServiceInstance) -> int:
    """The floor of the VM table: the same property paths in one unpaged RetrievePropertiesEx, its reply's
    bytes received and dropped (the server's building of the reply included, no parse); the byte count."""
    pc = vmodl.query.PropertyCollector
    content = si.RetrieveContent()
    paths = {vim.VirtualMachine: VM_PATHS, **_VM_NAME_PATHS}
    with container_view(si, None, list(paths)) as view:
        traverse = pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
        spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
                             propSet=[pc.PropertySpec(type=t, pathSet=p) for t, p in paths.items()])
        body = fastsoap._post(si._stub, fastsoap._Method(content.propertyCollector, "RetrievePropertiesEx"),
                              [[spec], pc.RetrieveOptions()])
        return len(body)


def _paired(si: vim.ServiceInstance, repeat: int) -> tuple[float, int, float]:
    """The floor and the VM table timed in turns (so a change of the machine's load hits both): median
    seconds to receive the unpaged reply, its bytes, and the median of the VM table / receive ratios."""
    _receive(si), read_vm_table(si)
    recv, ratios, size = [], [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        size = _receive(si)
        recv.append(time.perf_counter() - t)
        t = time.perf_counter()
        read_vm_table(si)
        ratios.append((time.perf_counter() - t) / recv[-1])
    return statistics.median(recv), size, statistics.median(ratios)


#: The reference baseline's 12 columns (shared/reference/performance.md): the properties they come from.
BARE_PATHS = ["name", "runtime.powerState", "runtime.host", "datastore", "guest.ipAddress", "config.hardware.numCPU",
              "config.hardware.memoryMB", "summary.storage.committed", "config.guestFullName", "network"]


def _bare_bulk(si: vim.ServiceInstance) -> pd.DataFrame:
    """The baseline the issue's 3 s bar was set against ("2.7 s for a bare bulk retrieval"): pyvmomi's own
    RetrievePropertiesEx and deserializer for a 12-column VM table (name, moid, power state, host,
    cluster, datastores, guest IP, vCPUs, memory, committed storage, guest OS, networks), the names
    of what the VMs refer to from a second bulk retrieval, then a DataFrame. Timed in the same run,
    it turns the bar into a ratio that does not move with this machine's speed."""
    pc = vmodl.query.PropertyCollector
    content = si.RetrieveContent()

    def bulk(paths: dict) -> dict:
        view = content.viewManager.CreateContainerView(content.rootFolder, list(paths), True)
        try:
            traverse = pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
            spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
                                 propSet=[pc.PropertySpec(type=t, pathSet=p) for t, p in paths.items()])
            found = {}
            result = content.propertyCollector.RetrievePropertiesEx([spec], pc.RetrieveOptions())
            while result is not None:
                for obj in result.objects:
                    found[obj.obj._moId] = {prop.name: prop.val for prop in obj.propSet}
                token = result.token
                result = content.propertyCollector.ContinueRetrievePropertiesEx(token) if token else None
            return found
        finally:
            view.DestroyView()

    vms = bulk({vim.VirtualMachine: BARE_PATHS})
    names = bulk({vim.HostSystem: ["name", "parent"], vim.ClusterComputeResource: ["name"],
                  vim.Datastore: ["name"], vim.Network: ["name"]})

    def name(ref):
        return names.get(ref._moId, {}).get("name") if ref is not None else None

    rows = []
    for moid, r in vms.items():
        host = r.get("runtime.host")
        rows.append({
            "name": r.get("name"), "moid": moid, "power_state": str(r.get("runtime.powerState")),
            "host": name(host), "cluster": name(names.get(host._moId, {}).get("parent") if host else None),
            "datastores": sorted(name(d) for d in r.get("datastore") or ()), "guest_ip": r.get("guest.ipAddress"),
            "vcpus": r.get("config.hardware.numCPU"), "memory_mb": r.get("config.hardware.memoryMB"),
            "committed_bytes": r.get("summary.storage.committed"), "guest_os": r.get("config.guestFullName"),
            "networks": sorted(name(n) for n in r.get("network") or ())})
    return pd.DataFrame(rows)


def bench_size(vms: int, hosts: int, repeat: int, sample: int, lab_dir: Path | None = None) -> dict:
    state = lab_dir or Path(tempfile.mkdtemp(prefix=f"bench-lab-{vms}-"))
    info = lab_mod.status(lab_dir) if lab_dir else lab_mod.start("scale", state_dir=state, vms=vms, hosts=hosts,
                                                                   timeout=300)
    if info is None:
        raise SystemExit(f"no lab runs from {lab_dir}")
    try:
        control = lab_mod.LabControl(info)
        si = login(Settings(host=info.host, port=info.port, scheme="http", username=info.username,
                            password=info.password, timeout=900))
        try:
            reader = "fastsoap" if fast_enabled(si) else "pyvmomi"
            recv_wall, recv_bytes, ratio = _paired(si, repeat)
            vm_wall, vm_cpu, vm_best, vm_req, table = _timed(lambda: read_vm_table(si), repeat, control)
            full_wall, full_cpu, full_best, full_req, inv = _timed(lambda: read_inventory(si), repeat, control)
            _, bare_cpu, _, _, bare = _timed(lambda: _bare_bulk(si), repeat, control)
            vms, hosts = (vms, hosts) if not lab_dir else (len(table), len(inv.hosts))
            assert len(bare) == len(table) == vms, (len(bare), len(table), vms)
            tracemalloc.start()
            read_inventory(si)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()

            with container_view(si, None, [vim.VirtualMachine]) as view:
                refs = list(view.view)
            chosen = refs[:: max(1, len(refs) // sample)][:sample]
            before = control.requests_served()
            t = time.perf_counter()
            slow = _per_attribute(si, chosen)
            per_attr = time.perf_counter() - t
            per_attr_req = control.requests_served() - before
        finally:
            logout(si)
    finally:
        if not lab_dir:  # a lab this run started
            lab_mod.stop(state)
            shutil.rmtree(state, ignore_errors=True)
    mine = table[table["moid"].isin(set(slow["moid"]))].sort_values("moid").reset_index(drop=True)
    same = mine.equals(slow.sort_values("moid").reset_index(drop=True)) and inv.vms.equals(table)
    extrapolated = per_attr / len(chosen) * vms
    return {"vms": vms, "hosts": hosts, "reader": reader, "recv_wall": recv_wall, "recv_mb": recv_bytes / 1e6,
            "recv_ratio": ratio,
            "vm_wall": vm_wall, "vm_cpu": vm_cpu,
            "vm_best": vm_best, "vm_req": vm_req, "full_wall": full_wall, "full_cpu": full_cpu,
            "full_best": full_best, "full_req": full_req, "bare_cpu": bare_cpu,
            "peak_mb": peak / 2**20, "sample": len(chosen), "per_attr": extrapolated,
            "per_attr_req": round(per_attr_req / len(chosen) * vms), "same": same,
            "ratio": extrapolated / vm_wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,5000,10000", help="VM counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measure (median, best)")
    parser.add_argument("--sample", type=int, default=50, help="VMs read attribute by attribute")
    parser.add_argument("--quick", action="store_true", help="1,000 VMs only")
    parser.add_argument("--lab-dir", type=Path, help="a scale lab already running from this state directory "
                                                      "(measured at its own size; never stopped)")
    args = parser.parse_args(argv)
    sizes = [1000] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.lab_dir:
        sizes = [0]
    print(f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
          f"load average {os.getloadavg()[0]:.2f} at start, reference workload {_reference_s():.3f} s; "
          f"{_versions()}")
    print(f"{args.repeat} timed runs after a warm-up, login excluded: wall = median elapsed seconds, "
          f"cpu = CPU seconds of this process and of the read's forked child (client time), median / best; "
          f"memory = tracemalloc peak of one extra full read (this process); "
          f"per-attribute = {args.sample} VMs timed, x N/{args.sample}; reference = "
          f"a fixed parse-and-walk workload, CPU s (this machine's speed at that moment); bare bulk = the "
          f"reference baseline (pyvmomi's own bulk retrieval of a 12-column VM table), cpu median, timed in "
          f"the same run: the issue's bar, 3 s where that baseline took 2.7 s, is a VM table at most "
          f"{3 / 2.7:.2f}x the bare bulk retrieval\n")
    head = ("| VMs | hosts | reader | receive reply wall s (MB) | VM table wall s | VM table / receive (paired) | "
            "VM table cpu s (median / best) | full inventory wall s | "
            "full cpu s (median / best) | SOAP requests (VM table / full) | peak MB (tracemalloc) | "
            "per-attribute s (extrapolated) | per-attribute requests (extrap.) | ratio per-attr / VM table | "
            "same rows | bare bulk cpu s | VM table cpu / bare bulk cpu | reference s |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for vms in sizes:
        r = bench_size(vms, max(1, round(vms / 32)), args.repeat, args.sample, args.lab_dir)
        print(f"| {r['vms']:,} | {r['hosts']} | {r['reader']} | {r['recv_wall']:.2f} ({r['recv_mb']:.0f}) | "
              f"{r['vm_wall']:.2f} | {r['recv_ratio']:.2f}x | "
              f"{r['vm_cpu']:.2f} / {r['vm_best']:.2f} | {r['full_wall']:.2f} | "
              f"{r['full_cpu']:.2f} / {r['full_best']:.2f} | {r['vm_req']} / {r['full_req']} | "
              f"{r['peak_mb']:.0f} | {r['per_attr']:.1f} | {r['per_attr_req']:,} | {r['ratio']:.0f}x | "
              f"{'yes' if r['same'] else 'NO'} | {r['bare_cpu']:.2f} | {r['vm_cpu'] / r['bare_cpu']:.2f}x | "
              f"{_reference_s():.3f} |", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
