"""The default study on a real single-node SLURM cluster (slurmctld, slurmd, slurmdbd on
localhost, one fake GPU) through profiles/slurm: its demo ALM trained and probed again as SLURM
jobs must give the local run's model and predictions bit for bit (portable numerics), and the same
tables.

tests/slurm/start.sh starts the daemons (.ci/run installs SLURM's Debian packages beforehand;
start.sh installs any that are missing, about a minute); the fixture stops, by PID, what it
started, also when the test fails.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "slurm"
RUN_DIR = "/tmp/cuealign-slurm"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("apt-get") is None,
    reason="starting a local SLURM cluster needs root and apt-get (CI has both)",
)


@pytest.fixture(scope="module")
def slurm_cluster():
    # the cluster start.sh writes reads /etc/slurm/slurm.conf: no SLURM_CONF (tests/conftest.py)
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    env |= {"SLURM_RUN_DIR": RUN_DIR, "FAKE_GPUS": "1", "PARTITION": "debug"}
    try:
        started = subprocess.run(["bash", SCRIPTS / "start.sh"], env=env, capture_output=True, text=True, timeout=900)
        if started.returncode != 0:
            pytest.fail(f"the local SLURM cluster did not start:\n{started.stdout}\n{started.stderr}")
        yield env
    finally:
        subprocess.run(["bash", SCRIPTS / "stop.sh"], env=env, capture_output=True, timeout=300)


def read_predictions(workdir: Path) -> pd.DataFrame:
    files = sorted((workdir / "results/demo/demo-alm/predictions").glob("*.parquet"))
    table = pd.concat(pd.read_parquet(f) for f in files).drop(columns=["seconds"])
    return table.sort_values(["utt_id", "condition", "variant"]).reset_index(drop=True)


@pytest.mark.slow
def test_the_study_on_slurm_equals_a_local_run(tmp_path, slurm_cluster, default_study):
    local, _ = default_study  # run locally with --cores 2
    # its corpus, tokens and prompts as they are; the demo ALM and all after it made again on SLURM
    cluster = tmp_path / "cluster"
    shutil.copytree(local, cluster, ignore=shutil.ignore_patterns("report.html"))
    for made_again in ("results/demo/demo-alm", "results/cache/predictions", "results/models_table.csv"):
        path = cluster / made_again
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    command = [
        "timeout",
        "-k",
        "10",
        "1200",
        sys.executable,
        "-m",
        "snakemake",
        "--workflow-profile",
        "profiles/slurm",
        "--default-resources",
        "slurm_partition=debug",
        "slurm_account=root",  # the account slurmdbd gives root; the plugin checks it with sacctmgr
        "runtime=20",
        "mem_mb=1000",
        # the demo probes on CPU; ask for the GPU as a GPU model's jobs do, so they go through
        # --gpus=1 and the cluster's (fake) GPU
        "--set-resources",
        "run_inference:gpu=1",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-keep-successful-logs",  # the job ids, per rule, for sacct below
        "--jobs",
        "4",
    ]
    result = subprocess.run(command, cwd=cluster, env=slurm_cluster, capture_output=True, text=True, timeout=1300)
    assert result.returncode == 0, f"the SLURM run failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"

    # the inference jobs ran as SLURM jobs that were given the GPU; training asked for none
    def slurm_jobs(rule: str) -> list[list[str]]:
        logs = sorted((cluster / ".snakemake/slurm_logs" / f"rule_{rule}").rglob("*.log"))
        ids = ",".join(log.stem.split("_")[0] for log in logs)
        assert ids, f"no SLURM job of rule {rule}"
        accounting = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-j", ids, "-o", "JobIDRaw,AllocTRES,State"],
            env=slurm_cluster,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [line.split("|") for line in accounting.splitlines() if line.strip()]

    inference = slurm_jobs("run_inference")
    assert len(inference) == 2 and all("gres/gpu=1" in tres and state == "COMPLETED" for _, tres, state in inference)
    (training,) = slurm_jobs("finetune")  # one core: portable numerics compute in one thread
    assert "gres/gpu" not in training[1] and "cpu=1" in training[1] and training[2] == "COMPLETED"

    model = "results/demo/demo-alm/finetune/model/model.safetensors"
    assert (local / model).read_bytes() == (cluster / model).read_bytes()  # trained to the same bits
    pd.testing.assert_frame_equal(read_predictions(local), read_predictions(cluster), check_exact=True)
    # model_revision names the trained folder by its files' times: each run trained its own copy
    for table in ("uar.csv", "comparisons.csv", "table_main.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(local / "results/demo/demo-alm/analysis" / table).drop(columns="model_revision"),
            pd.read_csv(cluster / "results/demo/demo-alm/analysis" / table).drop(columns="model_revision"),
        )
