"""Run the real Snakemake workflow on a temporary copy of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_PARTS = ["Snakefile", "rules", "workflow_scripts", "envs", "config.yaml", "profiles", "report"]


def snakemake(
    workdir: Path, *args: str, check: bool = True, timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``snakemake ARGS`` in ``workdir`` (``env``: variables added to this process'); output is
    captured and shown when it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        env=None if env is None else os.environ | env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def copy_workflow(target: Path) -> Path:
    """The workflow's files (not the package, which is installed) copied into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, target / part)
        else:
            shutil.copy(source, target / part)
    return target


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    """A copy of the workflow in a temp folder."""
    return copy_workflow(tmp_path)


def write_config(workflow: Path, config: dict) -> Path:
    path = workflow / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def default_study(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The default study exactly as the README runs it (its numbers are the README's), with its
    report; and what the run printed. Run once: every test that needs a whole study reads this one
    (the SLURM test compares a cluster run with it)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("default-study-full"))
    run = snakemake(workdir, "--cores", "2", "--report-after-run", "--report", "report.html", timeout=1800)
    return workdir, run


@pytest.fixture(scope="session")
def short_window_alm(tmp_path_factory) -> Path:
    """A tiny random-weight Qwen2-Audio (the real class, saved with save_pretrained) whose processor
    and encoder read a 4 s window: the workflow tests' clips are at most 3.6 s, so it answers as at
    the released 30 s with a fraction of the encoder's work."""
    from cuealign.models.tiny import build_tiny_alm
    from tests.conftest import PROMPT_TEXTS

    return build_tiny_alm("qwen2-audio", tmp_path_factory.mktemp("models") / "short", PROMPT_TEXTS * 3, window_s=4)
