"""The engine's requests (runbook/engine/requests.py): one place that turns any raw value into a valid request
or one clean line of BadInput, whatever front the value came from."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from runbook.engine.requests import REQUESTS, MoveRequest, build
from runbook.errors import BadInput

RAW = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                st.text(), st.lists(st.text(), max_size=3), st.dictionaries(st.text(), st.text(), max_size=3))


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(REQUESTS)), values=st.dictionaries(st.text(max_size=12), RAW, max_size=6))
def test_any_raw_values_give_a_request_or_one_line_of_bad_input(kind, values):
    try:
        request = build(kind, values)
    except BadInput as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    params = request.to_params()
    json.dumps(params, allow_nan=False)  # every accepted value is plain, finite JSON
    assert build(kind, params) == request  # and reads back as the same request


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from([p.name for p in MoveRequest.params()]), value=RAW)
def test_each_move_field_takes_any_value_cleanly(field, value):
    base = {"vm": "web-01", "target_host": "esx-02"}
    try:
        request = build("migrate", {**base, field: value})
    except BadInput as exc:
        assert "\n" not in str(exc)
        return
    got = getattr(request, field)
    if isinstance(got, float):
        assert math.isfinite(got)
    param = next(p for p in MoveRequest.params() if p.name == field)
    assert isinstance(got, param.type) and not (param.type is not bool and isinstance(got, bool))
    if param.minimum is not None:
        assert param.minimum <= got <= param.maximum


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", float("nan"), float("inf"), "1e400"])
def test_numbers_that_are_not_finite_are_refused(value):
    with pytest.raises(BadInput, match="finite|out of range"):
        build("migrate", {"vm": "a", "target_host": "b", "timeout_s": value})


def test_papermill_gives_numbers_for_names_and_they_stay_names():
    request = build("migrate", {"vm": 123, "target_host": "esx-02", "change_id": 42})
    assert request.vm == "123" and request.change_id == "42"


def test_network_map_from_the_cli_papermill_or_python_is_the_same():
    forms = [["VM Network=App Network"], '{"VM Network": "App Network"}', {"VM Network": "App Network"},
             "VM Network=App Network"]
    maps = [build("check", {"vm": "a", "target_host": "b", "network_map": f}).network_map for f in forms]
    assert all(m == {"VM Network": "App Network"} for m in maps)
    with pytest.raises(BadInput, match="mapped twice"):
        build("check", {"vm": "a", "target_host": "b", "network_map": ["A=B", "A=C"]})


def test_enable_vmotion_needs_a_cluster_or_hosts_not_both():
    with pytest.raises(BadInput, match="either a cluster"):
        build("enable-vmotion", {})
    with pytest.raises(BadInput, match="either a cluster"):
        build("enable-vmotion", {"cluster": "C", "hosts": ["h"]})
    assert build("enable-vmotion", {"hosts": "esx-01, esx-02"}).hosts == ["esx-01", "esx-02"]


def test_disk_placement_from_the_cli_papermill_or_python_is_the_same():
    forms = [["Hard disk 1=nfs-02:thin", "2001=nfs:03"], '{"Hard disk 1": "nfs-02:thin", "2001": "nfs:03"}',
             {"Hard disk 1": " nfs-02 : THIN ", 2001: "nfs:03"}, "Hard disk 1=nfs-02:thin, 2001=nfs:03"]
    for form in forms:
        request = build("migrate", {"vm": "a", "disk_placement": form, "disk_format": "thick"})
        assert request.disk_placement == {"Hard disk 1": "nfs-02:thin", "2001": "nfs:03"}
        # a format after the last ":" splits; "nfs:03" is a datastore; a disk without a format takes disk_format
        assert request.plan().disk_placement == {"Hard disk 1": ("nfs-02", "thin"), "2001": ("nfs:03", "thick")}


@pytest.mark.parametrize("value, words", [
    (["Hard disk 1=:thin"], "names no datastore"), (["Hard disk 1=nfs-02:"], "empty format"),
    (["=nfs-02"], "is not DISK=DATASTORE"), (["Hard disk 1"], "is not DISK=DATASTORE"),
    ({"Hard disk 1": 3}, "non-empty text"), (["1=a", "1=b"], "disk '1' is mapped twice"),
])
def test_a_malformed_disk_placement_is_refused_in_one_line(value, words):
    with pytest.raises(BadInput, match=words) as refused:
        build("check", {"vm": "a", "target_host": "b", "disk_placement": value})
    assert "\n" not in str(refused.value)


@settings(max_examples=400, deadline=None)
@given(value=st.one_of(st.text(), st.lists(st.text(), max_size=3), st.dictionaries(st.text(), st.text(), max_size=3)))
def test_any_disk_placement_gives_a_request_or_one_line_of_bad_input(value):
    try:
        request = build("migrate", {"vm": "web-01", "disk_placement": value})
    except BadInput as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    for disk, target in request.plan().disk_placement.items():
        datastore, fmt = target
        assert disk.strip() == disk and disk and datastore.strip() == datastore and datastore
        assert fmt in ("same", "thin", "thick", "eagerzeroedthick")
    assert build("migrate", request.to_params()) == request  # and reads back as the same request


@pytest.mark.parametrize("text, expected", [
    ("nfs-02", ("nfs-02", None)), ("nfs-02:thin", ("nfs-02", "thin")), (" nfs-02 : Thick ", ("nfs-02", "thick")),
    ("nfs:02", ("nfs:02", None)), ("nfs:02:eagerzeroedthick", ("nfs:02", "eagerzeroedthick")),
    ("a:thin:same", ("a:thin", "same")), ("x:thinn", ("x:thinn", None)),
])
def test_a_disk_target_splits_off_a_format_only_after_the_last_colon(text, expected):
    from runbook.engine.requests import disk_target

    assert disk_target(text) == expected
