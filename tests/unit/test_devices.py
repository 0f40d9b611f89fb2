"""GPU claims between concurrent jobs, simulated with processes on a machine without GPUs."""

import subprocess
import sys

import pytest

from cuealign.models.devices import claim_device, resolve_device

CLAIM = (
    "import sys; from cuealign.models.devices import claim_device; "
    "print(claim_device(int(sys.argv[1]), lock_dir=sys.argv[2]), flush=True); sys.stdin.read()"
)


def test_concurrent_jobs_get_different_devices_and_a_finished_job_frees_its_own(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM, "2", str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        claimed = [int(job.stdout.readline()) for job in jobs]
        assert sorted(claimed) == [0, 1]
        # a third job finds both devices held: a clear error, not a silent double booking
        third = subprocess.run(
            [sys.executable, "-c", CLAIM, "2", str(tmp_path)], input="", capture_output=True, text=True
        )
        assert third.returncode != 0 and "all 2 visible GPUs are claimed" in third.stderr
        jobs[0].kill()  # a killed job's claim goes with its process
        jobs[0].wait()
        again = subprocess.run(
            [sys.executable, "-c", CLAIM, "2", str(tmp_path)], input="", capture_output=True, text=True
        )
        assert again.returncode == 0 and int(again.stdout) == claimed[0]  # exactly the freed device
    finally:
        for job in jobs:
            job.kill()
            job.wait()


def test_visible_device_is_claimed_by_its_physical_id(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert claim_device(1, lock_dir=tmp_path) == 0
    assert (tmp_path / "cuealign-gpu-3.lock").exists()


def test_slurm_jobs_on_one_node_each_get_their_own_gpu_0(tmp_path):
    # the cgroup numbers each sbatch job's only GPU 0; two such jobs must not block each other
    jobs = []
    try:
        for job_id in ("101", "102"):
            env = {"CUDA_VISIBLE_DEVICES": "0", "SLURM_JOB_ID": job_id, "PATH": "/usr/bin:/bin"}
            jobs.append(
                subprocess.Popen(
                    [sys.executable, "-c", CLAIM, "1", str(tmp_path)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            )
        assert [job.stdout.readline().strip() for job in jobs] == ["0", "0"]
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "cuealign-gpu-slurm101-0.lock",
            "cuealign-gpu-slurm102-0.lock",
        ]
    finally:
        for job in jobs:
            job.kill()
            job.wait()


def test_resolve_device():
    assert resolve_device("cpu") == ("cpu", None)
    assert resolve_device("auto") == ("cpu", "auto")
    assert resolve_device("cuda:1") == ("cuda:1", None)
    with pytest.raises(RuntimeError, match="no GPU is visible"):
        resolve_device("cuda")
