"""The analysis works from per-shard reductions of the predictions (cuealign.analysis.answers.Answers):
every table must equal the direct analysis of the whole predictions table (tests/reference_analysis.py,
the analysis as it was before), for every interval method, in score and generate mode, with
unparsed and invalid answers, and whatever the sharding."""

import numpy as np
import pandas as pd
import pytest

from cuealign.analysis.answers import Answers, analyse, analyse_answers, reduce_predictions
from cuealign.analysis.cue_following import class_given_token, cue_following
from cuealign.interventions import Condition
from cuealign.tokens import token_column
from tests import reference_analysis

LABELS = ["angry", "happy", "neutral", "sad"]
CONCEPTS = ["ENERGY", "PITCH", "BRIGHTNESS"]
VALUES = ["LOW", "MID", "HIGH"]
TYPED = [Condition("none"), Condition("aligned"), Condition("conflict"), Condition("tokens_only")]
TYPED += [Condition("shuffle", seed=s) for s in range(3)]
TYPED += [Condition("corrupt", p=p, seed=s) for p in (0.0, 0.4, 1.0) for s in range(2)]
TYPED += [Condition("swap", concept=c) for c in CONCEPTS[:2]]
CONDITIONS = [c.name for c in TYPED]


def random_study(seed: int, *, speakers: int = 9, utterances: int = 240, score: bool = True) -> pd.DataFrame:
    """A study with paired answers (a shared difficulty per utterance), tokens that corruption
    really changes, a few unparsed and invalid answers, speakers of unequal size."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(LABELS, utterances, p=[0.4, 0.2, 0.3, 0.1])
    speaker = rng.choice([f"spk{g:02d}" for g in range(speakers)], utterances)
    aligned_tokens = rng.choice(VALUES, (utterances, len(CONCEPTS))).astype(object)
    aligned_tokens[rng.random(aligned_tokens.shape) < 0.02] = None  # a token that could not be made
    base = rng.random(utterances)
    frames = []
    for typed in TYPED:
        if typed.kind == "none":
            tokens = np.full((utterances, len(CONCEPTS)), None, dtype=object)
        elif typed.kind == "corrupt":
            swap = rng.random((utterances, len(CONCEPTS))) < typed.p
            tokens = np.where(swap, rng.choice(VALUES, swap.shape), aligned_tokens)
        elif typed.kind == "shuffle":
            tokens = aligned_tokens[rng.permutation(utterances)]
        elif typed.kind == "conflict":
            tokens = np.where(aligned_tokens == "LOW", "HIGH", "LOW")
        elif typed.kind == "swap":
            tokens = aligned_tokens.copy()
            tokens[:, CONCEPTS.index(typed.concept)] = rng.choice(VALUES, utterances)
        else:
            tokens = aligned_tokens
        accuracy = {"aligned": 0.7, "corrupt": 0.7 - 0.3 * (typed.p or 0), "none": 0.5}.get(typed.kind, 0.45)
        logits = (
            rng.normal(size=(utterances, 4)) + 2.5 * (np.array(LABELS) == truth[:, None]) * (base < accuracy)[:, None]
        )
        pred = np.array(LABELS)[logits.argmax(1)].astype(object)
        if typed.kind == "corrupt" and typed.p == 0:  # asks what aligned asks
            pred, logits = frames[1]["pred"].to_numpy(), frames[1][[f"logprob_{x}" for x in LABELS]].to_numpy()
        else:
            pred[rng.random(utterances) < 0.03] = "unparsed"
            invalid = rng.random(utterances) < 0.02
            pred[invalid] = "invalid"
            logits = logits.copy()
            logits[invalid, rng.integers(0, 4)] = np.nan
        frame = pd.DataFrame(
            {
                "utt_id": [f"utt{i:04d}" for i in range(utterances)],
                **typed.as_row(),
                "variant": "main",
                "label": truth,
                "speaker": speaker,
                **{token_column(c): tokens[:, j] for j, c in enumerate(CONCEPTS)},
                "pred": pred,
                **{f"logprob_{x}": (logits[:, j] if score else np.nan) for j, x in enumerate(LABELS)},
                "label_tokens": '{"angry": ["angry"]}' if score else "",
            }
        )
        frames.append(frame)
    study = pd.concat(frames, ignore_index=True)
    return study.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # rows in no order


def by_shards(study: pd.DataFrame, shards: int) -> Answers:
    """Reduce shard by shard, as the analysis job reads them, then put together."""
    utterances = sorted(study["utt_id"].unique())
    shard_of = {u: i % shards for i, u in enumerate(np.random.default_rng(1).permutation(utterances))}
    parts = [
        reduce_predictions(rows, labels=LABELS, conditions=CONDITIONS)
        for _, rows in study.groupby(study["utt_id"].map(shard_of))
    ]
    return Answers.concat(parts)


# the tests' columns: the frozen reference tests as the package did before analysis.target (McNemar
# beside speaker sign-flips); the target's tests are checked against their definitions in
# tests/unit/test_analysis.py, and shard reductions against the package's direct analysis below
TEST_COLUMNS = ["test", "a_right_b_wrong", "a_wrong_b_right", "p_value", "p_holm"]
SAME_INTERVALS = ("method", "requested", "n_speakers", "level", "resamples")


def assert_same(new: dict, old: dict, *, tests: bool = True) -> None:
    for name in ("uar", "comparisons", "curve", "confusion", "shifts"):
        drop = [] if tests or name != "comparisons" else TEST_COLUMNS
        pd.testing.assert_frame_equal(
            new[name].drop(columns=drop).reset_index(drop=True),
            old[name].drop(columns=drop).reset_index(drop=True),
            check_exact=False,
            rtol=1e-9,
            atol=1e-12,
            obj=name,
        )
    if tests:
        assert new["intervals"] == old["intervals"]
    else:
        assert {k: new["intervals"][k] for k in SAME_INTERVALS} == {k: old["intervals"][k] for k in SAME_INTERVALS}
    for key, value in old["spearman"].items():
        assert new["spearman"][key] == (pytest.approx(value, abs=1e-12) if isinstance(value, float) else value)


@pytest.mark.parametrize(
    ("seed", "method", "min_speakers", "score"),
    [
        (0, "jackknife-t", 4, True),
        (1, "percentile", 4, True),
        (2, "bca", 4, False),
        (3, "studentized", 4, True),
        (4, "jackknife-t", 100, True),  # fewer speakers than asked: within-speaker intervals
    ],
)
def test_the_analysis_from_shard_reductions_equals_the_direct_one(seed, method, min_speakers, score):
    study = random_study(seed, score=score)
    settings = dict(labels=LABELS, resamples=400, seed=seed, ci_method=method, min_speakers=min_speakers)
    old = reference_analysis.analyse(study, expected_conditions=CONDITIONS, **settings)
    assert old["intervals"]["method"] == (method if min_speakers == 4 else "within-speaker")
    assert (old["comparisons"]["test"] == "exact McNemar").any() and (
        old["comparisons"]["test"] != "exact McNemar"
    ).any()
    assert ("mean_js_vs_aligned" in old["shifts"]) == score
    direct = analyse(study, expected_conditions=CONDITIONS, **settings)
    assert_same(direct, old, tests=False)
    for shards in (1, 3, 7):
        assert_same(analyse_answers(by_shards(study, shards), **settings), direct)


@pytest.mark.parametrize("seed", [0, 1])
def test_cue_following_equals_the_direct_one(seed):
    study = random_study(seed)
    rng = np.random.default_rng(seed)
    fit = pd.DataFrame({c: rng.choice(VALUES, 300) for c in CONCEPTS})
    fit.loc[fit["PITCH"] == "MID", "PITCH"] = "LOW"  # MID pitch never seen at fitting: pulls nowhere
    labels_of = pd.Series(rng.choice(LABELS, 300))
    association = class_given_token(fit, labels_of, CONCEPTS, LABELS)
    new = cue_following(study, association, labels=LABELS, min_probability_moved=0.01)
    old = reference_analysis.cue_following(study, association, labels=LABELS, min_probability_moved=0.01)
    assert len(old) == 3 and (old["utterances"] > 0).all()
    pd.testing.assert_frame_equal(new, old, check_exact=False, rtol=1e-12)


def test_a_reduction_is_a_few_bytes_per_answer():
    study = random_study(5, utterances=2000)
    answers = reduce_predictions(study, labels=LABELS, conditions=CONDITIONS)
    assert answers.answers.shape == (2000, len(CONDITIONS)) and answers.answers.itemsize == 2
    assert (
        answers.pred("aligned").tolist()
        == study[study["condition"] == "aligned"].sort_values("utt_id")["pred"].tolist()
    )


def test_shards_that_disagree_or_overlap_are_errors():
    study = random_study(6)
    whole = reduce_predictions(study, labels=LABELS, conditions=CONDITIONS)
    with pytest.raises(ValueError, match="two shards"):
        Answers.concat([whole, whole])
    fewer = reduce_predictions(study[study["condition"] != "conflict"], labels=LABELS, conditions=CONDITIONS[:2])
    with pytest.raises(ValueError, match="different conditions"):
        Answers.concat([whole, fewer])
    with pytest.raises(ValueError, match="conditions missing"):
        reduce_predictions(study[study["condition"] != "conflict"], labels=LABELS, conditions=CONDITIONS)


def test_shards_carry_how_the_model_ran_into_the_reduction():
    """RUN.json's loaded dtype and numerics come from the predictions, through every shard."""
    study = random_study(5).assign(dtype="bfloat16", numerics="native")
    study.loc[study["utt_id"] == study["utt_id"].iloc[0], "dtype"] = "float32"  # one shard loaded otherwise
    assert by_shards(study, 3).ran_as == {("bfloat16", "native"), ("float32", "native")}
    older = study.drop(columns=["dtype", "numerics"])  # predictions made before they were recorded
    assert reduce_predictions(older, labels=LABELS, conditions=CONDITIONS).ran_as == set()
