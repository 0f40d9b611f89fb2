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
    """Rows of a per-utterance table (prompts: utterance x condition) grouped into shards of the
    utterances the table holds (the evaluated split, in manifest order), as even as possible, so
    that every inference job has work and all conditions of an utterance share one shard. Fewer
    utterances than shards is an error: the extra jobs would load a model for nothing."""
    shard = evaluated_shards(manifest, table["utt_id"], n_shards)
    of_row = table["utt_id"].map(shard)
    return [table[of_row == i].reset_index(drop=True) for i in range(n_shards)]


def evaluated_shards(manifest: pd.DataFrame, evaluated: pd.Series, n_shards: int) -> dict[str, int]:
    """The shard of each evaluated utterance: the evaluated utterances in manifest order, in
    contiguous blocks as even as possible (split_by_shard; a prompts job builds one shard's)."""
    known = set(manifest["utt_id"])
    if missing := [u for u in pd.unique(evaluated) if u not in known]:
        raise ValueError(f"utterances not in the manifest: {missing[:5]}")
    present = set(evaluated)
    ordered = [u for u in manifest["utt_id"] if u in present]
    if len(ordered) < n_shards:
        raise ValueError(
            f"shards: {n_shards}, but only {len(ordered)} utterances are evaluated; set shards to at most "
            f"{max(len(ordered), 1)} (every shard is one inference job that loads the model)"
        )
    return dict(zip(ordered, shard_of(len(ordered), n_shards).tolist(), strict=True))
