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


def split_by_shard(table: pd.DataFrame, manifest: pd.DataFrame, n_shards: int) -> list[pd.DataFrame]:
    """Rows of a per-utterance table (prompts: utterance x condition) grouped into the shards of
    their utterances, so that all conditions of an utterance share one shard."""
    shard = dict(zip(manifest["utt_id"], shard_of(len(manifest), n_shards), strict=True))
    of_row = table["utt_id"].map(shard)
    if of_row.isna().any():
        raise ValueError(f"utterances not in the manifest: {table.loc[of_row.isna(), 'utt_id'].unique()[:5]}")
    return [table[of_row == i].reset_index(drop=True) for i in range(n_shards)]
