"""The lab vCenter: a local simulated vCenter to develop and test the runbook against.

The simulator is the Go program in ``sim/`` (govmomi's simulator plus the lab's corrections); this
module builds it on first use, starts it in the background with a scenario from
``sim/scenarios/NAME.toml``, finds it again (``status``) and stops it. ``LabControl`` drives the
lab's test controls (a slow migration, an injected fault, a host dropping off).

State lives in a state directory (``$RUNBOOK_LAB_DIR``, else ``$XDG_STATE_HOME/runbook/lab``, else
``~/.local/state/runbook/lab``): ``lab.json`` (mode 0600, holds the password), ``lab.log``, and
while running the simulator's own ``tmp/`` and ``datastores/``.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from runbook.errors import LabError
from runbook.vsphere.labstate import STATE_FILE as _STATE_FILE, LabInfo, default_state_dir, pid_alive

__all__ = ["LabInfo", "LabControl", "start", "stop", "status", "scenarios", "default_state_dir"]

SIM_DIR = Path(__file__).resolve().parent.parent / "sim"
GOPATH = "/usr/share/gocode"
GOVMOMI_SRC = Path(GOPATH) / "src/github.com/vmware/govmomi/simulator"
INSTALL_HINT = "apt-get install -y golang-go golang-github-vmware-govmomi-dev"
_RUNTIME_FILES = ("ready.json", "ready.json.tmp", "scenario.json", "password", "cert.pem", "key.pem")
_RUNTIME_DIRS = ("tmp", "datastores")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "runbook"


def scenarios() -> list[str]:
    """Names of the scenarios shipped in sim/scenarios/."""
    return sorted(p.stem for p in (SIM_DIR / "scenarios").glob("*.toml"))


# ----- building the simulator -------------------------------------------------------------


def _source_hash() -> str:
    h = hashlib.sha256()
    for p in sorted(SIM_DIR.glob("*.go")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _binary() -> Path:
    """The simulator binary, built into the cache on first use and whenever sim/*.go change."""
    out = _cache_dir() / f"labsim-{_source_hash()}"
    if out.exists():
        return out
    go = shutil.which("go")
    if go is None or not GOVMOMI_SRC.is_dir():
        missing = "Go" if go is None else f"the govmomi source ({GOVMOMI_SRC})"
        raise LabError(f"cannot build the lab vCenter: {missing} is missing; install it with: {INSTALL_HINT}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    env = dict(os.environ, GOPATH=GOPATH, GO111MODULE="off", GOFLAGS="",
               GOCACHE=str(_cache_dir() / "go-build"))
    proc = subprocess.run([go, "build", "-o", str(tmp), "./sim"], cwd=SIM_DIR.parent, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise LabError(f"building the lab vCenter failed: {proc.stderr.strip()[-2000:]}")
    tmp.replace(out)
    return out


# ----- scenarios ----------------------------------------------------------------------------


def _scenario_path(scenario: str) -> Path:
    if scenario.endswith(".toml") or os.sep in scenario:
        path = Path(scenario)
        if not path.is_file():
            raise LabError(f"no scenario file {path}")
        return path
    path = SIM_DIR / "scenarios" / f"{scenario}.toml"
    if not path.is_file():
        raise LabError(f"no scenario named {scenario!r}; available: {', '.join(scenarios())}")
    return path


def _merge_named(base: list[dict[str, Any]], extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries of extra replace base entries of the same name, others are appended."""
    out = {e["name"]: e for e in base}
    for e in extra:
        out[e["name"]] = e
    return list(out.values())


def _load_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        data = tomllib.load(f)
    if "extends" in data:
        base = _load_toml(_scenario_path(data.pop("extends")))
        for key, value in data.items():
            if isinstance(value, list) and value and isinstance(value[0], dict) and "name" in value[0]:
                base[key] = _merge_named(base.get(key, []), value)
            elif isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        data = base
    return data


def _expand_scale(data: dict[str, Any], vms: int | None, hosts: int | None) -> dict[str, Any]:
    """Generate the hosts, datastores and VMs of a [scale] template."""
    t = data.pop("scale")
    n_vms = vms if vms is not None else int(t.get("vms", 1000))
    n_hosts = hosts if hosts is not None else int(t.get("hosts", 32))
    if n_hosts < 1 or n_vms < 0:
        raise LabError("a scale lab needs at least 1 host and 0 or more VMs")
    per_cluster = int(t.get("hosts_per_cluster", 32))
    data["datacenters"] = [{"name": "DC1"}]
    data["clusters"] = [{"name": f"Cluster-{i + 1:02d}", "datacenter": "DC1", "evc_mode": t.get("evc_mode", "")}
                        for i in range((n_hosts + per_cluster - 1) // per_cluster)]
    host_names = [f"esx-{i + 1:04d}.lab.local" for i in range(n_hosts)]
    data["hosts"] = [{
        "name": name, "cluster": f"Cluster-{i // per_cluster + 1:02d}", "cpu_vendor": "intel",
        "cpu_model": t.get("cpu_model", ""), "max_evc_mode": t.get("evc_mode", ""),
        "port_groups": t.get("port_groups", ["VM Network"]),
        "vmks": [
            {"device": "vmk0", "port_group": "Management Network", "ip": f"10.0.{i // 250}.{i % 250 + 1}",
             "services": ["management"]},
            {"device": "vmk1", "port_group": "vMotion", "ip": f"10.1.{i // 250}.{i % 250 + 1}",
             "services": ["vmotion"]},
        ],
    } for i, name in enumerate(host_names)]
    ds_names = [f"nfs-{i + 1:02d}" for i in range(int(t.get("datastores", 4)))]
    data["datastores"] = [{"name": n, "type": "NFS", "capacity_gb": t.get("datastore_capacity_gb", 65536),
                           "used_gb": 0, "hosts": host_names} for n in ds_names]
    template = t.get("vm", {})
    pg = t.get("port_groups", ["VM Network"])[0]
    data["vms"] = [{
        **template, "name": f"vm-{i + 1:05d}", "host": host_names[i % n_hosts],
        "datastore": ds_names[i % len(ds_names)], "power_state": "poweredOn",
        "guest_ip": f"127.{20 + (i + 1) // 65536}.{((i + 1) // 256) % 256}.{(i + 1) % 256}",
        "nics": [{"port_group": pg}],
    } for i in range(n_vms)]
    return data


def _scenario_json(scenario: str, vms: int | None, hosts: int | None) -> dict[str, Any]:
    """The flat scenario the Go side reads: defaults merged, scale template expanded."""
    path = _scenario_path(scenario)
    try:
        data = _load_toml(path)
    except tomllib.TOMLDecodeError as e:
        raise LabError(f"scenario {path} is not valid TOML: {e}") from e
    if "scale" in data:
        data = _expand_scale(data, vms, hosts)
    elif vms is not None or hosts is not None:
        raise LabError(f"scenario {data.get('name', path.stem)!r} has a fixed size; --vms/--hosts need 'scale'")
    defaults = data.pop("defaults", {})
    for key, kind in (("hosts", "host"), ("vms", "vm")):
        data[key] = [{**defaults.get(kind, {}), **e} for e in data.get(key, [])]
    data.setdefault("name", path.stem)
    return data


# ----- processes and state ----------------------------------------------------------------

_children: dict[int, subprocess.Popen[bytes]] = {}  # labs started by this process (to reap them)


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    return pid_alive(pid)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ssl_context(ca_file: Path | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file else None


def _answers_soap(url: str, ca_file: Path | None) -> bool:
    """True once the server answers RetrieveServiceContent."""
    body = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:vim25="urn:vim25">'
            '<soapenv:Body><vim25:RetrieveServiceContent><vim25:_this type="ServiceInstance">'
            'ServiceInstance</vim25:_this></vim25:RetrieveServiceContent></soapenv:Body></soapenv:Envelope>')
    req = urllib.request.Request(url, data=body.encode(), method="POST",
                                 headers={"Content-Type": "text/xml", "SOAPAction": "urn:vim25/7.0"})
    try:
        with urllib.request.urlopen(req, timeout=5, context=_ssl_context(ca_file)) as r:
            return r.status == 200 and b"rootFolder" in r.read()
    except (urllib.error.URLError, OSError):
        return False


def _cleanup(state_dir: Path) -> None:
    for name in (_STATE_FILE, *_RUNTIME_FILES):
        (state_dir / name).unlink(missing_ok=True)
    for name in _RUNTIME_DIRS:
        path = state_dir / name
        if path.is_symlink():  # datastores kept in memory (_data_dir)
            shutil.rmtree(os.readlink(path), ignore_errors=True)
            path.unlink(missing_ok=True)
        shutil.rmtree(path, ignore_errors=True)


_SHM = Path("/dev/shm")


def _data_dir(state_dir: Path, vms: int) -> Path | None:
    """Where the simulator writes its datastores' files (about 12 small files per VM): in memory
    (/dev/shm) when it has ample room, which cuts a quarter of a big lab's start-up CPU (the file system
    calls) and most of its stop; else None (the state directory's ``datastores``). ``state_dir /
    "datastores"`` then links to it, so that ``_cleanup`` removes it even after a lab was killed."""
    try:
        if not _SHM.is_dir() or shutil.disk_usage(_SHM).free < (64 << 20) + vms * (64 << 10):
            return None
        path = Path(tempfile.mkdtemp(prefix="runbook-lab-", dir=_SHM))
    except OSError:
        return None
    (state_dir / "datastores").symlink_to(path)
    return path


def _log_tail(state_dir: Path, lines: int = 15) -> str:
    try:
        text = (state_dir / "lab.log").read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def status(state_dir: Path | None = None) -> LabInfo | None:
    """The running lab of this state directory, or None (a stale state file is cleaned up)."""
    state_dir = Path(state_dir) if state_dir else default_state_dir()
    try:
        info = LabInfo._from_json(json.loads((state_dir / _STATE_FILE).read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError):
        _cleanup(state_dir)
        return None
    if not _alive(info.pid):
        _cleanup(state_dir)
        return None
    return info


def start(scenario: str = "default", port: int | None = None, *, tls: bool = False,
          vms: int | None = None, hosts: int | None = None,
          username: str = "administrator@vsphere.local", password: str | None = None,
          state_dir: Path | None = None, timeout: float | None = None) -> LabInfo:
    """Build (if needed) and start a lab vCenter in the background; return how to reach it.

    ``scenario`` is a name in sim/scenarios/ or a path to a .toml file; ``vms``/``hosts`` size a
    scale scenario. Refuses when a lab already runs in ``state_dir``. The password is random unless
    given; it is passed to the simulator in a 0600 file, never on its command line.
    """
    state_dir = Path(state_dir) if state_dir else default_state_dir()
    running = status(state_dir)
    if running is not None:
        raise LabError(f"a lab vCenter is already running at {running.url} (pid {running.pid}, state "
                       f"{state_dir}); stop it first with: runbook lab stop")
    data = _scenario_json(scenario, vms, hosts)
    binary = _binary()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _cleanup(state_dir)
    (state_dir / "tmp").mkdir(mode=0o700)
    password = password if password is not None else secrets.token_urlsafe(18)
    (state_dir / "scenario.json").write_text(json.dumps(data))
    pw_file = state_dir / "password"
    fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password)
    port = port if port is not None else _free_port()
    cmd = [str(binary), "-scenario", str(state_dir / "scenario.json"), "-listen", f"127.0.0.1:{port}",
           "-user", username, "-password-file", str(pw_file), "-state-dir", str(state_dir)]
    if tls:
        cmd.append("-tls")
    data_dir = _data_dir(state_dir, len(data.get("vms", [])))
    if data_dir is not None:
        cmd += ["-data-dir", str(data_dir)]
    env = dict(os.environ, TMPDIR=str(state_dir / "tmp"))
    with (state_dir / "lab.log").open("ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, cwd=state_dir)
    _children[proc.pid] = proc
    ready_file = state_dir / "ready.json"
    if timeout is None:  # a big scale lab builds its inventory for minutes before it answers
        timeout = 120 + 0.02 * (vms or 0) + 0.2 * (hosts or 0)
    deadline = time.monotonic() + timeout
    try:
        while not ready_file.exists():
            if proc.poll() is not None:
                raise LabError(f"the lab vCenter exited with code {proc.returncode} while starting: "
                               f"{_log_tail(state_dir)}")
            if time.monotonic() > deadline:
                raise LabError(f"the lab vCenter did not start within {timeout:g} s; see {state_dir / 'lab.log'}")
            time.sleep(0.05)
        ready = json.loads(ready_file.read_text())
        pw_file.unlink(missing_ok=True)  # read by now; lab.json (0600) keeps it for status/env
        ca_file = Path(ready["ca_file"]) if ready.get("ca_file") else None
        url = ready["url"]
        while not _answers_soap(url, ca_file):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"the lab vCenter at {url} does not answer SOAP; see {state_dir / 'lab.log'}")
            time.sleep(0.05)
    except BaseException:
        _kill(proc.pid)
        _cleanup(state_dir)
        raise
    base = url[: -len("/sdk")] if url.endswith("/sdk") else url
    info = LabInfo(url=url, host="127.0.0.1", port=port, username=username, password=password,
                   scenario=str(data.get("name", scenario)), pid=proc.pid, state_dir=state_dir,
                   ca_file=ca_file, insecure=True, control_url=base + "/lab")
    fd = os.open(state_dir / _STATE_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info._to_json(), f)
    return info


def _kill(pid: int, grace: float = 10) -> None:
    """SIGTERM the lab's process group, then SIGKILL after grace seconds; reap our own child."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    child = _children.pop(pid, None)
    if child is not None:
        child.wait(timeout=grace)


def stop(state_dir: Path | None = None) -> bool:
    """Stop the lab of this state directory; False when none was running. Leaves no process or temp files."""
    state_dir = Path(state_dir) if state_dir else default_state_dir()
    info = status(state_dir)
    if info is None:
        return False
    _kill(info.pid)
    _cleanup(state_dir)
    return True


class LabControl:
    """The lab's test controls (``/lab/...`` on the lab's own port, loopback only)."""

    def __init__(self, info: LabInfo):
        self.info = info

    def _call(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.info.control_url + path, data=data,
                                     method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30, context=_ssl_context(self.info.ca_file)) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read()).get("error", "")
            except ValueError:
                detail = str(e)
            raise LabError(f"lab control {path} refused: {detail}") from e
        except (urllib.error.URLError, OSError) as e:
            raise LabError(f"lab control {path} unreachable at {self.info.control_url}: {e}") from e

    def requests_served(self) -> int:
        """How many SOAP requests the lab has answered (to prove bulk retrieval)."""
        return int(self._call("/requests")["requests"])

    def reply_bytes(self) -> int:
        """How many bytes of SOAP replies the lab has sent (to prove a read does not grow with the vCenter)."""
        return int(self._call("/requests")["reply_bytes"])

    def set_migration_seconds(self, vm: str | None, seconds: float) -> None:
        """Duration of the VM's next relocation (by name or moid), or with vm None of every relocation."""
        self._call("/migration-seconds", {"vm": vm or "", "seconds": seconds})

    def inject_fault(self, vm: str, fault: str, message: str = "") -> None:
        """Make the VM's next relocation fail half-way with the vim fault type named (e.g. "GenericVmConfigFault")."""
        self._call("/fault", {"vm": vm, "fault": fault, "message": message})

    def disconnect_host(self, host: str) -> None:
        """Set the host's runtime.connectionState to disconnected."""
        self._call("/host/disconnect", {"host": host})

    def reconnect_host(self, host: str) -> None:
        """Set the host's runtime.connectionState back to connected."""
        self._call("/host/reconnect", {"host": host})

    def set_guest_ip(self, vm: str, ip: str) -> None:
        """Set the guest IP the VM reports (guest.ipAddress, summary.guest, guest.net[0])."""
        self._call("/guest-ip", {"vm": vm, "ip": ip})

    def set_delay(self, method: str, ms: int) -> None:
        """Delay every later call of a SOAP method (e.g. "RetrievePropertiesEx") by ms milliseconds."""
        self._call("/delay", {"method": method, "ms": ms})

    def concurrency(self) -> dict[str, Any]:
        """The most relocations the lab ran at once, as it counted them from its own tasks:
        ``{"relocations": n, "queued": n, "waiting": n, "hosts": {name: {"peak", "storage_peak"}},
        "datastores": {...}}``; ``queued`` counts the relocations that waited over vCenter's limits."""
        return self._call("/concurrency")

    def placement(self, vm: str) -> dict[str, Any]:
        """Where the lab says the VM is: host, datastores, pool, vm_path_name, power_state."""
        return self._call(f"/placement?vm={urllib.request.quote(vm)}")
