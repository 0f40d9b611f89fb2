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
            raise RuntimeError("config: a model's device is 'cuda' but no GPU is visible; use device: cpu")
        return f"cuda:{claim_device(count)}", None
    return device, None
