"""Which GPU an inference job uses.

Snakemake counts GPUs (``--resources gpu=N``) but does not say which one a job should take. A job
configured with ``device: cuda`` therefore claims the first visible GPU that no other job on this
machine holds, by an exclusive lock on a file per device; the operating system releases the lock
when the job's process ends, however it ends, so a killed job never leaves a device claimed.
Under SLURM the locks are kept per SLURM job: an sbatch job sees only its own GPUs (often all
numbered 0 by the cgroup), so jobs on one node must not contend for "GPU 0"; local jobs inside
one salloc allocation share its id and so share, and divide, its GPUs.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_held: list[IO] = []  # open lock files: the claims last as long as the process


def claim_device(count: int, *, lock_dir: str | Path | None = None) -> int:
    """Index of a free device among ``count`` visible ones, held until this process exits."""
    lock_dir = Path(lock_dir or os.environ.get("CUEALIGN_LOCK_DIR", tempfile.gettempdir()))
    lock_dir.mkdir(parents=True, exist_ok=True)
    # Lock names follow the physical ids where CUDA_VISIBLE_DEVICES gives them.
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    names = [v.strip() for v in visible.split(",") if v.strip()] if visible else [str(i) for i in range(count)]
    allocation = f"slurm{os.environ['SLURM_JOB_ID']}-" if os.environ.get("SLURM_JOB_ID") else ""
    for index, name in enumerate(names[:count]):
        # kept open on success: the lock lives as long as the handle (released when the process dies)
        handle = open(lock_dir / f"cuealign-gpu-{allocation}{name}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _held.append(handle)
        log.info("claimed GPU %s (visible index %d)", name, index)
        return index
    raise RuntimeError(
        f"all {count} visible GPUs are claimed by other cuealign jobs; run with "
        f"`--resources gpu={count}` so Snakemake starts no more GPU jobs than there are GPUs"
    )


def resolve_device(device: str) -> tuple[str, str | None]:
    """(torch device, device_map): 'cuda' claims a free GPU; 'auto' spreads the model over all
    visible GPUs with accelerate (device_map='auto'); anything else is used as given."""
    if device == "auto":
        return "cpu", "auto"
    if device == "cuda":
        import torch

        count = torch.cuda.device_count()
        if count == 0:
            raise RuntimeError(no_gpu_message(torch.__version__, torch.version.cuda))
        return f"cuda:{claim_device(count)}", None
    return device, None


# The oldest NVIDIA Linux driver each CUDA major version runs on (NVIDIA's CUDA toolkit release
# notes, "CUDA Toolkit and Corresponding Driver Versions", minor-version compatibility)
MIN_DRIVER = {11: 450, 12: 525, 13: 580}
DRIVER_FILE = Path("/proc/driver/nvidia/version")


def driver_version(path: Path = DRIVER_FILE) -> str | None:
    """The loaded NVIDIA kernel driver's version ('NVRM version: NVIDIA UNIX ... Kernel Module
    535.104.05 ...'), or None where no NVIDIA driver is loaded."""
    try:
        text = path.read_text()
    except OSError:
        return None
    words = text.split()
    for before, word in zip(words, words[1:], strict=False):
        if before == "Module" and word[:1].isdigit():
            return word
    return None


def no_gpu_message(torch_version: str, torch_cuda: str | None, driver: str | None = None, environ=None) -> str:
    """Why torch sees no GPU, and the way out: a CPU build of torch, a CUDA build newer than the
    node's driver, no driver at all, or devices hidden from the job."""
    environ = os.environ if environ is None else environ
    driver = driver if driver is not None else driver_version()
    start = f"config: a model's device is 'cuda' but torch {torch_version} sees no GPU"
    install = (
        "install the torch build for a CUDA version the driver supports, e.g. `pip install torch==2.13.0 "
        "--index-url https://download.pytorch.org/whl/cu126` where PyTorch publishes one for that release "
        '(README, "On a GPU node"), or use device: cpu'
    )
    if torch_cuda is None:
        return f"{start}: it is a CPU-only build (no CUDA); {install}"
    if driver is None:
        hidden = environ.get("CUDA_VISIBLE_DEVICES")
        where = f" (CUDA_VISIBLE_DEVICES={hidden!r})" if hidden is not None else ""
        return (
            f"{start}: no NVIDIA driver is loaded on this machine{where}; run the job on a GPU node (on SLURM: "
            "slurm_extra '--gpus=1' in the model's resources, docs/cluster.md), or use device: cpu"
        )
    major = int(torch_cuda.split(".")[0])
    needed = MIN_DRIVER.get(major)
    if needed and int(driver.split(".")[0]) < needed:
        return (
            f"{start}: it is built for CUDA {torch_cuda}, which needs NVIDIA driver {needed} or newer, and this "
            f"node's driver is {driver}; {install}"
        )
    return (
        f"{start} although NVIDIA driver {driver} is loaded (torch built for CUDA {torch_cuda}): the job's devices "
        f"may be hidden (CUDA_VISIBLE_DEVICES={environ.get('CUDA_VISIBLE_DEVICES')!r}) or in use by another "
        "process in exclusive mode; see nvidia-smi, or use device: cpu"
    )
