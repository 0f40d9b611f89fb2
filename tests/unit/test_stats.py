"""Statistics against independent computations and published or hand-worked values."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from cuealign.analysis.stats import holm, mcnemar_exact, spearman, uar

LABELS = ["angry", "happy", "neutral", "sad"]


def test_uar_by_hand():
    truth = np.array(["a", "a", "a", "a", "b", "b"])
    pred = np.array(["a", "a", "a", "b", "b", "unparsed"])
    assert uar(truth, pred, ["a", "b", "c"]) == pytest.approx((3 / 4 + 1 / 2) / 2)  # c absent: not averaged


@pytest.mark.parametrize("a_only, b_only", [(10, 3), (0, 5), (7, 7), (1, 0), (25, 12)])
def test_mcnemar_exact_is_the_two_sided_binomial_test(a_only, b_only):
    correct_a = np.array([True] * a_only + [False] * b_only + [True] * 20 + [False] * 9)
    correct_b = np.array([False] * a_only + [True] * b_only + [True] * 20 + [False] * 9)
    counted_a, counted_b, p = mcnemar_exact(correct_a, correct_b)
    assert (counted_a, counted_b) == (a_only, b_only)
    expected = scipy_stats.binomtest(min(a_only, b_only), a_only + b_only, 0.5).pvalue
    assert p == pytest.approx(min(1.0, expected))


def test_mcnemar_without_discordant_pairs_is_one():
    same = np.array([True, False, True])
    assert mcnemar_exact(same, same) == (0, 0, 1.0)


def test_holm_by_hand():
    # sorted: .005 x4 = .02; .01 x3 = .03; .03 x2 = .06; .04 x1 = .04 -> .06 (monotone)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])  # .5 x2 = 1; .9 x1 = .9 -> 1 (monotone)


def test_spearman_against_ranks_by_hand():
    p = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    curve = np.array([0.80, 0.70, 0.70, 0.50, 0.40, 0.30])
    ranks_p = np.arange(1, 7)
    ranks_curve = np.array([6, 4.5, 4.5, 3, 2, 1])  # the tie shares its ranks
    rho, pvalue = spearman(p, curve)
    assert rho == pytest.approx(np.corrcoef(ranks_p, ranks_curve)[0, 1])
    assert rho < -0.9 and pvalue < 0.05


def test_clustered_ci_is_wider_than_iid_when_speakers_differ():
    from cuealign.analysis.intervals import SpeakerDesign, interval
    from cuealign.analysis.simulation import LABELS as CLASSES
    from cuealign.analysis.simulation import Heterogeneity, evaluation

    ev = evaluation(np.random.default_rng(2), speakers=10, spread=Heterogeneity(1.0, 0.5, 0.0))
    clustered = interval(SpeakerDesign(ev.truth, ev.speakers, CLASSES).replicates(ev.correct_a), "percentile")
    each_alone = np.array([f"u{i:05d}" for i in range(ev.truth.size)])  # every utterance its own speaker
    iid = interval(
        SpeakerDesign(ev.truth, each_alone, CLASSES, studentize=False).replicates(ev.correct_a), "percentile"
    )
    assert clustered[1] - clustered[0] > 1.5 * (iid[1] - iid[0])


def test_paired_resamples_make_a_constant_shift_exact():
    """The same resamples for two conditions: identical predictions differ by exactly 0 everywhere."""
    from cuealign.analysis.intervals import CLUSTERED_METHODS, CONDITIONAL, SpeakerDesign, interval
    from cuealign.analysis.simulation import LABELS as CLASSES
    from cuealign.analysis.simulation import Heterogeneity, evaluation

    ev = evaluation(np.random.default_rng(3), speakers=12, spread=Heterogeneity())
    design = SpeakerDesign(ev.truth, ev.speakers, CLASSES, resamples=200)
    difference = design.replicates(ev.correct_a) - design.replicates(ev.correct_a.copy())
    assert np.all(difference.cluster == 0) and np.all(difference.within == 0) and np.all(difference.jackknife == 0)
    for method in (*CLUSTERED_METHODS, CONDITIONAL):
        assert interval(difference, method) == (0.0, 0.0)
    again = SpeakerDesign(ev.truth, ev.speakers, CLASSES, resamples=200)
    assert (
        again.counts.tolist() == design.counts.tolist()
        and again.within_weights().tolist() == design.within_weights().tolist()
    )


def test_spearman_permutation_p_is_the_share_of_pairings_as_extreme():
    import itertools

    from scipy import stats as scipy_stats

    from cuealign.analysis.stats import spearman_permutation

    levels = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    uars = np.array([0.95, 0.75, 0.61, 0.52, 0.46, 0.36])
    rho, p, method = spearman_permutation(levels, uars)
    # from the definition: every one of the 720 pairings, |rho| at least the observed one
    observed = scipy_stats.spearmanr(levels, uars).statistic
    as_extreme = [
        abs(scipy_stats.spearmanr(levels, uars[list(order)]).statistic) >= abs(observed) - 1e-12
        for order in itertools.permutations(range(6))
    ]
    assert rho == pytest.approx(-1.0) and method == "exact permutation"
    assert p == pytest.approx(np.mean(as_extreme)) and p == pytest.approx(2 / 720)
    # a non-monotone curve
    bumpy = np.array([0.9, 0.7, 0.8, 0.5, 0.6, 0.4])
    rho, p, _ = spearman_permutation(levels, bumpy)
    observed = scipy_stats.spearmanr(levels, bumpy).statistic
    expected = np.mean(
        [
            abs(scipy_stats.spearmanr(levels, bumpy[list(order)]).statistic) >= abs(observed) - 1e-12
            for order in itertools.permutations(range(6))
        ]
    )
    assert rho == pytest.approx(observed) and p == pytest.approx(expected)
