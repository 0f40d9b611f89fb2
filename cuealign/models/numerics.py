"""Portable floating point: the same bits from a CPU job on every x86-64 machine.

A model trained on CPU is a long chain of float operations whose rounding depends on which kernel
runs them: PyTorch picks its kernels by the CPU's instruction set (AVX2, AVX-512 or none), MKL its
matrix products by processor (Intel or AMD, AVX2 or AVX-512), oneDNN its convolutions likewise, and
a reduction split over threads adds in another order. The differences start in the last bit and
grow through training into other weights and other answers: the demo's tables once differed
between machines in every condition, by up to 0.15 UAR in one (benchmarks/README.md, "Portable
numerics").

``numerics: portable`` (a model's or fine-tuning entry's key; the default on CPU) removes the
cause: PyTorch's own kernels in their baseline build (``ATEN_CPU_CAPABILITY=default``: the same
machine code on every x86-64 CPU), MKL in its conditional-numerical-reproducibility mode
(``MKL_CBWR=COMPATIBLE``: documented as one code path on Intel and AMD), no oneDNN or NNPACK kernels (they
choose code by the CPU at run time), deterministic algorithms and one intra-op thread (a fixed
order of every sum). It must be set before the process's first tensor operation: PyTorch reads its
instruction set once, so a later call is refused rather than silently doing nothing.

``numerics: native`` uses the fastest kernels this CPU has (a GPU always does).

MKL's COMPATIBLE path is not the whole answer: PyTorch's CPU ``sqrt`` (and ``asin``, ``acos``,
``atan``) go through MKL's vector math, whose last bits there still depend on how the CPU computes
its approximate instructions, and Intel's and AMD's compute them differently. The optimiser's square
root is the one that mattered (the demo's numbers differed between an Intel Xeon and an AMD EPYC):
fine-tuning on CPU takes the fused AdamW step, whose square root is the CPU's IEEE instruction
(``cuealign.models.finetune.train``). ``tests/unit/test_numerics.py`` checks the bits on an
emulated AMD EPYC (QEMU), as well as under this machine's kernel paths.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

NUMERICS = ("auto", "portable", "native")
# Read by PyTorch (its dispatch) and MKL (its code path) at their first use in the process.
PORTABLE_ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def wants_portable(numerics: str, device: str) -> bool:
    """Whether a job on ``device`` runs with portable numerics: 'auto' means portable on CPU."""
    if numerics not in NUMERICS:
        raise ValueError(f"numerics: {numerics!r} is not one of {', '.join(NUMERICS)}")
    return numerics == "portable" or (numerics == "auto" and device == "cpu")


def use_portable_numerics() -> None:
    """Make every later torch operation in this process give the same bits on any x86-64 CPU
    (see the module's docstring). Refused once torch has computed with other kernels."""
    before = {name: os.environ.get(name) for name in PORTABLE_ENVIRONMENT}
    os.environ.update(PORTABLE_ENVIRONMENT)  # read by torch's first dispatch, which the check below makes
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "DEFAULT":
        for name, value in before.items():  # as it was: this process keeps computing natively
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value
        raise RuntimeError(
            f"portable numerics must be chosen before this process's first tensor operation; torch already "
            f"dispatches to its {capability} kernels (set ATEN_CPU_CAPABILITY=default in the environment, or "
            "call cuealign.models.numerics.use_portable_numerics() first)"
        )
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    log.info("portable numerics: torch's baseline kernels, MKL_CBWR=COMPATIBLE, no oneDNN, one thread")


def numerics_in_use(device: str = "cpu") -> str:
    """'portable' when this process computes on CPU as use_portable_numerics() set it up, else
    'native': what a job's answers were computed with (recorded with them, in their cache key)."""
    import torch

    portable = (
        device == "cpu"
        and torch.backends.cpu.get_cpu_capability() == "DEFAULT"
        and os.environ.get("MKL_CBWR") == PORTABLE_ENVIRONMENT["MKL_CBWR"]
        and not torch.backends.mkldnn.enabled
        and torch.get_num_threads() == 1
    )
    return "portable" if portable else "native"


def job_threads(numerics: str, device: str, *, native: int) -> int:
    """The cores a job declares: one where it computes portably (one intra-op thread), else ``native``."""
    return 1 if wants_portable(numerics, device) else native


def setup_numerics(numerics: str, device: str, *, threads: int) -> bool:
    """The job's numerics, chosen once at its start: portable (True) or ``threads`` native threads."""
    if wants_portable(numerics, device):
        use_portable_numerics()
        return True
    import torch

    torch.set_num_threads(threads)
    return False


def _numpy_simd_taken() -> list[str]:
    """NumPy's run-time SIMD targets (AVX2, AVX-512, ...) that this process takes."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return [target for target in __cpu_dispatch__ if __cpu_features__.get(target)]


def numpy_baseline_environment() -> dict[str, str]:
    """The environment under which a new process's NumPy computes with its baseline code only: the
    same machine code on every x86-64 CPU. NumPy's SIMD paths round its elementary functions (exp,
    log, power in float64) and order argsort's ties differently on AVX2 and AVX-512 CPUs
    (docs/findings.md, "The same bits on every CPU"). Names every target this CPU would take, and
    keeps what the environment disabled already (NumPy reads it once, at import)."""
    already = os.environ.get("NPY_DISABLE_CPU_FEATURES", "").replace(",", " ").split()
    return {"NPY_DISABLE_CPU_FEATURES": " ".join(dict.fromkeys(already + _numpy_simd_taken()))}


def numpy_simd_in_use() -> str:
    """'baseline' when this process's NumPy takes none of its run-time SIMD paths, else their names."""
    return ", ".join(_numpy_simd_taken()) or "baseline"
