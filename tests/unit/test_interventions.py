import re

import numpy as np
import pandas as pd
import pytest

from cuealign.interventions import (
    CONFLICT_VOICE_QUALITY,
    Condition,
    condition_tokens,
    conditions_from_config,
    conflict_tokens,
    corrupt_tokens,
    invert,
)
from cuealign.tokens import serialise, token_column

LEVELS = ["VERY_LOW", "LOW", "MID", "HIGH", "VERY_HIGH"]
VQ = ["MODAL", "BREATHY", "PRESSED", "ROUGH", "CREAKY"]
VOCAB = {"ENERGY": LEVELS, "PITCH": LEVELS, "VOICE_QUALITY": VQ}
NAMES = list(VOCAB)
SPEC = {
    "conflict": True,
    "shuffle_seeds": [0, 1],
    "corrupt_p": [0.0, 0.5, 1.0],
    "corrupt_seeds": [0, 1],
    "swap": ["PITCH"],
    "tokens_only": True,
}


def _serialise(table):
    return serialise(table, NAMES, template="{concept}={token}", separator="; ")


def make_tokens(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "utt_id": [f"u{i:03d}" for i in range(n)],
            "ENERGY": rng.choice(LEVELS, n),
            "PITCH": rng.choice(LEVELS + ["UNVOICED"], n),
            "VOICE_QUALITY": rng.choice(VQ + ["UNVOICED"], n),
        }
    )


def test_condition_names_and_order():
    names = [c.name for c in conditions_from_config(SPEC, NAMES)]
    assert names == [
        "none",
        "aligned",
        "conflict",
        "shuffle_s0",
        "shuffle_s1",
        "corrupt_p0_s0",
        "corrupt_p0_s1",
        "corrupt_p0.5_s0",
        "corrupt_p0.5_s1",
        "corrupt_p1_s0",
        "corrupt_p1_s1",
        "swap_PITCH",
        "tokens_only",
    ]
    assert Condition("tokens_only").audio == "silence" and Condition("aligned").audio == "original"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"corrupt_p": [1.2]}, r"corrupt_p holds 1.2, outside \[0, 1\]"),
        ({"swap": ["LOUDNESS"]}, "swap names 'LOUDNESS'"),
        ({"shuffle_seeds": [1, 1]}, "conditions repeat"),
    ],
)
def test_bad_condition_config_is_an_error(change, message):
    with pytest.raises(ValueError, match=message):
        conditions_from_config(SPEC | change, NAMES)


def test_conflict_inverts_bins_and_is_an_involution():
    assert [invert(t, LEVELS) for t in LEVELS] == LEVELS[::-1]
    assert invert("UNVOICED", LEVELS) == "UNVOICED"
    tokens = make_tokens()
    once = conflict_tokens(tokens, VOCAB, NAMES)
    pd.testing.assert_frame_equal(conflict_tokens(once, VOCAB, NAMES), tokens)
    changed = once[NAMES] != tokens[NAMES]
    assert not changed["ENERGY"][tokens["ENERGY"] == "MID"].any()
    assert changed["ENERGY"][tokens["ENERGY"] != "MID"].all()
    assert all(CONFLICT_VOICE_QUALITY[CONFLICT_VOICE_QUALITY[v]] == v for v in CONFLICT_VOICE_QUALITY)


def test_swap_changes_only_its_concept():
    tokens = make_tokens()
    swapped = conflict_tokens(tokens, VOCAB, ["PITCH"])
    assert swapped["ENERGY"].equals(tokens["ENERGY"]) and swapped["VOICE_QUALITY"].equals(tokens["VOICE_QUALITY"])
    assert (swapped["PITCH"] != tokens["PITCH"]).sum() > 0


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("draw", ["vocabulary", "other"])
def test_corruption_changes_the_share_its_definition_says(p, draw):
    tokens = make_tokens(n=4000)
    corrupted = corrupt_tokens(tokens, VOCAB, p=p, seed=3, draw=draw)
    for concept, vocabulary in VOCAB.items():
        changed = corrupted[concept] != tokens[concept]
        # from the definition: a token is drawn with probability p; "vocabulary" draws one of k
        # (the same one with probability 1/k, unless it is UNVOICED, which no vocabulary holds)
        in_vocabulary = tokens[concept].isin(vocabulary)
        stays = 1 / len(vocabulary) if draw == "vocabulary" else 0.0
        expected = (p * (1 - np.where(in_vocabulary, stays, 0.0))).mean()
        assert changed.mean() == pytest.approx(expected, abs=0.03)
        assert corrupted[concept][changed].isin(vocabulary).all()
    if p == 1.0 and draw == "vocabulary":  # the draws are uniform over the vocabulary
        shares = corrupted["ENERGY"].value_counts(normalize=True)
        assert shares.reindex(LEVELS).to_numpy() == pytest.approx([0.2] * 5, abs=0.03)
    # reproducible from the seed, different for another seed
    pd.testing.assert_frame_equal(corrupt_tokens(tokens, VOCAB, p=p, seed=3, draw=draw), corrupted)
    if p > 0:
        assert not corrupt_tokens(tokens, VOCAB, p=p, seed=4, draw=draw).equals(corrupted)


def test_shuffle_gives_every_utterance_another_utterances_tokens():
    """A derangement (the paper: tokens of another utterance), uniform over derangements."""
    from collections import Counter
    from itertools import permutations

    from cuealign.interventions import derangement, shuffle_rows

    tokens = pd.DataFrame({"utt_id": [f"u{i}" for i in range(192)], "ENERGY": [f"t{i}" for i in range(192)]})
    for seed in range(50):
        shuffled = shuffle_rows(tokens, seed=seed)
        assert (shuffled["ENERGY"] != tokens["ENERGY"]).all() and sorted(shuffled["ENERGY"]) == sorted(tokens["ENERGY"])
    rng = np.random.default_rng(0)
    drawn = Counter(tuple(derangement(4, rng)) for _ in range(9000))
    allowed = {p for p in permutations(range(4)) if all(p[i] != i for i in range(4))}
    assert set(drawn) == allowed and len(allowed) == 9  # each of the 9 derangements of 4, ~1000 times
    assert max(drawn.values()) < 1120 and min(drawn.values()) > 880  # 4 sd of a binomial(9000, 1/9)
    assert derangement(1, rng).tolist() == [0] and derangement(2, rng).tolist() == [1, 0]


def test_shuffle_preserves_marginals_and_breaks_alignment():
    tokens = make_tokens()
    table = condition_tokens(tokens, conditions_from_config(SPEC, NAMES), vocabularies=VOCAB, serialise=_serialise)
    aligned = table[table["condition"] == "aligned"].set_index("utt_id")["token_string"]
    for seed in (0, 1):
        shuffled = table[table["condition"] == f"shuffle_s{seed}"].set_index("utt_id")["token_string"]
        assert sorted(shuffled) == sorted(aligned)  # same multiset of strings
        assert (shuffled != aligned).mean() > 0.9
    s0 = table[table["condition"] == "shuffle_s0"]["token_string"].tolist()
    s1 = table[table["condition"] == "shuffle_s1"]["token_string"].tolist()
    assert s0 != s1


def test_condition_table_is_reproducible_and_complete():
    tokens = make_tokens()
    conditions = conditions_from_config(SPEC, NAMES)
    first = condition_tokens(tokens, conditions, vocabularies=VOCAB, serialise=_serialise)
    # the input order does not matter, and the same seeds give the same table
    again = condition_tokens(
        tokens.sample(frac=1, random_state=1), conditions, vocabularies=VOCAB, serialise=_serialise
    )
    pd.testing.assert_frame_equal(first, again)
    assert len(first) == len(tokens) * len(conditions)
    assert first.groupby("condition")["utt_id"].nunique().eq(len(tokens)).all()
    by = first.set_index(["condition", "utt_id"])["token_string"]
    assert (by["none"] == "").all()
    assert by["corrupt_p0_s0"].equals(by["aligned"]) and by["tokens_only"].equals(by["aligned"])
    assert (first.loc[first["condition"] == "tokens_only", "audio"] == "silence").all()
    assert (by["conflict"] != by["aligned"]).mean() > 0.9


def test_every_row_carries_its_condition_and_tokens_as_data():
    tokens = make_tokens(n=50)
    conditions = conditions_from_config(SPEC, NAMES)
    table = condition_tokens(tokens, conditions, vocabularies=VOCAB, serialise=_serialise)
    typed = table.drop_duplicates("condition").set_index("condition")
    for condition in conditions:
        row = typed.loc[condition.name]
        assert row["kind"] == condition.kind
        assert (pd.isna(row["p"]) and condition.p is None) or row["p"] == condition.p
        assert (pd.isna(row["seed"]) and condition.seed is None) or row["seed"] == condition.seed
        assert (row["concept"] is None and condition.concept is None) or row["concept"] == condition.concept
    assert str(table["seed"].dtype) == "Int64" and str(table["p"].dtype) == "float64"
    # the token columns are exactly what the token string says, under every condition with tokens
    columns = [token_column(name) for name in NAMES]
    shown = table[table["kind"] != "none"]
    rebuilt = _serialise(shown[columns].set_axis(NAMES, axis=1))
    assert rebuilt == shown["token_string"].tolist()
    assert table.loc[table["kind"] == "none", columns].isna().all().all()
    # conflict rows hold the inverted tokens; corrupt p = 0 rows the aligned ones
    aligned = table[table["condition"] == "aligned"].set_index("utt_id")[columns]
    conflict = table[table["condition"] == "conflict"].set_index("utt_id")[columns]
    # the paper's conflict: the ordinal concepts inverted, VOICE_QUALITY as it was
    ordinal = [name for name in NAMES if name != "VOICE_QUALITY"]
    expected = conflict_tokens(tokens, VOCAB, ordinal).set_index("utt_id")[NAMES].set_axis(columns, axis=1)
    pd.testing.assert_frame_equal(conflict, expected.loc[conflict.index], check_dtype=False)
    assert (conflict["token.VOICE_QUALITY"] == aligned.loc[conflict.index, "token.VOICE_QUALITY"]).all()
    flipped = condition_tokens(
        tokens, conditions, vocabularies=VOCAB, serialise=_serialise, conflict_voice_quality=True
    ).query("condition == 'conflict'")
    expected = conflict_tokens(tokens, VOCAB, NAMES).set_index("utt_id")["VOICE_QUALITY"]
    assert (flipped.set_index("utt_id")["token.VOICE_QUALITY"] == expected.loc[flipped["utt_id"]]).all()
    pd.testing.assert_frame_equal(table[table["condition"] == "corrupt_p0_s0"].set_index("utt_id")[columns], aligned)


def test_families_keep_the_order_given_and_the_default_is_the_papers_in_its_order():
    """A config's keys come back sorted (so a moved key reruns nothing), but the comparison families
    are the order of the tables' families: they stay as written, and the default is the paper's
    in the paper's order (the schema's default and PAPER_FAMILIES are one list)."""
    from cuealign.analysis.answers import comparison_plan
    from cuealign.interventions import PAPER_FAMILIES
    from cuealign.workflow.config import validate_config

    default = validate_config({"corpora": {"demo": {"type": "synthetic"}}})["analysis"]["families"]
    assert list(default.items()) == list(PAPER_FAMILIES.items())
    declared = {"zeta": ["aligned - none"], "alpha": ["conflict - none"]}
    config = validate_config({"corpora": {"demo": {"type": "synthetic"}}, "analysis": {"families": declared}})
    assert list(config["analysis"]["families"]) == ["zeta", "alpha"]
    assert list(config["analysis"]) == sorted(config["analysis"])  # every other mapping still sorted
    members = {c: [c] for c in ("none", "aligned", "conflict")}
    plan = comparison_plan(config["analysis"]["families"], members, set())
    assert [family for family, *_ in plan][:2] == ["zeta", "alpha"]


def test_declared_families_are_checked_against_the_run():
    from cuealign.interventions import PAPER_FAMILIES, check_families
    from cuealign.workflow.config import validate_config

    # the schema's default is the paper's families, which the analysis reads from PAPER_FAMILIES
    assert validate_config({"corpora": {"demo": {"type": "synthetic"}}})["analysis"]["families"] == PAPER_FAMILIES
    conditions = [Condition("none"), Condition("aligned"), Condition("conflict")]
    conditions += [Condition("shuffle", seed=s) for s in (0, 1)]
    conditions += [Condition("corrupt", p=p, seed=s) for p in (0.0, 1.0) for s in (0, 1)]
    check_families(PAPER_FAMILIES, conditions)
    bad = {
        "a - b is the syntax": ({"f": ["aligned vs none"]}, "written 'a - b'"),
        "a seed is tested through its mean": ({"f": ["aligned - shuffle_s0"]}, "names 'shuffle_s0'"),
        "itself": ({"f": ["aligned - aligned"]}, "compares a condition with itself"),
        "p = 0 is aligned": ({"f": ["corrupt_p0_mean - aligned"]}, "compares a condition with itself"),
        "twice across families": (
            {"f": ["aligned - none"], "g": ["none - aligned"]},
            "repeats the test 'f: aligned - none'",
        ),
        "p = 0 repeats aligned - none": ({"f": ["aligned - none", "corrupt_p0_mean - none"]}, "repeats the test"),
        "exploratory is taken": ({"exploratory": ["aligned - none"]}, "choose another name"),
    }
    for families, message in bad.values():
        with pytest.raises(ValueError, match=re.escape(message)):
            check_families(families, conditions)
