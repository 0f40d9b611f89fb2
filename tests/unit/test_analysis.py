"""The analysis tables on simulated predictions with known structure."""

import numpy as np
import pandas as pd
import pytest

from cuealign.analysis import analyse, check_complete
from cuealign.interventions import Condition
from cuealign.stats import mcnemar_exact, uar
from cuealign.tokens import token_column

LABELS = ["angry", "happy", "neutral", "sad"]
TYPED = [Condition("none"), Condition("aligned"), Condition("conflict")]
TYPED += [Condition("shuffle", seed=s) for s in (0, 1)]
TYPED += [Condition("corrupt", p=p, seed=s) for p in (0.0, 0.5, 1.0) for s in (0, 1)]
CONDITIONS = [c.name for c in TYPED]
TYPED_OF = {c.name: c for c in TYPED}
ACCURACY = {
    "none": 0.4,
    "aligned": 0.8,
    "conflict": 0.45,
    "shuffle_s0": 0.5,
    "shuffle_s1": 0.5,
    "corrupt_p0_s0": 0.8,
    "corrupt_p0_s1": 0.8,
    "corrupt_p0.5_s0": 0.6,
    "corrupt_p0.5_s1": 0.6,
    "corrupt_p1_s0": 0.45,
    "corrupt_p1_s1": 0.45,
}


def simulate(seed=0, speakers=8, per_speaker=40):
    rng = np.random.default_rng(seed)
    n = speakers * per_speaker
    truth = rng.choice(LABELS, n)
    base = rng.random(n)  # a shared difficulty per utterance: conditions are paired, as in real runs
    rows = []
    aligned = None
    for condition in CONDITIONS:
        correct = base < ACCURACY[condition]
        # errors lean toward neutral under conflict (the paper's finding), not otherwise
        wrong = np.where(rng.random(n) < (0.9 if condition == "conflict" else 0.3), "neutral", "sad")
        wrong = np.where(wrong == truth, "angry", wrong)
        pred = np.where(correct, truth, wrong)
        if condition.startswith("corrupt_p0_"):
            pred = aligned  # p = 0 asks exactly what aligned asks
        if condition == "aligned":
            aligned = pred
        for i in range(n):
            rows.append(
                dict(
                    utt_id=f"u{i:04d}",
                    **TYPED_OF[condition].as_row(),
                    label=truth[i],
                    speaker=f"s{i % speakers}",
                    pred=pred[i],
                    **{f"logprob_{label}": (-0.1 if label == pred[i] else -3.0) for label in LABELS},
                )
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def result():
    return analyse(simulate(), labels=LABELS, expected_conditions=CONDITIONS, resamples=500, seed=0)


def test_uar_per_condition_and_seed_means(result):
    table = result["uar"].set_index("condition")
    predictions = simulate()
    for condition in CONDITIONS:
        rows = predictions[predictions["condition"] == condition]
        assert table.loc[condition, "uar"] == pytest.approx(
            uar(rows["label"].to_numpy(), rows["pred"].to_numpy(), LABELS)
        )
        assert table.loc[condition, "ci_low"] <= table.loc[condition, "uar"] <= table.loc[condition, "ci_high"]
    assert table.loc["aligned", "uar"] > table.loc["none", "uar"] + 0.3
    assert table.loc["shuffle_mean", "uar"] == pytest.approx(table.loc[["shuffle_s0", "shuffle_s1"], "uar"].mean())
    assert table.loc["corrupt_p0.5_mean", "uar"] == pytest.approx(
        table.loc[["corrupt_p0.5_s0", "corrupt_p0.5_s1"], "uar"].mean()
    )


def test_comparisons_mcnemar_and_holm(result):
    comparisons = result["comparisons"].set_index("comparison")
    assert "aligned - none" in comparisons.index and "conflict - none" in comparisons.index
    assert len(comparisons) == 1 + 2 * (len(CONDITIONS) - 2)
    predictions = simulate()
    wide = predictions.pivot(index="utt_id", columns="condition", values="pred")
    truth = predictions.drop_duplicates("utt_id").set_index("utt_id").loc[wide.index, "label"]
    expected = mcnemar_exact((wide["aligned"] == truth).to_numpy(), (wide["conflict"] == truth).to_numpy())
    row = comparisons.loc["aligned - conflict"]
    assert (row["a_right_b_wrong"], row["a_wrong_b_right"], row["p_mcnemar"]) == expected
    assert row["p_holm"] >= row["p_mcnemar"] and row["p_holm"] < 1e-6 and row["ci_low"] > 0
    # aligned - corrupt_p0: identical predictions, no discordant pairs, a CI of exactly 0
    same = comparisons.loc["aligned - corrupt_p0_s0"]
    assert same["p_mcnemar"] == 1.0 and same["ci_low"] == same["ci_high"] == 0.0


def test_corruption_curve_falls_and_spearman_says_so(result):
    curve = result["curve"]
    assert curve["p"].tolist() == [0.0, 0.5, 1.0]
    assert curve["uar"].is_monotonic_decreasing
    # one point per level (the mean over its seeds), an exact permutation p: 3 levels, perfectly
    # monotone, so p = 2 / 3! (the two orders as extreme)
    assert result["spearman"]["rho"] == pytest.approx(-1.0) and result["spearman"]["points"] == 3
    assert result["spearman"]["p_value"] == pytest.approx(2 / 6) and result["spearman"]["method"] == "exact permutation"
    # the realised share of changed tokens: none without token columns in this simulation
    assert result["uar"]["changed_share"].isna().all()
    assert result["spearman"]["audio_only_uar"] == pytest.approx(
        result["uar"].set_index("condition").loc["none", "uar"]
    )


def test_confusion_and_shift_toward_neutral(result):
    confusion = result["confusion"]
    assert confusion.groupby(["condition", "label"])["share"].sum().round(9).eq(1).all()
    shifts = result["shifts"].set_index("condition")
    assert shifts.loc["aligned", "neutral_shift"] == 0 and shifts.loc["conflict", "neutral_shift"] > 0.05
    assert shifts.loc["corrupt_p0_s0", "flip_rate_vs_aligned"] == 0
    assert shifts.loc["corrupt_p0_s0", "mean_js_vs_aligned"] == pytest.approx(0)
    assert shifts.loc["conflict", "mean_js_vs_aligned"] > 0.1


def test_a_missing_condition_or_utterance_is_an_error():
    predictions = simulate(per_speaker=5)
    with pytest.raises(ValueError, match=r"conditions missing from the predictions: \['swap_ENERGY'\]"):
        check_complete(predictions, CONDITIONS + ["swap_ENERGY"])
    with pytest.raises(ValueError, match="appear twice"):
        check_complete(pd.concat([predictions, predictions.iloc[:1]]), CONDITIONS)
    with pytest.raises(ValueError, match="without a prediction for every one"):
        check_complete(predictions.iloc[1:], CONDITIONS)


def test_conditions_are_read_from_their_columns_not_their_names():
    # p = 5e-5 is named corrupt_p5e-05_s0: a name parser missed it and it left the curve
    tiny_p = [Condition("none"), Condition("aligned")] + [Condition("corrupt", p=p, seed=0) for p in (5e-5, 0.5, 1.0)]
    rng = np.random.default_rng(1)
    rows = []
    for c in tiny_p:
        for i in range(40):
            truth = LABELS[i % 4]
            right = rng.random() < (0.9 - 0.5 * (c.p or 0))
            rows.append(
                dict(
                    utt_id=f"u{i}",
                    **c.as_row(),
                    label=truth,
                    speaker=f"s{i % 8}",
                    pred=truth if right else "neutral",
                    **{f"logprob_{lab}": -1.0 for lab in LABELS},
                )
            )
    result = analyse(pd.DataFrame(rows), labels=LABELS, expected_conditions=[c.name for c in tiny_p], resamples=100)
    assert "corrupt_p5e-05_s0" in [c.name for c in tiny_p]
    assert result["curve"]["p"].tolist() == [5e-5, 0.5, 1.0] and result["spearman"]["points"] == 3
    table = result["uar"].set_index("condition")
    assert table.loc["corrupt_p5e-05_s0", "kind"] == "corrupt" and table.loc["corrupt_p5e-05_s0", "p"] == 5e-5
    assert table.loc["corrupt_p5e-05_mean", "n_seeds"] == 1


def test_tables_in_markdown_and_latex(result):
    from cuealign.tables import intervention_table, main_table, to_html, to_latex, to_markdown

    main = main_table(result, model="af3", corpus="iemocap")
    row = main.iloc[0]
    table = result["uar"].set_index("condition")
    assert (
        row["UAR without tokens"] == f"{table.loc['none', 'uar']:.3f}"
        and row["UAR with tokens"] == f"{table.loc['aligned', 'uar']:.3f}"
    )
    markdown = to_markdown(main)
    header = [cell.strip() for cell in markdown.splitlines()[0].strip("|").split("|")]
    assert header[:3] == ["corpus", "model", "UAR without tokens"]
    assert [cell.strip() for cell in markdown.splitlines()[2].strip("|").split("|")][:2] == ["iemocap", "af3"]
    page = to_html(main, title="t <1>")
    assert "<td>iemocap</td>" in page and f"<td>{row['UAR with tokens']}</td>" in page and "t &lt;1&gt;" in page
    latex = to_latex(intervention_table(result))
    assert (
        latex.startswith(r"\begin{tabular}")
        and r"\toprule" in latex
        and r"corrupt\_p0.5\_mean" in latex
        and latex.count(r"\\") > len(CONDITIONS)
    )


def test_figures_are_drawn(result, tmp_path):
    from cuealign.plots import confusion_grid, corruption_curve

    grid = confusion_grid(result["confusion"], ["aligned", "conflict", "none"], LABELS)
    assert len(grid.axes) == 3 and grid.axes[1].get_title() == "conflict"
    curve = corruption_curve(result["uar"], chance=0.25)
    line = curve.axes[0].lines[0]
    assert list(line.get_xdata()) == [0.0, 0.5, 1.0]
    grid.savefig(tmp_path / "c.svg")
    assert "<svg" in (tmp_path / "c.svg").read_text()[:400]


def _cue_data(shift: float):
    """ENERGY=HIGH marks angry, ENERGY=LOW marks sad; conflict swaps them. A cue-following model
    moves log-probability from angry to sad by ``shift`` when HIGH becomes LOW (0: audio only)."""
    from cuealign.cue_following import class_given_token

    train = pd.DataFrame({"ENERGY": ["HIGH"] * 10 + ["LOW"] * 10})
    train_labels = pd.Series(["angry"] * 9 + ["sad"] + ["sad"] * 9 + ["angry"])
    association = class_given_token(train, train_labels, ["ENERGY"], ["angry", "sad"])
    predictions = []
    for i in range(6):
        high = i % 2 == 0
        aligned, conflict = ("HIGH", "LOW") if high else ("LOW", "HIGH")
        for condition, value in ((Condition("aligned"), aligned), (Condition("conflict"), conflict)):
            angry = -1.0 + (shift / 2 if value == "HIGH" else -shift / 2)
            predictions.append(
                dict(
                    utt_id=f"u{i}",
                    **condition.as_row(),
                    **{token_column("ENERGY"): value},
                    logprob_angry=angry,
                    logprob_sad=-1.0,
                )
            )
    return pd.DataFrame(predictions), association


def _probability_of_sad(logp_angry: float) -> float:
    return 1 / (1 + np.exp(logp_angry + 1.0))


def test_cue_following_detects_a_model_that_follows_the_tokens():
    from cuealign.cue_following import cue_following

    row = cue_following(*_cue_data(1.8), labels=["angry", "sad"]).set_index("condition").loc["conflict"]
    assert row["utterances"] == 6 and row["cue_alignment"] == pytest.approx(1.0) and row["toward_pointed_class"] == 1.0
    # from definition: the pulled class's probability, after minus before
    expected = _probability_of_sad(-1.9) - _probability_of_sad(-0.1)
    assert row["probability_moved"] == pytest.approx(expected) and row["follows"]
    ignores = cue_following(*_cue_data(0.0), labels=["angry", "sad"]).set_index("condition").loc["conflict"]
    assert ignores["cue_alignment"] == pytest.approx(0.0) and not ignores["follows"]


def test_a_model_that_barely_moves_is_not_called_a_follower():
    from cuealign.cue_following import cue_following

    # the right direction every time, but the top class moves by about 0.0004
    row = cue_following(*_cue_data(0.0016), labels=["angry", "sad"]).set_index("condition").loc["conflict"]
    assert row["toward_pointed_class"] == 1.0 and row["cue_alignment"] == pytest.approx(1.0)
    assert row["probability_moved"] == pytest.approx(0.0004, rel=0.01) and not row["follows"]


def test_a_model_that_emits_nothing_parsable_scores_zero_and_says_why():
    predictions = simulate(speakers=4, per_speaker=10).assign(pred="unparsed")
    for label in LABELS:
        predictions[f"logprob_{label}"] = np.nan  # generate mode keeps no label scores
    result = analyse(predictions, labels=LABELS, expected_conditions=CONDITIONS, resamples=50, seed=0, level=0.95)
    table = result["uar"].set_index("condition")
    assert (table.loc[CONDITIONS, "uar"] == 0).all() and (table.loc[CONDITIONS, "unparsed_rate"] == 1).all()
    assert (table.loc[CONDITIONS, "n"] == 40).all()  # every utterance kept, none dropped or filled
    comparisons = result["comparisons"]  # all wrong alike: no discordant pair, no difference
    assert (comparisons["delta_uar"] == 0).all() and (
        comparisons["a_right_b_wrong"] + comparisons["a_wrong_b_right"] == 0
    ).all()
    assert (comparisons["p_mcnemar"] == 1).all()
