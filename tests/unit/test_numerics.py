"""Portable numerics: the demo's training and scoring give the same bits whatever kernel path the
CPU offers (PyTorch's instruction set, MKL's and oneDNN's code paths, NumPy's and OpenBLAS's, the
thread count) and on a CPU of another maker, which the native kernels do not."""

from __future__ import annotations

import json
import os
import pickle
import platform
import shutil
import subprocess
import sys

import pytest

from cuealign.models.numerics import (
    job_threads,
    numerics_in_use,
    numpy_baseline_environment,
    use_portable_numerics,
    wants_portable,
)
from tests.workflow.conftest import REPO

# Kernel paths one machine can reach: PyTorch's dispatch (a capability above the CPU's falls back
# to the CPU's own), MKL's instruction set, oneDNN's, NumPy's SIMD and OpenBLAS's core type.
KERNEL_PATHS = {
    "aten default": {"ATEN_CPU_CAPABILITY": "default"},
    "aten avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "aten avx512, mkl sse4.2": {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "onednn sse4.1, numpy baseline, openblas sandybridge": {
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4",
        "OPENBLAS_CORETYPE": "Sandybridge",
    },
}
# variables of this process that would choose a kernel path for the child
SCRUBBED = {
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "ONEDNN_MAX_CPU_ISA",
    "NPY_DISABLE_CPU_FEATURES",
}


@pytest.fixture(scope="module")
def study_file(tiny_study, tmp_path_factory):
    path = tmp_path_factory.mktemp("numerics") / "study.pkl"
    path.write_bytes(pickle.dumps(tiny_study))
    return path


# Another maker's CPU, as QEMU's user-mode emulation (Debian's qemu-user) models it: an AMD EPYC
# (Zen 2: AuthenticAMD, AVX2, no AVX-512) whose approximate instructions (rcpps, rsqrtps) give other
# bits than this machine's, as AMD's and Intel's do. About 3 minutes (QEMU runs ~20x slower).
EMULATED_CPU = "EPYC-Rome-v2"


def start_probe(study_file, tmp_path, name: str, numerics: str, threads: int, env: dict, prefix=()):
    environment = {k: v for k, v in os.environ.items() if k not in SCRUBBED} | env
    out = tmp_path / name.replace(" ", "_").replace(",", "")
    command = [*prefix, sys.executable, "-m", "tests.numerics_probe", str(study_file), str(out), numerics, str(threads)]
    return subprocess.Popen(
        command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish_probe(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def probe(study_file, tmp_path, name: str, numerics: str, threads: int, env: dict) -> dict:
    return finish_probe(start_probe(study_file, tmp_path, name, numerics, threads, env))


@pytest.mark.slow
def test_portable_training_and_scoring_give_the_same_bits_on_every_kernel_path(study_file, tmp_path):
    runs = {
        f"{name}, {threads} threads": probe(study_file, tmp_path, f"{name} {threads}", "portable", threads, env)
        for name, env in KERNEL_PATHS.items()
        for threads in ((1, 2) if name == "aten avx2" else (2,))
    }
    for run in runs.values():
        del run["control"]  # MKL's square root: the emulated CPU's test below uses it
    first = next(iter(runs.values()))
    assert first["numerics"] == "portable" and first["prompts"] > 0
    for name, run in runs.items():
        assert run == first, f"{name} differs from {next(iter(runs))}: {run} != {first}"


@pytest.mark.slow
def test_portable_training_and_scoring_give_the_same_bits_on_another_makers_cpu(study_file, tmp_path):
    """Intel's and AMD's CPUs round their approximate instructions differently; before the fused
    optimiser step, portable training took one through MKL's square root and the demo's numbers
    differed between an Intel Xeon and an AMD EPYC (docs/findings.md). Here the probe runs on an
    emulated AMD EPYC and must give this machine's bits, while the control (a square root through
    MKL) shows that the emulated CPU does give other bits where code depends on such instructions."""
    if platform.machine() != "x86_64" or shutil.which("qemu-x86_64") is None:
        pytest.skip("needs an x86-64 machine with QEMU's user-mode emulation (Debian: apt-get install qemu-user)")
    emulated = start_probe(
        study_file, tmp_path, "emulated", "portable", 1, {}, prefix=("qemu-x86_64", "-cpu", EMULATED_CPU)
    )
    here = probe(study_file, tmp_path, "here", "portable", 1, {})
    there = finish_probe(emulated)
    assert here["numerics"] == there["numerics"] == "portable" and here["prompts"] == there["prompts"] > 0
    assert there["control"] != here["control"], "the emulated CPU computed MKL's square root as this one does"
    del here["control"], there["control"]
    assert there == here, f"on an emulated {EMULATED_CPU}: {there} != here: {here}"


@pytest.mark.slow
def test_native_kernels_differ_between_paths_so_the_comparison_can_fail(study_file, tmp_path):
    """The control: without portable numerics the same training gives other bits on another kernel
    path (what made the README's numbers differ between machines)."""
    import torch

    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("this CPU has no SIMD kernel path to compare with the baseline one")
    baseline = probe(study_file, tmp_path, "native default", "native", 2, {"ATEN_CPU_CAPABILITY": "default"})
    own = probe(study_file, tmp_path, "native own", "native", 2, {})
    assert baseline["numerics"] == own["numerics"] == "native"
    assert baseline["weights"] != own["weights"] and baseline["losses"] != own["losses"]


def test_auto_is_portable_on_cpu_only_and_portable_jobs_declare_one_core():
    assert wants_portable("auto", "cpu") and wants_portable("portable", "cpu")
    assert not wants_portable("auto", "cuda") and not wants_portable("native", "cpu")
    assert job_threads("auto", "cpu", native=2) == 1 and job_threads("native", "cpu", native=2) == 2
    assert job_threads("auto", "cuda:0", native=4) == 4
    with pytest.raises(ValueError, match="numerics: 'exact' is not one of auto, portable, native"):
        wants_portable("exact", "cpu")


def test_portable_numerics_are_refused_once_torch_has_computed():
    """Here torch has run other kernels already: the switch would do nothing, so it is an error."""
    import torch

    torch.ones(3).sum()
    before = {name: os.environ.get(name) for name in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("this process already runs the baseline kernels")
    with pytest.raises(RuntimeError, match="before this process's first tensor operation"):
        use_portable_numerics()
    assert numerics_in_use() == "native"
    assert {name: os.environ.get(name) for name in before} == before  # the environment is left as it was


def numpy_child(env: dict) -> dict:
    """NumPy's SIMD paths in a new process with ``env``, and bits of functions whose SIMD versions
    round otherwise: exp in float32 (AVX2 and AVX-512) and log in float64 (AVX-512)."""
    check = (
        "import hashlib, json, numpy as np; from cuealign.models.numerics import numpy_simd_in_use; "
        "x = np.linspace(0.1, 50, 100003); "
        "bits = np.exp(-x.astype(np.float32)).tobytes() + np.log(x).tobytes(); "
        "print(json.dumps({'simd': numpy_simd_in_use(), 'bits': hashlib.sha256(bits).hexdigest()}))"
    )
    environment = {k: v for k, v in os.environ.items() if k not in SCRUBBED} | env
    out = subprocess.run([sys.executable, "-c", check], env=environment, cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_numpy_in_a_new_process_takes_its_baseline_code_only(monkeypatch):
    """What the Snakefile gives every job: NumPy without its run-time SIMD paths, whose elementary
    functions differ in the last bits between AVX2, AVX-512 and none; a target the environment
    disabled already stays disabled."""
    monkeypatch.setenv("NPY_DISABLE_CPU_FEATURES", "AVX512_SPR")
    assert numpy_baseline_environment()["NPY_DISABLE_CPU_FEATURES"].split()[0] == "AVX512_SPR"
    monkeypatch.delenv("NPY_DISABLE_CPU_FEATURES")
    environment = numpy_baseline_environment()
    baseline, native = numpy_child(environment), numpy_child({})
    assert baseline["simd"] == "baseline"
    if native["simd"] != "baseline":  # the control, on a CPU with SIMD paths: they give other bits
        assert native["bits"] != baseline["bits"], f"NumPy's {native['simd']} paths gave the baseline's bits"
