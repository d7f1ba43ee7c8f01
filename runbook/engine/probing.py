"""The probes of one move: started before the relocation is submitted, stopped after their tail.

``ping=auto`` probes the VM's guest IP (none for a powered-off VM or one without a known IP: the record says
why); an address probes that. An interrupt during the tail cuts it short: the task has ended by then, so the
run goes on to its true outcome, and the caller records what interrupted it.
"""
from __future__ import annotations

from typing import Any

from runbook.engine.events import Notice, Sink, Step
from runbook.engine.interrupt import Interrupted, shielded


def start_probes(request: Any, state: Any, inventory: Any, emit: Sink) -> Any:
    """A started ProbeMonitor, or None (``state.ping_note`` says why). PingNotPermitted and BadInput raise
    here, before the move: nothing has changed."""
    from runbook.probes.ping import ProbeMonitor

    r = state.resolved
    target = request.ping.strip()
    if target.lower() == "none":
        state.ping_note = "ping not asked for (ping=none)"
        return None
    if target.lower() == "auto":
        if r.power_state != "poweredOn":
            state.ping_note = "no ping: the VM is powered off (a cold migration has no ping window)"
            return None
        target = inventory.vm(r.vm_moid)["guest_ip"] or ""
        if not target:
            state.ping_note = (f"no ping: VM {r.vm} has no known guest IP (VMware Tools report none); "
                               f"give ping=ADDRESS to measure it")
            emit(Notice("warning", state.ping_note))
            return None
    monitor = ProbeMonitor(target, request.ping_interval, tcp_port=request.ping_tcp_port or None,
                           tail=request.ping_tail)
    monitor.start()
    state.ping_note = f"probing {target} every {request.ping_interval * 1000:g} ms"
    emit(Step("ping", "started", state.ping_note))
    return monitor


def stop_probes(monitor: Any, state: Any, emit: Sink, tail: float | None = None) -> str | None:
    """Stop after the tail (``tail`` overrides it) and keep the result in ``state.ping``; return what
    interrupted the tail, if anything did."""
    if monitor.tail and tail is None:
        emit(Step("ping tail", "started", f"probing {monitor.tail:g} s more after the task"))
    try:
        state.ping = monitor.stop(tail)
        return None
    except (Interrupted, KeyboardInterrupt) as exc:
        why = str(exc) or "SIGINT"
        with shielded():
            state.ping = monitor.stop(0.0)
        emit(Notice("warning", f"interrupted by {why}: the probes' tail was cut short"))
        return why
