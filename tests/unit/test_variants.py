"""Statistics across prompt wordings, against an independent computation."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from cuealign.analysis.answers import analyse
from cuealign.analysis.variants import per_variant, robust_cell, summary
from tests.unit.test_analysis import CONDITIONS, LABELS, simulate

# three wordings: the token effect strong in two, absent in the third ("flat")
WORDINGS = {"main": 0, "feel": 1, "flat": 2}


def wording(name: str) -> pd.DataFrame:
    predictions = simulate(seed=WORDINGS[name])
    if name == "flat":  # aligned answers as none does: no token effect in this wording
        none = predictions[predictions["condition"] == "none"].set_index("utt_id")["pred"]
        aligned = predictions["condition"].isin(["aligned", "corrupt_p0_s0", "corrupt_p0_s1"])
        predictions.loc[aligned, "pred"] = predictions.loc[aligned, "utt_id"].map(none).to_numpy()
    return predictions


@pytest.fixture(scope="module")
def results():
    return {
        # about these utterances: the paper's McNemar for the gain, computed by hand below
        name: analyse(
            wording(name), labels=LABELS, expected_conditions=CONDITIONS, resamples=300, seed=0, target="utterances"
        )
        for name in WORDINGS
    }


def recall_mean(rows: pd.DataFrame) -> float:
    """UAR by hand: the mean over classes of the share of that class answered right."""
    return float(np.mean([(rows.loc[rows["label"] == c, "pred"] == c).mean() for c in LABELS]))


def test_per_wording_and_across_wordings_equal_an_independent_computation(results):
    table = per_variant(results)
    assert set(table["variant"]) == set(WORDINGS)
    across = summary(table).set_index(["statistic", "name"])
    for condition in ("none", "aligned", "conflict"):
        by_hand = [recall_mean(wording(w)[wording(w)["condition"] == condition]) for w in WORDINGS]
        row = across.loc[("uar", condition)]
        assert row["n_variants"] == 3 and row["main"] == pytest.approx(by_hand[0])
        assert row["mean"] == pytest.approx(np.mean(by_hand))
        assert row["sd"] == pytest.approx(np.std(by_hand, ddof=1))
        assert (row["min"], row["max"]) == pytest.approx((min(by_hand), max(by_hand)))

    # the gain: an exact McNemar per wording (binomial on the discordant pairs), by hand
    gain = across.loc[("delta_uar", "aligned - none")]
    p_by_hand = []
    for w in WORDINGS:
        wide = wording(w).pivot(index="utt_id", columns="condition", values="pred")
        truth = wording(w).drop_duplicates("utt_id").set_index("utt_id").loc[wide.index, "label"]
        a, n = wide["aligned"] == truth, wide["none"] == truth
        b, c = int((a & ~n).sum()), int((~a & n).sum())
        p_by_hand.append(binomtest(b, b + c, 0.5).pvalue if b + c else 1.0)
    p_holm = table.query("statistic == 'delta_uar' and name == 'aligned - none'")["p_value"].to_numpy()
    np.testing.assert_allclose(p_holm, p_by_hand)
    # the gain is a family of its own (the paper's default), so Holm leaves it as it is
    assert gain["holds_in"] == 2 and not gain["robust"]
    assert gain["p_all"] == pytest.approx(max(p_by_hand))
    assert robust_cell(summary(table)) == f"no: holds in 2 of 3 (p_all {max(p_by_hand):.3g})"


def test_an_effect_in_every_wording_is_robust_and_a_sign_flip_is_not(results):
    two = {w: results[w] for w in ("main", "feel")}
    gain = summary(per_variant(two)).set_index(["statistic", "name"]).loc[("delta_uar", "aligned - none")]
    assert gain["robust"] and gain["holds_in"] == 2 and gain["p_all"] < 0.05
    # the same data with one wording's difference reversed: the signs disagree, p_all is 1
    table = per_variant(two)
    flip = (table["variant"] == "feel") & (table["name"] == "aligned - none")
    table.loc[flip, "estimate"] *= -1
    reversed_gain = summary(table).set_index(["statistic", "name"]).loc[("delta_uar", "aligned - none")]
    assert reversed_gain["p_all"] == 1.0 and not reversed_gain["robust"] and reversed_gain["holds_in"] == 1


def test_one_wording_says_nothing_about_robustness(results):
    across = summary(per_variant({"main": results["main"]}))
    assert across["n_variants"].eq(1).all() and across["sd"].isna().all()
    gain = across.set_index(["statistic", "name"]).loc[("delta_uar", "aligned - none")]
    assert gain["mean"] == gain["main"] == gain["min"] == gain["max"]
