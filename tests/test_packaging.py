"""Project conventions that CI keeps: environment.yml mirrors pyproject, notebooks are clean and documented."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import papermill
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_mirrors_pyproject():
    import yaml  # noqa: F401 - jupyter brings PyYAML

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pinned = {_name(d): d.replace(" ", "") for d in conda if _name(d) not in ("python", "pip")}
    assert set(pinned) == {_name(d) for d in deps}
    for dep in deps:
        assert pinned[_name(dep)] == dep.replace(" ", ""), dep
    assert "-e ." in pip


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_are_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        assert not cell.get("outputs") and not cell.get("execution_count"), f"{path.name} has outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_parameter_is_typed_and_explained(path):
    params = papermill.inspect_notebook(str(path))
    assert params, f"{path.name} has no parameters cell"
    for name, p in params.items():
        assert p["inferred_type_name"] != "None", f"{path.name}: {name} has no type"
        assert p["help"].strip(), f"{path.name}: {name} has no comment"
        assert not re.search(r"pass|secret|token", name, re.I), f"{path.name}: {name} looks like a secret"
