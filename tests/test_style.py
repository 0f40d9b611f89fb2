"""The checks the anchors' CI runs, as tests: ruff (lint and format), snakefmt, snakemake --lint,
and a conda environment that lists every dependency."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "command",
    [
        (sys.executable, "-m", "ruff", "check", "."),
        (sys.executable, "-m", "ruff", "format", "--check", "."),
        (sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"),
        (sys.executable, "-m", "snakemake", "--lint"),
    ],
    ids=["ruff", "ruff format", "snakefmt", "snakemake --lint"],
)
def test_the_code_is_clean(command):
    result = _run(*command)
    assert result.returncode == 0, result.stdout + result.stderr
    if "--lint" in command:
        assert "Congratulations" in result.stdout + result.stderr


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_the_conda_environment_pins_every_dependency_and_installs_no_path():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "envs/cuealign.yaml").read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    assert not any(line.startswith(("-e", "--editable", ".", "/")) for line in pip)
    pinned = {_name(line): line for line in pip}
    for requirement in project["dependencies"]:
        assert _name(requirement) in pinned, f"envs/cuealign.yaml lacks {requirement}"
        assert "==" in pinned[_name(requirement)], f"envs/cuealign.yaml does not pin {pinned[_name(requirement)]}"
    # the jobs import the package through the link next to the scripts
    assert (REPO / "workflow_scripts/cuealign").resolve() == (REPO / "cuealign").resolve()
