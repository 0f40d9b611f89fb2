"""What clusters do to jobs, done for real: SIGKILL of an inference job mid-shard, SIGKILL of the
whole Snakemake run, then recovery as the README says; the results equal an uninterrupted run."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.workflow.conftest import copy_workflow, snakemake, write_config

DEMO = {
    "type": "synthetic",
    "seed": 5,
    "female_speakers": 3,
    "male_speakers": 3,
    "utterances_per_class": 3,
    "test_speakers_per_gender": 1,
    "tokens": {"normalise": "speaker", "per_gender": []},
}
CONDITIONS = {"swap": ["ENERGY", "PITCH", "BRIGHTNESS", "DYNAMICS", "FORMANTS", "VOICE_QUALITY"], "tokens_only": True}
TEST_UTTERANCES, N_CONDITIONS = 2 * 4 * 3, 33


def study(workflow: Path, model: Path) -> Path:
    write_config(
        workflow,
        {
            "corpora": {"demo": DEMO},
            "conditions": CONDITIONS,
            "finetune": {},
            "models": {"tiny": {"family": "qwen2-audio", "path": str(model), "batch_size": 16}},
            "analysis": {"resamples": 100},
        },
    )
    return workflow


def entries(workflow: Path, namespace: str) -> int:
    """Entries in a cache: JSON files (LLDs), or rows of the answer store's SQLite files (answers)."""
    folder = workflow / "results/cache" / namespace
    if not folder.is_dir():
        return 0
    count = sum(1 for _ in folder.rglob("*.json"))
    for path in folder.glob("*.sqlite"):
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as connection:
                count += connection.execute("SELECT count(*) FROM answers").fetchone()[0]
        except sqlite3.Error:  # being created, or locked past the timeout: counted next time
            continue
    return count


def wait_for(condition, run: subprocess.Popen, what: str, timeout: float = 300):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if found := condition():
            return found
        if run.poll() is not None:
            pytest.fail(f"the run ended before {what}:\n{run.output.read_text()}")
        time.sleep(0.01)
    pytest.fail(f"no {what} after {timeout} s")


def inference_job(workflow: Path) -> int | None:
    """PID of the run_inference script Snakemake started in ``workflow``, if one is running."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            # the Python process itself, not the shell Snakemake may start it through
            if (
                "python" in Path(argv[0]).name
                and any(a.endswith("run_inference.py") for a in argv)
                and Path(os.readlink(proc / "cwd")) == workflow
            ):
                return int(proc.name)
        except (OSError, ValueError):
            continue
    return None


def dead(pid: int) -> bool:
    """Gone, or a zombie (killed, not yet reaped): it writes nothing more."""
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def start(workflow: Path, *args: str) -> subprocess.Popen:
    """Snakemake in its own process group (to kill it with its jobs), its output in a file."""
    run = subprocess.Popen(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workflow,
        start_new_session=True,
        stdout=open(workflow / "snakemake.out", "w"),  # noqa: SIM115 - the child process owns it
        stderr=subprocess.STDOUT,
    )
    run.output = workflow / "snakemake.out"
    return run


def predictions(workflow: Path) -> pd.DataFrame:
    table = pd.concat(
        pd.read_parquet(p) for p in sorted((workflow / "results/demo/tiny/predictions").glob("*.parquet"))
    )
    return table.drop(columns="seconds").sort_values(["utt_id", "condition"]).reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.workflow
def test_killed_jobs_and_a_killed_run_recover_to_the_uninterrupted_results(tmp_path, short_window_alm):
    reference = study(copy_workflow(tmp_path / "reference"), short_window_alm)
    snakemake(reference, "--cores", "2")
    killed = study(copy_workflow(tmp_path / "killed"), short_window_alm)

    # 1. the whole run SIGKILLed (a lost login node) while it extracts features
    run = start(killed, "--cores", "1")
    wait_for(lambda: entries(killed, "lld"), run, "LLDs in the cache")
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not (killed / "results/demo/tiny/analysis/uar.csv").exists()
    locked = snakemake(killed, "--cores", "1", check=False)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr  # Snakemake says what to do
    snakemake(killed, "--unlock")

    # 2. the recovery run, whose inference job is SIGKILLed (OOM killer, preemption) mid-shard;
    # --retries 1 (the profiles' setting) resubmits it and it resumes from the answer cache
    run = start(killed, "--cores", "1", "--rerun-incomplete", "--retries", "1")
    pid = wait_for(lambda: entries(killed, "predictions") and inference_job(killed), run, "answers")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: dead(pid), run, "the job's end")
    done_before_kill = entries(killed, "predictions")
    assert run.wait(timeout=600) == 0, run.output.read_text()
    per_shard = TEST_UTTERANCES * N_CONDITIONS // 2
    assert 0 < done_before_kill < per_shard  # really killed inside a shard
    # the resubmitted job reused every answer written before the kill (a row per prompt; a swap of a
    # MID token asks what aligned asks, so rows >= cache entries) and computed only the rest
    counts = [
        re.search(r"(\d+) predictions \((\d+) computed, (\d+) from the cache, (\d+) the same", log.read_text()).groups()
        for log in sorted((killed / "logs/demo/tiny/run_inference").glob("*.log"))
    ]
    fresh, resumed = sorted(int(cached) for _, _, cached, _ in counts)
    assert fresh == 0 and resumed >= done_before_kill
    assert all(
        int(total) == int(computed) + int(cached) + int(same) == per_shard for total, computed, cached, same in counts
    )

    # nothing lost, nothing twice, and the same numbers as the uninterrupted run
    got, want = predictions(killed), predictions(reference)
    assert len(got) == TEST_UTTERANCES * N_CONDITIONS and not got.duplicated(["utt_id", "condition"]).any()
    pd.testing.assert_frame_equal(got, want)
    for table in ("uar.csv", "comparisons.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(killed / "results/demo/tiny/analysis" / table),
            pd.read_csv(reference / "results/demo/tiny/analysis" / table),
        )
    rerun = snakemake(killed, "--cores", "1")
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
