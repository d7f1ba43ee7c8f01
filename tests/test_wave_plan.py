"""Waves without a server: the concurrency limits as vCenter's costs, plan files, the moves back of a record,
and the wave requests (issue 18)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from runbook.domain import planfile
from runbook.domain.concurrency import Limits, Move, move_of, peaks, usage
from runbook.engine.requests import REQUESTS, WAVE_REQUESTS, DrainRequest, EvacuateRequest, build
from runbook.errors import BadInput


def _vmotion(vm: str, src: str = "h1", dst: str = "h2", ds: str = "ds1") -> Move:
    return move_of({"vm": vm, "source_host": src, "target_host": dst, "source_datastores": [ds], "move_kind": "host"})


def _svmotion(vm: str, host: str = "h1", src: str = "ds1", dst: str = "ds2") -> Move:
    return move_of({"vm": vm, "source_host": host, "source_datastores": [src], "target_datastore": dst,
                    "move_kind": "datastore"})


@pytest.mark.parametrize("link, allowed", [(None, 4), (1000, 4), (10_000, 8), (25_000, 8)])
def test_vmotions_per_host_follow_the_link_speed(link, allowed):
    limits = Limits(host_links={"h1": link, "h2": 100_000})
    running: list[Move] = []
    while limits.fits(_vmotion(f"vm{len(running)}"), running):
        running.append(_vmotion(f"vm{len(running)}"))
    assert len(running) == allowed


def test_a_lower_limit_wins_and_never_raises_vcenters():
    assert Limits(vmotions_per_host=2, host_links={"h": 10_000}).vmotions_on("h") == 2
    assert Limits(vmotions_per_host=8, host_links={"h": 1000}).vmotions_on("h") == 4


def test_storage_vmotions_two_per_host_eight_per_datastore():
    limits = Limits()
    assert limits.fits(_svmotion("a"), [])
    assert limits.fits(_svmotion("b"), [_svmotion("a")])
    assert not limits.fits(_svmotion("c"), [_svmotion("a"), _svmotion("b")])  # host cost 3 x 4 > 8
    on_many_hosts = [_svmotion(f"v{i}", host=f"h{i}") for i in range(8)]
    assert not limits.fits(_svmotion("x", host="h99"), on_many_hosts)  # datastore: 9 x 16 > 128
    assert limits.fits(_svmotion("x", host="h99", src="ds3", dst="ds4"), on_many_hosts)
    assert not Limits(svmotions_per_host=1).fits(_svmotion("b"), [_svmotion("a")])


def test_a_storage_vmotion_leaves_room_for_four_vmotions_on_its_host():
    limits = Limits(host_links={"h1": 10_000, "h2": 10_000})
    running = [_svmotion("s")]
    for i in range(4):
        assert limits.fits(_vmotion(f"v{i}"), running)
        running.append(_vmotion(f"v{i}"))
    assert not limits.fits(_vmotion("v5"), running)  # 4 + 4 x 1 = 8
    assert usage(running)[("host", "h1")] == 8


def test_peaks_count_overlaps_and_not_touching_intervals():
    t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    s = dt.timedelta(seconds=1)
    spans = [(t, t + 2 * s, _vmotion("a")), (t + s, t + 3 * s, _vmotion("b")), (t + 3 * s, t + 4 * s, _vmotion("c"))]
    found = {(p["kind"], p["name"]): p for p in peaks(spans, Limits())}
    assert found[("net", "h1")]["peak"] == 2 and found[("net", "h1")]["limit"] == 4
    assert found[("net", "h2")]["peak"] == 2


def test_plan_files_csv_and_yaml_say_the_same():
    csv_text = ("vm,host,datastore,disk_format,network\n"
                "web-01,esx-02,,,\n"
                "app-01,,nfs-02,thin,App Network=VM Network;X=Y\n")
    yaml_text = ("moves:\n"
                 "  - {vm: web-01, host: esx-02}\n"
                 "  - vm: app-01\n    datastore: nfs-02\n    disk_format: thin\n"
                 "    network: {App Network: VM Network, X: Y}\n")
    from_csv = planfile.parse(csv_text, "moves.csv")
    from_yaml = planfile.parse(yaml_text, "moves.yaml")
    strip = [{k: v for k, v in e.items() if k != "reason"} for e in from_csv]
    assert strip == [{k: v for k, v in e.items() if k != "reason"} for e in from_yaml]
    assert strip[1] == {"vm": "app-01", "host": None, "datastore": "nfs-02", "disk_format": "thin",
                        "network": {"App Network": "VM Network", "X": "Y"}}
    assert from_csv[0]["reason"] == "plan row 1"


@pytest.mark.parametrize("text, words", [
    ("vm,host\n,esx-02\n", "row 1 names no VM"),
    ("vm,host,datastore\nweb-01,,\n", "neither a host nor a datastore"),
    ("vm,hots\nweb-01,esx-02\n", "unknown column"),
    ("vm,host\nweb-01,esx-02\nweb-01,esx-03\n", "rows 1 and 2"),
    ("vm,host\n", "lists no moves"),
    ("vm,host,network\nweb-01,esx-02,nonsense\n", "not OLD=NEW"),
])
def test_a_bad_plan_file_is_refused_in_one_line(text, words):
    with pytest.raises(BadInput, match=words) as refused:
        planfile.parse(text, "moves.csv")
    assert "\n" not in str(refused.value)


def _placement(host: str, ds: str) -> dict:
    return {"vm": "web-01", "host": host, "home_datastore": ds, "datastores": [ds],
            "disks": [{"label": "Hard disk 1", "datastore": ds, "format": "thin"}]}


def test_moves_back_of_a_single_move_and_of_a_wave():
    single = {"kind": "migrate", "run_id": "r1",
              "placement": {"before": _placement("esx-01", "nfs-01"), "after": _placement("esx-02", "nfs-01")}}
    assert planfile.moves_back(single) == [{"vm": "web-01", "host": "esx-01", "datastore": None,
                                            "disk_format": "same", "network": {},
                                            "reason": "back to where run r1 found it"}]
    wave = {"kind": "wave", "run_id": "w1", "moves": [
        {"status": "moved", "before": _placement("esx-01", "nfs-01"), "after": _placement("esx-01", "nfs-02")},
        {"status": "not started", "before": None, "after": None}]}
    assert planfile.moves_back(wave)[0]["datastore"] == "nfs-01"
    assert planfile.moves_back(wave)[0]["disk_format"] == "thin"
    with pytest.raises(BadInput, match="only a migrate run or a wave"):
        planfile.moves_back({"kind": "inventory", "run_id": "i1"})


def test_wave_requests_validate_and_stay_out_of_the_notebook_kinds():
    assert not set(WAVE_REQUESTS) & set(REQUESTS)
    assert EvacuateRequest(host="h", to="a, b").to == ["a", "b"]
    assert EvacuateRequest(host="h", to=["a,b", "c"]).to == ["a", "b", "c"]
    with pytest.raises(BadInput, match="both the host to empty and a target"):
        EvacuateRequest(host="h", to=["h"])
    with pytest.raises(BadInput, match="min free '150' is out of range"):
        build(DrainRequest, {"datastore": "d", "min_free": "150"})
    with pytest.raises(BadInput, match="ping of a wave"):
        EvacuateRequest(host="h", ping="10.0.0.1")
    assert [p.name for p in EvacuateRequest.params()][:3] == ["host", "to", "maintenance"]


def test_every_wave_command_is_in_the_help_and_the_readme():
    import subprocess
    import sys
    from pathlib import Path

    runbook = str(Path(sys.executable).with_name("runbook"))
    listed = subprocess.run([runbook, "--help"], capture_output=True, text=True).stdout
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for command in ("evacuate", "drain", "undo"):
        assert command in listed
        assert f"runbook {command}" in readme, f"README does not document runbook {command}"
        usage = subprocess.run([runbook, command, "--help"], capture_output=True, text=True).stdout
        assert "examples:" in usage and "exit codes:" in usage
    assert "runbook migrate --plan" in readme
    assert "--plan" in subprocess.run([runbook, "migrate", "--help"], capture_output=True, text=True).stdout


def test_the_wave_notebook_takes_the_wave_requests_parameters():
    """notebooks/wave.ipynb's parameters are the fields of the evacuate, drain and plan requests (plus ``kind``),
    with their types and help (tests/test_fronts.py's agreement, for the three kinds the notebook runs)."""
    import papermill

    from runbook.fronts import wave_widgets

    declared = papermill.inspect_notebook(str(Path(__file__).resolve().parent.parent / "notebooks" / "wave.ipynb"))
    params = {}
    for cls in wave_widgets.KINDS.values():
        for p in cls.params():
            params.setdefault(p.name, []).append(p)
    assert set(declared) - {"kind"} == set(params)
    for name, found in params.items():
        assert declared[name]["inferred_type_name"] == found[0].type.__name__, name
        helps = {p.help for p in found}
        if any("=" in h for h in helps):  # papermill skips a line with a second "=": the help is cut before it
            assert any(h.startswith(declared[name]["help"].split(" (")[0]) for h in helps), name
        else:
            assert declared[name]["help"] in helps, name


def test_a_plan_file_written_from_edited_rows_reads_back_to_the_same_moves():
    entries = [{"vm": "vm-1", "host": "esx-02", "datastore": None, "disk_format": "same", "network": {}},
               {"vm": "a;b: <x> 'q'", "host": None, "datastore": "nfs=2", "disk_format": "thin",
                "network": {"VM Network": "App;Net=1"}}]
    back = planfile.parse(planfile.to_yaml(entries), "edited.yaml")
    assert [{k: e[k] for k in ("vm", "host", "datastore", "disk_format", "network")} for e in back] == entries


def test_the_wave_events_read_back_from_their_json_form():
    """A wave's events (plan rows, VM states, progress, a stop) round-trip through the events file's JSON, so a
    follower of events.jsonl shows them (runbook.engine.events.from_dict)."""
    import json

    from runbook.engine.events import from_dict
    from runbook.engine.wave_events import PlanRow, VmProgress, VmState, WaveStopped

    for event in (PlanRow(vm="<b>vm</b>", target="esx-02", status="fail", verdict="no", reason="r", remedy="fix"),
                  VmState(vm="web-01", state="moved", text="done", task="task-1", outage_ms=12.0),
                  VmProgress(vm="web-01", percent=40, probes_sent=10, probes_lost=1),
                  WaveStopped(rule="outage", reason="web-01 was unreachable")):
        assert from_dict(json.loads(json.dumps(event.to_dict()))) == event
    assert VmProgress(vm="a", percent=1).line() is None  # printers show no line per progress step
