"""Which utterances each shard holds: the unit of one per-utterance job (LLDs, prompts, inference)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def shard_of(n_rows: int, n_shards: int) -> np.ndarray:
    """Shard index of each row: contiguous blocks of the manifest's order, as even as possible."""
    if n_shards < 1:
        raise ValueError(f"shards must be at least 1, got {n_shards}")
    return np.arange(n_rows) * n_shards // max(n_rows, 1)


def shard_rows(manifest: pd.DataFrame, shard: int, n_shards: int) -> pd.DataFrame:
    """The manifest rows of one shard. Every status is counted in the split, so a file changing
    status moves no other utterance to another shard."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} is outside 0..{n_shards - 1}")
    return manifest[shard_of(len(manifest), n_shards) == shard]
