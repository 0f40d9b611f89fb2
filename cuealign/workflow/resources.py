"""Job resources that follow the data: memory and runtime of the per-corpus stages from what the
job will read (its manifest), so that a large corpus is not killed by limits sized for the demo.

Snakemake evaluates these when it builds the DAG (the manifest may not exist yet: then the
minimum) and again before it schedules the job, when its inputs are there. The coefficients are
measured (benchmarks/scale.py and benchmarks/lld_extraction.py, tables in benchmarks/README.md)
and given a margin of about 2x:

- build_prompts (one job per shard): ~190 MB of libraries and the split's token tables, then
  ~2.7 KB per prompt row of the shard (30,000 x 33 in 8 shards: 124k rows, 523 MB);
- analyse_predictions: a shard's predictions in memory (~3 KB per row), 2 bytes per answer kept,
  and the resamples (B x conditions; B x speakers per quantity with the studentized method);
- extract_lld: openSMILE at a real-time factor of ~0.04 per core;
- run_inference and finetune: the model's weights as loaded (their size on disk in the dtype
  config.json records, scaled to the dtype asked for), on CPU all of them, on a GPU the largest
  weights file (transformers loads shard by shard to the device); full fine-tuning on CPU adds the
  gradients and Adam's two float32 moments; plus the runtime (``RUNTIME_MB``). The workflow's
  8,000 MB stays the floor (the demo and tiny models).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pandas as pd

from cuealign.models.registry import WEIGHT_SUFFIXES, model_folder

MIN_MEM_MB = 1000
# shards: auto. At most this many utterances per shard: a prompts job of 5,000 evaluated x 33
# conditions peaks near 0.6 GB, an LLD job of 5,000 files of ~4.5 s takes ~8 min on 2 cores.
UTTERANCES_PER_SHARD = 5000
MIN_SHARDS = 2
# seconds of one core per second of audio (0.026-0.037 measured); 2 workers reached 0.7-0.8 of
# linear, which the margin covers
LLD_REAL_TIME_FACTOR = 0.04
MARGIN = 2.0


MODEL_MEM_MB = 8000  # the floor of a model job (and its value where the weights are not on disk yet)
RUNTIME_MB = 4000  # torch, the processor, a clip's features, activations and KV cache on the host
WEIGHTS_MARGIN = 1.25
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def stored_weights(path: str, revision: str | None = None) -> tuple[int, int, str] | None:
    """(bytes of all weights files, bytes of the largest, the dtype config.json records) of a
    model on disk, or None where it is not there yet (a model this workflow trains)."""
    import json

    folder = model_folder(path, revision)
    if folder is None:
        return None
    sizes = [f.stat().st_size for f in folder.iterdir() if f.name.endswith(WEIGHT_SUFFIXES) and f.is_file()]
    if not sizes:
        return None
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    nested = config.get("text_config") or config.get("thinker_config") or {}
    stored = config.get("dtype") or config.get("torch_dtype") or nested.get("dtype") or nested.get("torch_dtype")
    return sum(sizes), max(sizes), str(stored or "float32")


def model_mem_mb(path: str, dtype: str, device: str, revision: str | None = None, *, train: str | None = None) -> int:
    """Host memory (MB) of a job that loads the model at ``path`` in ``dtype`` (auto: as stored)
    on ``device``; ``train`` 'full' or 'lora' for a fine-tuning job."""
    found = stored_weights(path, revision)
    if found is None:
        return MODEL_MEM_MB
    total, largest, stored = found
    stored_bytes = DTYPE_BYTES.get(stored, 4)
    loaded_bytes = DTYPE_BYTES.get(dtype, stored_bytes)
    ratio = loaded_bytes / stored_bytes
    on_cpu = device == "cpu"
    held = (total if on_cpu else largest) * ratio
    if train == "full" and on_cpu:  # gradients in the weights' dtype, Adam's two moments in float32
        held += total / stored_bytes * (loaded_bytes + 8)
    return max(MODEL_MEM_MB, int(WEIGHTS_MARGIN * held / 2**20 + RUNTIME_MB))


# shards: auto with GPU models: at least one shard per GPU the run may use, while each keeps this
# many of the corpus' utterances (a tiny corpus is not cut into near-empty jobs)
UTTERANCES_PER_GPU_SHARD = 100


def auto_shards(utterances: int, gpus: int = 0) -> int:
    """The shard count of shards: auto for a corpus of ``utterances``; with ``gpus`` (what
    --resources gpu=N lets run at once, where a model computes on a GPU) at least one per GPU, so
    that every GPU of a node gets an inference job."""
    by_size = max(MIN_SHARDS, math.ceil(utterances / UTTERANCES_PER_SHARD))
    return max(by_size, min(gpus, utterances // UTTERANCES_PER_GPU_SHARD))


def condition_count(conditions: dict) -> int:
    """How many conditions config: conditions asks for (interventions.conditions_from_config's)."""
    return (
        2
        + bool(conditions["conflict"])
        + len(conditions["shuffle_seeds"])
        + len(conditions["corrupt_p"]) * len(conditions["corrupt_seeds"])
        + len(conditions["swap"])
        + bool(conditions["tokens_only"])
    )


def _manifest(path: str | Path, columns: list[str]) -> pd.DataFrame | None:
    """Columns of a manifest, read once per version of the file (every shard's job asks)."""
    try:
        stat = Path(path).stat()
    except OSError:  # not made yet (DAG building): the minimum until it is
        return None
    return _read(str(path), stat.st_mtime_ns, stat.st_size, tuple(columns))


@functools.lru_cache(maxsize=32)
def _read(path: str, mtime_ns: int, size: int, columns: tuple[str, ...]) -> pd.DataFrame | None:
    try:
        return pd.read_parquet(path, columns=list(columns))
    except (OSError, ValueError):  # being written, or not a manifest yet
        return None


def evaluated_utterances(manifest_path: str | Path, split: str) -> int | None:
    """Usable utterances of the evaluated split, or None before the manifest exists."""
    manifest = _manifest(manifest_path, ["split", "status"])
    if manifest is None:
        return None
    usable = manifest[manifest["status"] == "ok"]
    return int(len(usable) if split == "all" else (usable["split"] == split).sum())


def build_prompts_mem_mb(evaluated: int | None, shards: int, conditions: int, wordings: int) -> int:
    if evaluated is None:
        return MIN_MEM_MB
    rows = math.ceil(evaluated / shards) * conditions * wordings
    return max(MIN_MEM_MB, int(MARGIN * (190 + 2.7 * rows / 1024)))


def analysis_mem_mb(
    evaluated: int | None, shards: int, conditions: int, wordings: int, *, resamples: int, method: str
) -> int:
    if evaluated is None:
        return MIN_MEM_MB
    shard_rows = math.ceil(evaluated / shards) * conditions * wordings
    answers = evaluated * conditions * wordings * 2 / 2**20
    quantities = 3 * conditions  # conditions, seed means and comparisons
    resampled = quantities * resamples * 8 / 2**20
    if method == "studentized":  # a (B, G) jackknife per quantity; G up to one speaker per 50 utterances
        resampled *= max(1, evaluated // 50)
    return max(MIN_MEM_MB, int(MARGIN * (250 + 3 * shard_rows / 1024 + answers + resampled)))


def analysis_runtime_min(evaluated: int | None, conditions: int, wordings: int) -> int:
    """Minutes: 30,000 x 33 took 5-8 s on 2 cores (benchmarks/scale.py); a generous floor."""
    if evaluated is None:
        return 30
    return max(30, math.ceil(MARGIN * 10 * evaluated * conditions * wordings / 1e6))


def lld_runtime_min(manifest_path: str | Path, shard: int, shards: int, threads: int) -> int:
    """Minutes for one LLD shard: its audio at openSMILE's real-time factor over its cores (at
    least 60, the profiles' default; a cached file costs nothing, so this is the worst case)."""
    from cuealign.shards import shard_of

    manifest = _manifest(manifest_path, ["status", "duration_s"])
    if manifest is None:
        return 60
    mine = manifest[shard_of(len(manifest), shards) == shard]
    seconds = float(mine.loc[mine["status"] == "ok", "duration_s"].sum())
    return max(60, math.ceil(MARGIN * seconds * LLD_REAL_TIME_FACTOR / max(threads, 1) / 60))
