"""The executed notebook (run.ipynb) is written once, when the run ends, not at every cell's start and end
(runbook/fronts/pipeline.py); a kernel that dies mid-run still leaves what ran so far. No vCenter is involved:
the notebooks here stand in for the inventory's."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from runbook.engine.context import RunContext
from runbook.engine.requests import InventoryRequest
from runbook.fronts import pipeline


def _notebook(folder: Path, *sources: str) -> None:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
              "source": [source]} for i, source in enumerate(sources)]
    cells[0]["metadata"]["tags"] = ["parameters"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "inventory.ipynb").write_text(json.dumps({
        "cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths papermill writes the executed notebook to, in order."""
    import papermill.engines
    import papermill.execute
    import papermill.iorw

    seen: list[str] = []
    original = papermill.iorw.write_ipynb

    def counted(nb, path, *args, **kwargs):
        seen.append(str(path))
        return original(nb, path, *args, **kwargs)

    for module in (papermill.iorw, papermill.execute, papermill.engines):
        monkeypatch.setattr(module, "write_ipynb", counted)
    return seen


def test_the_notebook_is_written_once_at_the_end(tmp_path, monkeypatch, writes) -> None:
    _notebook(tmp_path / "nb", 'datacenter = ""\ncluster = ""\nchange_id = ""\nrun_context = ""',
              *[f"print('cell {i}')" for i in range(8)])
    monkeypatch.setenv("RUNBOOK_NOTEBOOKS", str(tmp_path / "nb"))
    result = pipeline.run_notebook(InventoryRequest(), context=RunContext(reports_dir=tmp_path / "reports"))
    ran = json.loads(result.notebook.read_text())
    assert ["".join(o["text"]) for c in ran["cells"][2:] for o in c["outputs"]] == [f"cell {i}\n" for i in range(8)]
    assert writes == [str(result.notebook)], writes  # papermill's own engine wrote it 2 times per cell


def test_a_kernel_that_dies_leaves_what_ran(tmp_path, monkeypatch, writes) -> None:
    _notebook(tmp_path / "nb", 'datacenter = ""\ncluster = ""\nchange_id = ""\nrun_context = ""',
              "print('before the end')", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
              "print('never')")
    monkeypatch.setenv("RUNBOOK_NOTEBOOKS", str(tmp_path / "nb"))
    result = pipeline.run_notebook(InventoryRequest(), context=RunContext(reports_dir=tmp_path / "reports"))
    assert result.outcome == "FAILED"
    ran = json.loads((result.run_dir / "run.ipynb").read_text())
    assert "before the end" in json.dumps(ran["cells"][2]["outputs"]), ran["cells"][2]
    assert "never" not in json.dumps([c["outputs"] for c in ran["cells"]])
    assert len(writes) == 1, writes


def test_a_runs_kernel_never_builds_the_iri_grammar_and_guards_its_shutdown(tmp_path, monkeypatch) -> None:
    """The record's validation imports jsonschema in the kernel; its optional IRI checker (rfc3987_syntax) builds
    a Lark grammar at import, about 3 s of every run: every kernel of a run leaves it out, started ahead or not.
    Every kernel also has ipykernel's shutdown race guarded (tests/test_kernelside.py)."""
    _notebook(tmp_path / "nb", 'datacenter = ""\ncluster = ""\nchange_id = ""\nrun_context = ""',
              "import sys, jsonschema\nprint('iri checker:', type(sys.modules.get('rfc3987_syntax')).__name__)\n"
              "from ipykernel.iostream import IOPubThread\n"
              "print('guarded:', getattr(IOPubThread.schedule, '_runbook_guarded_schedule', False))")
    monkeypatch.setenv("RUNBOOK_NOTEBOOKS", str(tmp_path / "nb"))
    for kernel in (None, pipeline.prestart()):
        result = pipeline.run_notebook(InventoryRequest(), context=RunContext(reports_dir=tmp_path / "reports"),
                                       kernel=kernel)
        ran = json.loads(result.notebook.read_text())
        assert "iri checker: NoneType" in json.dumps(ran["cells"][2]["outputs"]), ran["cells"][2]["outputs"]
        assert "guarded: True" in json.dumps(ran["cells"][2]["outputs"]), ran["cells"][2]["outputs"]
