"""GPU claims between concurrent jobs, simulated with processes on a machine without GPUs."""

import subprocess
import sys
from pathlib import Path

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
    with pytest.raises(RuntimeError, match="sees no GPU"):
        resolve_device("cuda")


def test_no_gpu_says_why_and_the_way_out(tmp_path):
    from cuealign.models.devices import driver_version, no_gpu_message

    # torch 2.13.0 from PyPI is a CUDA 13.0 build: an R535 node has a GPU torch cannot use
    message = no_gpu_message("2.13.0+cu130", "13.0", driver="535.104.05", environ={})
    assert "built for CUDA 13.0, which needs NVIDIA driver 580 or newer" in message
    assert "this node's driver is 535.104.05" in message and "whl/cu126" in message
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert 'README, "On a GPU node"' in message and "On a GPU node: PyPI's torch 2.13.0" in readme
    assert "CPU-only build" in no_gpu_message("2.13.0+cpu", None, driver="535.104.05", environ={})
    none = no_gpu_message("2.13.0+cu130", "13.0", driver=None, environ={"CUDA_VISIBLE_DEVICES": ""})
    assert "no NVIDIA driver is loaded" in none and "CUDA_VISIBLE_DEVICES=''" in none
    hidden = no_gpu_message("2.13.0+cu130", "13.0", driver="580.65.06", environ={"CUDA_VISIBLE_DEVICES": "-1"})
    assert "may be hidden (CUDA_VISIBLE_DEVICES='-1')" in hidden
    # the kernel module's own line, as /proc/driver/nvidia/version writes it
    proc = tmp_path / "version"
    proc.write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
    )
    assert driver_version(proc) == "535.104.05" and driver_version(tmp_path / "absent") is None
