"""Shards: the unit of one per-utterance job."""

import pandas as pd
import pytest

from cuealign.shards import shard_rows, split_by_shard


def _manifest(n, test=12):
    return pd.DataFrame({"utt_id": [f"u{i:03d}" for i in range(n)], "split": ["train"] * (n - test) + ["test"] * test})


def _prompts(utterances, conditions=("none", "aligned", "conflict")):
    return pd.DataFrame([{"utt_id": u, "condition": c} for u in utterances for c in conditions])


def test_inference_shards_hold_the_evaluated_utterances_evenly():
    manifest = _manifest(100)  # 88 train, 12 test
    test = manifest.loc[manifest["split"] == "test", "utt_id"]
    shards = split_by_shard(_prompts(test), manifest, 5)
    sizes = [s["utt_id"].nunique() for s in shards]
    # the manifest's order would have put all 12 test utterances in the last shard: 4 empty jobs
    assert sizes == [3, 2, 3, 2, 2] and sum(sizes) == 12
    for shard in shards:  # every condition of an utterance in the utterance's shard
        assert (shard.groupby("utt_id")["condition"].nunique() == 3).all()
    assert pd.concat(shards)["utt_id"].tolist() == _prompts(test)["utt_id"].tolist()


def test_more_shards_than_evaluated_utterances_is_an_error():
    manifest = _manifest(100)
    with pytest.raises(ValueError, match="shards: 13, but only 12 utterances are evaluated; set shards to at most 12"):
        split_by_shard(_prompts(manifest["utt_id"].tail(12)), manifest, 13)
    with pytest.raises(ValueError, match="not in the manifest"):
        split_by_shard(_prompts(["x"]), manifest, 1)


def test_lld_shards_cover_the_manifest():
    manifest = _manifest(10, test=2)
    rows = [shard_rows(manifest, i, 3) for i in range(3)]
    assert [len(r) for r in rows] == [4, 3, 3] and pd.concat(rows)["utt_id"].tolist() == manifest["utt_id"].tolist()
