"""The analysis tables on simulated predictions with known structure."""

import numpy as np
import pandas as pd
import pytest

from cuealign.analysis.answers import analyse, check_complete
from cuealign.analysis.stats import uar
from cuealign.interventions import Condition
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


def test_comparisons_by_family_each_test_once(result):
    comparisons = result["comparisons"]
    # the paper's families; every other condition (here corruption at p = 0.5) exploratory
    assert comparisons.groupby("family", sort=False)["comparison"].apply(list).to_dict() == {
        "gain": ["aligned - none"],
        "aligned vs perturbed": ["aligned - conflict", "aligned - shuffle_mean", "aligned - corrupt_p1_mean"],
        "perturbed vs audio only": ["conflict - none", "shuffle_mean - none", "corrupt_p1_mean - none"],
        "exploratory": ["aligned - corrupt_p0.5_mean", "corrupt_p0.5_mean - none"],
    }
    # no test twice, none of a condition with itself: corruption at p = 0 asks what aligned asks
    pairs = [frozenset(p) for p in zip(comparisons["a"], comparisons["b"], strict=True)]
    assert len(set(pairs)) == len(pairs) and not comparisons["comparison"].str.contains("corrupt_p0_").any()
    assert not comparisons["comparison"].str.contains("_s[0-9]", regex=True).any()  # seeds enter as their mean
    # Holm within each family, by hand
    for _, family in comparisons.groupby("family"):
        p = family["p_value"].to_numpy()
        order = np.argsort(p)
        adjusted = np.minimum(1, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
        np.testing.assert_allclose(family["p_holm"].to_numpy()[order], adjusted)


def _weighted(truth: np.ndarray, difference: np.ndarray) -> np.ndarray:
    """Each utterance's difference weighted by 1 / (classes x its class' utterances): they sum to
    the UAR difference (from the definition of UAR)."""
    classes = sorted(set(truth))
    counts = {c: np.sum(truth == c) for c in classes}
    return np.array([d / (len(classes) * counts[t]) for t, d in zip(truth, difference, strict=True)])


def _flip_p_exact(values: np.ndarray) -> float:
    """Two-sided sign-flip p from its definition: the share of all 2^n sign patterns whose |sum|
    reaches the observed |sum| (itertools, no scipy)."""
    from itertools import product

    observed = abs(values.sum())
    sums = [abs(np.dot(signs, values)) for signs in product((1.0, -1.0), repeat=len(values))]
    return float(np.mean(np.array(sums) >= observed - 1e-12))


def _paired(predictions: pd.DataFrame, a: list[str], b: list[str]):
    """(truth, speakers, per-utterance correctness of a minus b, a and b each a mean over conditions)."""
    wide = predictions.pivot(index="utt_id", columns="condition", values="pred")
    first = predictions.drop_duplicates("utt_id").set_index("utt_id").loc[wide.index]
    truth = first["label"].to_numpy()

    def correct(names):
        return np.mean([(wide[c].to_numpy() == truth) for c in names], axis=0)

    return truth, first["speaker"].to_numpy(), correct(a) - correct(b), wide, first


def test_about_speakers_every_comparison_is_a_sign_flip_test_over_speakers(result):
    """8 test speakers, analysis.target auto: every test is about speakers, single conditions too,
    each p the exact sign-flip p of the speakers' contributions to the UAR difference."""
    assert result["intervals"]["target"] == "speakers" and result["intervals"]["target_requested"] == "auto"
    comparisons = result["comparisons"].set_index("comparison")
    assert (comparisons["test"] == "exact sign-flip over speakers").all()
    predictions = simulate()
    for name, a, b in (
        ("aligned - conflict", ["aligned"], ["conflict"]),
        ("aligned - shuffle_mean", ["aligned"], ["shuffle_s0", "shuffle_s1"]),
        ("conflict - none", ["conflict"], ["none"]),
    ):
        truth, speakers, difference, _, _ = _paired(predictions, a, b)
        weighted = _weighted(truth, difference)
        totals = np.array([weighted[speakers == s].sum() for s in sorted(set(speakers))])
        row = comparisons.loc[name]
        assert row["p_value"] == pytest.approx(_flip_p_exact(totals), abs=1e-12), name
        assert row["delta_uar"] == pytest.approx(weighted.sum()) and np.isnan(row["a_right_b_wrong"])
    family = comparisons[comparisons["family"] == "aligned vs perturbed"]
    from cuealign.analysis.stats import holm

    assert family["p_holm"].tolist() == pytest.approx(holm(family["p_value"].tolist()))


def test_about_utterances_single_conditions_get_mcnemar_seeded_ones_a_sign_flip_over_utterances():
    predictions = simulate()
    result = analyse(predictions, labels=LABELS, expected_conditions=CONDITIONS, resamples=200, target="utterances")
    assert result["intervals"]["target"] == "utterances" and result["intervals"]["method"] == "within-speaker"
    comparisons = result["comparisons"].set_index("comparison")
    truth, _, _, wide, _ = _paired(predictions, ["aligned"], ["conflict"])
    a_right = wide["aligned"].to_numpy() == truth
    b_right = wide["conflict"].to_numpy() == truth
    from scipy.stats import binomtest

    only_a, only_b = int(np.sum(a_right & ~b_right)), int(np.sum(~a_right & b_right))
    row = comparisons.loc["aligned - conflict"]
    assert row["test"] == "exact McNemar" and (row["a_right_b_wrong"], row["a_wrong_b_right"]) == (only_a, only_b)
    assert row["p_value"] == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue, rel=1e-9)
    # shuffle: every seed counts, signs flipped per utterance (Monte Carlo: within its error)
    truth, _, difference, _, _ = _paired(predictions, ["aligned"], ["corrupt_p0.5_s0", "corrupt_p0.5_s1"])
    weighted = _weighted(truth, difference)
    weighted = weighted[weighted != 0]
    rng = np.random.default_rng(12345)
    signs = rng.choice((-1.0, 1.0), size=(20_000, len(weighted)))
    by_definition = (1 + np.sum(np.abs(signs @ weighted) >= abs(weighted.sum()) - 1e-12)) / 20_001
    row = comparisons.loc["aligned - corrupt_p0.5_mean"]
    assert row["test"] == "Monte Carlo sign-flip over utterances"
    assert row["p_value"] == pytest.approx(by_definition, abs=0.01) and 0.0 < row["p_value"] < 1.0


def test_the_utterance_sign_flip_test_is_exact_for_few_utterances_that_differ():
    from cuealign.analysis.intervals import SpeakerDesign, utterance_sign_flip_test

    rng = np.random.default_rng(3)
    truth = rng.choice(LABELS, 40)
    difference = np.zeros(40)
    difference[:12] = rng.choice((-1.0, -0.5, 0.5, 1.0), 12)  # 12 utterances differ
    design = SpeakerDesign(truth, np.repeat(["a", "b"], 20), LABELS, resamples=10, within=True)
    p, test = utterance_sign_flip_test(design, difference)
    weighted = _weighted(truth, difference)
    assert test == "exact sign-flip over utterances"
    assert p == pytest.approx(_flip_p_exact(weighted[weighted != 0]), abs=1e-12)
    assert utterance_sign_flip_test(design, np.zeros(40)) == (1.0, "exact sign-flip over utterances")


def test_a_large_shuffle_effect_at_two_speakers_is_significant_about_utterances_not_testable_about_speakers():
    """The paper's setting (IEMOCAP Session 5: 2 test speakers): a shuffle that costs 0.3 of UAR."""
    two = simulate(speakers=2, per_speaker=120)
    auto = analyse(two, labels=LABELS, expected_conditions=CONDITIONS, resamples=200)
    assert auto["intervals"]["target"] == "utterances"  # auto: fewer than min_speakers
    shuffled = auto["comparisons"].set_index("comparison").loc["aligned - shuffle_mean"]
    assert shuffled["delta_uar"] > 0.2 and shuffled["p_value"] < 1e-3 and shuffled["p_holm"] < 0.01
    speakers = analyse(two, labels=LABELS, expected_conditions=CONDITIONS, resamples=200, target="speakers")
    comparisons = speakers["comparisons"]
    assert comparisons["p_value"].isna().all() and comparisons["p_holm"].isna().all()
    assert comparisons["test"].str.startswith("not testable about speakers: 2 speakers give no p below 0.5").all()
    assert "can give no p below 0.5" in speakers["intervals"]["warning"]
    from cuealign.analysis.tables import interval_note, main_table

    row = main_table(speakers, model="m", corpus="c").iloc[0]
    assert (row["test"], row["p"], row["about"]) == ("sign-flip over speakers", "not testable", "speakers like these")
    assert "about speakers like these" in interval_note(speakers)
    row = main_table(auto, model="m", corpus="c").iloc[0]
    assert row["about"] == "these 2 speakers' utterances" and row["test"] == "exact McNemar"
    assert "about these 2 speakers' utterances" in interval_note(auto)


def test_a_corpus_pooled_over_folds_is_resampled_fold_by_fold():
    """IEMOCAP leave one session out: 10 speakers in 5 folds (two per session). By default every
    interval draws whole folds and every test flips whole folds: 5 folds give no p below 0.0625,
    so the comparisons are not testable about speakers at 0.05, and every table says so."""
    from cuealign.analysis.intervals import SpeakerDesign, interval
    from cuealign.analysis.tables import interval_note, main_table

    pooled = simulate(speakers=10, per_speaker=30)
    utterances = pooled.drop_duplicates("utt_id")
    folds = {
        u: f"iemocap-s{int(s[1:]) // 2 + 1}" for u, s in zip(utterances["utt_id"], utterances["speaker"], strict=True)
    }
    result = analyse(pooled, labels=LABELS, expected_conditions=CONDITIONS, resamples=200, folds=folds)
    about = result["intervals"]
    assert (about["cluster"], about["n_clusters"], about["n_speakers"], about["target"]) == ("fold", 5, 10, "speakers")
    assert "resampled fold by fold (5 folds" in about["about"] and "no p below 0.0625" in about["warning"]
    comparisons = result["comparisons"]
    assert comparisons["test"].str.startswith("not testable about speakers: 5 folds give no p below 0.0625").all()
    assert comparisons["p_value"].isna().all() and (comparisons["n_clusters"] == 5).all()
    # the interval is jackknife-t over the five folds (from the definition, with the design's df)
    truth = utterances.set_index("utt_id")["label"].sort_index()
    correct = {
        c: (pooled[pooled["condition"] == c].set_index("utt_id").sort_index()["pred"] == truth).to_numpy()
        for c in ("aligned", "none")
    }
    design = SpeakerDesign(truth.to_numpy(), [folds[u] for u in truth.index], LABELS, resamples=10, within=False)
    expected = interval(design.replicates(correct["aligned"]) - design.replicates(correct["none"]), "jackknife-t")
    gain = comparisons.set_index("comparison").loc["aligned - none"]
    assert (gain["ci_low"], gain["ci_high"]) == pytest.approx(expected)
    row = main_table(result, model="m", corpus="iemocap").iloc[0]
    assert row["CI method"] == "jackknife-t, 10 speakers in 5 folds" and row["test"] == "sign-flip over folds"
    assert "in 5 folds, each fold resampled whole" in interval_note(result)
    assert "delete-one-fold jackknife" in interval_note(result)
    # by speaker on request: 10 units, testable
    by_speaker = analyse(
        pooled, labels=LABELS, expected_conditions=CONDITIONS, resamples=200, folds=folds, cluster="speaker"
    )
    assert by_speaker["intervals"]["n_clusters"] == 10 and by_speaker["comparisons"]["p_value"].notna().all()
    with pytest.raises(ValueError, match="analysis.cluster: fold needs a corpus pooled over folds"):
        analyse(pooled, labels=LABELS, expected_conditions=CONDITIONS, resamples=200, cluster="fold")
    with pytest.raises(ValueError, match="have no fold"):
        analyse(pooled, labels=LABELS, expected_conditions=CONDITIONS, folds=dict(list(folds.items())[1:]))


def test_every_interval_says_how_it_was_made(result):
    # 8 test speakers: the default speaker-clustered method, named beside every interval
    assert (
        result["intervals"] | {"warning": None} == result["intervals"]
        and result["intervals"]["method"] == "jackknife-t"
    )
    for table in (result["uar"], result["comparisons"]):
        assert (table["ci_method"] == "jackknife-t").all() and (table["n_speakers"] == 8).all()
        assert table["ci_zero_width"].dtype == bool and not table["ci_zero_width"].any()


def test_with_fewer_speakers_than_min_speakers_the_intervals_are_conditional_and_say_so():
    two = simulate(speakers=2, per_speaker=60)  # IEMOCAP's Session 5 has 2 speakers
    result = analyse(two, labels=LABELS, expected_conditions=CONDITIONS, resamples=200)
    about = result["intervals"]
    assert about["method"] == "within-speaker" and about["requested"] == "jackknife-t" and about["n_speakers"] == 2
    assert (
        "about these 2 speakers' utterances" in about["warning"] and "pool at least 4 test speakers" in about["warning"]
    )
    for table in (result["uar"], result["comparisons"]):
        assert (table["ci_method"] == "within-speaker").all() and (table["n_speakers"] == 2).all()
    from cuealign.analysis.tables import interval_note, main_table

    assert interval_note(result).startswith("WARNING: the intervals and tests are about these 2 speakers' utterances")
    assert main_table(result, model="m", corpus="c").iloc[0]["CI method"] == (
        "within-speaker, conditional on these 2 speakers"
    )
    # min_speakers is the user's to lower, at their own risk: about speakers, and not testable at 2
    lowered = analyse(two, labels=LABELS, expected_conditions=CONDITIONS, resamples=200, min_speakers=2)
    assert lowered["intervals"]["target"] == "speakers" and (lowered["uar"]["ci_method"] == "jackknife-t").all()
    assert "no comparison is testable about speakers" in lowered["intervals"]["warning"]


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
    from cuealign.analysis.tables import intervention_table, main_table
    from cuealign.render import to_html, to_latex, to_markdown

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
    assert (
        "<td>iemocap</td>" in page and f"<td class=num>{row['UAR with tokens']}</td>" in page and "t &lt;1&gt;" in page
    )
    # text left and wrapping, numbers right-aligned on one line, the table in a frame that scrolls
    assert "<th class=num>UAR with tokens</th>" in page and "<th>corpus</th>" in page
    assert '<div class="frame"><table>' in page
    latex = to_latex(intervention_table(result))
    assert (
        latex.startswith(r"\begin{tabular}")
        and r"\toprule" in latex
        and r"corrupt\_p0.5\_mean" in latex
        and latex.count(r"\\") > len(CONDITIONS)
    )


def test_figures_are_drawn(result, tmp_path):
    from cuealign.analysis.plots import confusion_grid, corruption_curve

    grid = confusion_grid(result["confusion"], ["aligned", "conflict", "none"], LABELS)
    assert len(grid.axes) == 3 and grid.axes[1].get_title() == "conflict"
    curve = corruption_curve(result["uar"], chance=0.25)
    line = curve.axes[0].lines[0]
    assert list(line.get_xdata()) == [0.0, 0.5, 1.0]
    grid.savefig(tmp_path / "c.svg")
    assert "<svg" in (tmp_path / "c.svg").read_text()[:400]
    # five conditions (the default study's figure): two rows of at most three, each share legible
    # when the report fits the figure to a ~1,100 px frame (>= 10 pt at 100 dpi scaled to it)
    five = ["aligned", "conflict", "none", "aligned", "none"]
    grid = confusion_grid(result["confusion"], five, LABELS)
    shown = [ax for ax in grid.axes if ax.axison]
    assert len(shown) == 5 and len(grid.axes) == 6
    width_px = grid.get_size_inches()[0] * 100
    sizes = [text.get_fontsize() for ax in shown for text in ax.texts]
    assert len(sizes) == 5 * len(LABELS) ** 2 and min(sizes) * min(1.0, 1100 / width_px) >= 10


def _cue_data(shift: float):
    """ENERGY=HIGH marks angry, ENERGY=LOW marks sad; conflict swaps them. A cue-following model
    moves log-probability from angry to sad by ``shift`` when HIGH becomes LOW (0: audio only)."""
    from cuealign.analysis.cue_following import class_given_token

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
    from cuealign.analysis.cue_following import cue_following

    row = cue_following(*_cue_data(1.8), labels=["angry", "sad"]).set_index("condition").loc["conflict"]
    assert row["utterances"] == 6 and row["cue_alignment"] == pytest.approx(1.0) and row["toward_pointed_class"] == 1.0
    # from definition: the pulled class's probability, after minus before
    expected = _probability_of_sad(-1.9) - _probability_of_sad(-0.1)
    assert row["probability_moved"] == pytest.approx(expected) and row["follows"]
    ignores = cue_following(*_cue_data(0.0), labels=["angry", "sad"]).set_index("condition").loc["conflict"]
    assert ignores["cue_alignment"] == pytest.approx(0.0) and not ignores["follows"]


def test_a_model_that_barely_moves_is_not_called_a_follower():
    from cuealign.analysis.cue_following import cue_following

    # the right direction every time, but the top class moves by about 0.0004
    row = cue_following(*_cue_data(0.0016), labels=["angry", "sad"]).set_index("condition").loc["conflict"]
    assert row["toward_pointed_class"] == 1.0 and row["cue_alignment"] == pytest.approx(1.0)
    assert row["probability_moved"] == pytest.approx(0.0004, rel=0.01) and not row["follows"]


def test_a_follower_moves_most_utterances_toward_the_pointed_class():
    """The right direction on average and a large mean effect are not enough when under half of
    the utterances move toward the pointed class (a few large moves): not a follower."""
    from cuealign.analysis.cue_following import pool_cue_following

    def table(toward):
        return pd.DataFrame(
            [
                dict(
                    condition="swap_ENERGY",
                    utterances=148,
                    cue_alignment=0.24,
                    toward_pointed_class=toward,
                    probability_moved=0.2,
                    follows=None,
                )
            ]
        )

    assert not pool_cue_following([table(0.486)]).loc[0, "follows"]
    assert pool_cue_following([table(0.52)]).loc[0, "follows"]


def test_a_model_that_emits_nothing_parsable_scores_zero_and_says_why():
    predictions = simulate(speakers=4, per_speaker=10).assign(pred="unparsed")
    for label in LABELS:
        predictions[f"logprob_{label}"] = np.nan  # generate mode keeps no label scores
    result = analyse(
        predictions, labels=LABELS, expected_conditions=CONDITIONS, resamples=50, seed=0, target="utterances"
    )
    table = result["uar"].set_index("condition")
    assert (table.loc[CONDITIONS, "uar"] == 0).all() and (table.loc[CONDITIONS, "unparsed_rate"] == 1).all()
    assert (table.loc[CONDITIONS, "n"] == 40).all()  # every utterance kept, none dropped or filled
    comparisons = result["comparisons"]  # all wrong alike: no discordant pair, no difference
    mcnemar = comparisons[comparisons["test"] == "exact McNemar"]
    assert (comparisons["delta_uar"] == 0).all() and (
        mcnemar["a_right_b_wrong"] + mcnemar["a_wrong_b_right"] == 0
    ).all()
    assert (comparisons["p_value"] == 1).all() and comparisons["ci_zero_width"].all()
    assert result["uar"]["ci_zero_width"].all()


def test_invalid_answers_are_wrong_and_counted():
    predictions = simulate(speakers=4, per_speaker=10)
    hit = (predictions["condition"] == "aligned") & (predictions["utt_id"].isin(["u0000", "u0001"]))
    predictions.loc[hit, "pred"] = "invalid"
    for label in LABELS:
        predictions.loc[hit, f"logprob_{label}"] = np.nan
    result = analyse(predictions, labels=LABELS, expected_conditions=CONDITIONS, resamples=50)
    table = result["uar"].set_index("condition")
    assert table.loc["aligned", "invalid_rate"] == pytest.approx(2 / 40) and table.loc["none", "invalid_rate"] == 0
    rows = predictions[predictions["condition"] == "aligned"]
    assert table.loc["aligned", "uar"] == pytest.approx(uar(rows["label"].to_numpy(), rows["pred"].to_numpy(), LABELS))
    # the divergences skip the two answers without scores instead of vanishing
    assert result["shifts"]["mean_js_vs_aligned"].notna().all()


def test_entered_results_join_the_models_table_marked_as_not_computed(result):
    """config: reference_results (the paper's Pengi) beside computed rows: the UAR as entered, the
    rest empty, the row saying it was entered and from where."""
    from cuealign.analysis.tables import entered_rows, main_table

    computed = main_table(result, model="demo-alm", corpus="iemocap")
    entry = {"corpus": "iemocap", "model": "Pengi", "uar": 0.345, "source": "the paper, Table III"}
    entered = entered_rows([entry], list(computed.columns))
    assert list(entered.columns) == list(computed.columns)
    row = entered.iloc[0]
    assert (row["model"], row["UAR without tokens"]) == ("Pengi (entered)", "0.345")
    assert row["CI method"] == "entered from the paper, Table III; not computed here"
    filled = {c for c in computed.columns if row[c] != ""}
    assert filled == {"corpus", "model", "UAR without tokens", "CI method"}
