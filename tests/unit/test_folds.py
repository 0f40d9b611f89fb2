"""Leave-one-session-out folds: the fold corpora, their splits and the pooled tables."""

import pandas as pd
import pytest

from cuealign.corpora.manifest import FoldError, fold_manifest, pooled_manifest
from cuealign.workflow.folds import FOLD_OF, expand_folds


def _iemocap(**extra):
    spec = {"type": "iemocap", "root": "/data", "sessions": [1, 2, 3, 4, 5], "test_sessions": [5]}
    return spec | {"dev_sessions": [], "folds": "sessions"} | extra


def test_one_corpus_per_session_each_testing_its_own():
    config = {"corpora": {"iemocap": _iemocap(), "demo": {"type": "synthetic"}}, "evaluate_split": "test"}
    assert expand_folds(config) == {"iemocap": [f"iemocap-s{k}" for k in range(1, 6)]}
    fold = config["corpora"]["iemocap-s3"]
    assert fold["test_sessions"] == [3] and fold["folds"] == "none" and fold[FOLD_OF] == "iemocap"
    assert config["corpora"]["iemocap"]["test_sessions"] == [5]  # the corpus itself is left as it was
    assert "demo-s1" not in config["corpora"]


@pytest.mark.parametrize(
    "spec, message",
    [
        (_iemocap(dev_sessions=[4]), "remove dev_sessions"),
        (_iemocap(sessions=[5]), "at least 2 sessions"),
        (_iemocap(evaluate_split="train"), "set evaluate_split: test"),
        ({"type": "aibo", "folds": "sessions"}, "only IEMOCAP corpora"),
    ],
)
def test_folds_that_cannot_work_are_refused(spec, message):
    with pytest.raises(FoldError, match=message):
        expand_folds({"corpora": {"c": spec}, "evaluate_split": "test"})


def _manifest():
    ids = [f"Ses{s:02d}{g}_impro01_{g}00{i}" for s in (1, 2, 3) for g in "FM" for i in range(2)]
    return pd.DataFrame({"utt_id": ids, "speaker": [u[:6] for u in ids], "split": "train", "status": "ok"})


def test_a_fold_manifest_tests_its_session_and_trains_on_the_rest():
    folds = {f"c-s{s}": fold_manifest(_manifest(), s) for s in (1, 2, 3)}
    for s, (name, manifest) in zip((1, 2, 3), folds.items(), strict=True):
        test = manifest[manifest["split"] == "test"]
        assert set(test["speaker"]) == {f"Ses{s:02d}F", f"Ses{s:02d}M"}
        assert not set(test["speaker"]) & set(manifest.loc[manifest["split"] == "train", "speaker"]), name
    pooled = pooled_manifest(folds)
    assert sorted(pooled["utt_id"]) == sorted(_manifest()["utt_id"]) and (pooled["split"] == "test").all()
    assert pooled.set_index("utt_id").loc["Ses02M_impro01_M001", "fold"] == "c-s2"
    with pytest.raises(FoldError, match="in the test split of two folds"):
        pooled_manifest({"a": folds["c-s1"], "b": folds["c-s1"]})


def test_pooled_cue_following_is_the_table_over_all_utterances():
    from cuealign.analysis.cue_following import cue_following, pool_cue_following
    from tests.unit.test_analysis import _cue_data

    strong, association = _cue_data(1.8)
    weak, _ = _cue_data(0.3)
    weak["utt_id"] = weak["utt_id"].str.replace("u", "w")  # six more utterances that barely move
    predictions = pd.concat([strong, weak], ignore_index=True)
    whole = cue_following(predictions, association, labels=["angry", "sad"], min_probability_moved=0.2)
    folds = (["u0", "u1", "u2", "u3", "u4", "u5", "w0", "w1"], ["w2", "w3", "w4", "w5"])  # unequal folds
    parts = [
        cue_following(predictions[predictions["utt_id"].isin(ids)], association, labels=["angry", "sad"])
        for ids in folds
    ]
    assert parts[0]["probability_moved"].iloc[0] != parts[1]["probability_moved"].iloc[0]
    pooled = pool_cue_following(parts, min_probability_moved=0.2)
    pd.testing.assert_frame_equal(pooled, whole, check_dtype=False)
