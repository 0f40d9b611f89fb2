"""Intervals and the seeded-condition test against from-definition computations, and their
validity by simulation in a reduced, seeded form (benchmarks/ci_coverage.py runs it in full)."""

import itertools

import numpy as np
import pytest
from scipy import stats

from cuealign.analysis import intervals, simulation
from cuealign.analysis.stats import uar
from tests import reference_analysis

LABELS = simulation.LABELS


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    ev = simulation.evaluation(rng, speakers=6, spread=simulation.Heterogeneity(), effect=-0.5, seeds=3)
    design = intervals.SpeakerDesign(ev.truth, ev.speakers, LABELS, resamples=300, seed=1)
    return ev, design


def test_replicates_are_the_uar_of_the_resampled_data(small):
    ev, design = small
    rep = design.replicates(ev.correct_a)
    pred = np.where(ev.correct_a, ev.truth, "wrong")
    assert rep.estimate == pytest.approx(uar(ev.truth, pred, LABELS))
    members = [np.flatnonzero(design.index == g) for g in range(design.n_speakers)]
    weights = design.within_weights()
    for b in range(5):  # speakers drawn with replacement: their utterances, repeated
        index = np.concatenate([np.tile(members[g], int(k)) for g, k in enumerate(design.counts[b])])
        assert rep.cluster[b] == pytest.approx(uar(ev.truth[index], pred[index], LABELS), abs=1e-12)
        within = np.repeat(np.arange(len(pred)), weights[b].astype(int))  # utterances redrawn in speaker
        assert rep.within[b] == pytest.approx(uar(ev.truth[within], pred[within], LABELS), abs=1e-12)
        for g in np.flatnonzero(design.counts[b])[:2]:  # the resample less one draw of speaker g
            less = design.counts[b].copy()
            less[g] -= 1
            index = np.concatenate([np.tile(members[h], int(k)) for h, k in enumerate(less)])
            assert rep.cluster_jackknife[b, g] == pytest.approx(uar(ev.truth[index], pred[index], LABELS), abs=1e-12)
    for g in range(design.n_speakers):  # one speaker left out
        keep = design.index != g
        assert rep.jackknife[g] == pytest.approx(uar(ev.truth[keep], pred[keep], LABELS), abs=1e-12)
    # within-speaker resamples keep each speaker's utterance count
    for m in members:
        assert (weights[:, m].sum(axis=1) == m.size).all()
    # drawn in blocks of a few resamples, the draws are the same numbers
    blocked = intervals.SpeakerDesign(ev.truth, ev.speakers, LABELS, resamples=300, seed=1, block=7)
    assert blocked.within_weights().tolist() == weights.tolist()
    np.testing.assert_allclose(blocked.replicates(ev.correct_a).within, rep.within, atol=1e-12)
    assert rep.cluster.dtype == np.float64 and design.counts.dtype == np.float64


def test_combinations_are_taken_on_every_replicate(small):
    ev, design = small
    a = design.replicates(ev.correct_a)
    seeds = [design.replicates(c) for c in ev.correct_b]
    mean = intervals.mean_of(seeds)
    diff = mean - a
    np.testing.assert_allclose(diff.cluster, np.mean([s.cluster for s in seeds], axis=0) - a.cluster)
    np.testing.assert_allclose(diff.jackknife, np.mean([s.jackknife for s in seeds], axis=0) - a.jackknife)
    assert diff.estimate == pytest.approx(np.mean([s.estimate for s in seeds]) - a.estimate)
    assert diff.bounds == (-1.0, 1.0) and mean.bounds == (0.0, 1.0)


def test_the_jackknife_uars_are_the_linear_map_the_degrees_of_freedom_assume(small):
    ev, design = small
    rep = design.replicates(ev.correct_a)
    recalls = np.array(
        [[ev.correct_a[(ev.speakers == s) & (ev.truth == label)].mean() for label in LABELS] for s in design.speakers]
    )
    assert reference_analysis.leave_one_out_matrix(design.totals) @ recalls.reshape(-1) == pytest.approx(rep.jackknife)


def test_bell_mccaffrey_degrees_of_freedom_from_their_definition():
    rng = np.random.default_rng(5)
    for g in (2, 3, 4, 7, 12, 30):
        totals = rng.integers(0, 60, size=(g, 5)).astype(float)
        totals[:, 0] += 1  # every class present
        expected = min(g - 1, max(1.0, reference_analysis.bell_mccaffrey_df(totals)))
        assert intervals.bell_mccaffrey_df(totals) == pytest.approx(expected, rel=1e-9)
    # equal speakers: G - 1 (the t interval of a plain mean of speakers)
    assert intervals.bell_mccaffrey_df(np.full((8, 4), 12.0)) == pytest.approx(7.0)
    # one speaker holding most utterances: the variance rests on it, far fewer than G - 1
    lopsided = np.vstack([np.full((1, 4), 300.0), np.full((9, 4), 5.0)])
    assert intervals.bell_mccaffrey_df(lopsided) < 4


def test_jackknife_t_from_its_definition(small):
    ev, design = small
    rep = design.replicates(ev.correct_a)
    g = design.n_speakers
    theta = rep.jackknife
    se = np.sqrt((g - 1) / g * np.sum((theta - theta.mean()) ** 2))
    df = reference_analysis.bell_mccaffrey_df(design.totals)
    assert 4 < df < g - 1  # 5-15 utterances of each class per speaker: a little under G - 1
    half = stats.t.ppf(0.975, df) * se
    assert intervals.interval(rep, "jackknife-t") == pytest.approx((rep.estimate - half, rep.estimate + half))
    assert intervals.interval(rep - design.replicates(ev.correct_b[0]), "jackknife-t")[1] > rep.estimate - 1


def test_bca_from_its_definition_on_one_utterance_per_speaker():
    """With one utterance per speaker and one class, the speaker bootstrap of UAR is the ordinary
    bootstrap of a mean, and BCa on the same resamples is Efron and Tibshirani's formula (14.3)."""
    rng = np.random.default_rng(3)
    correct = rng.random(30) < 0.7
    truth = np.array(["class0"] * 30)
    design = intervals.SpeakerDesign(
        truth, [f"s{i:02d}" for i in range(30)], LABELS, resamples=2000, seed=0, studentize=False
    )
    rep = design.replicates(correct)
    ours = intervals.interval(rep, "bca")
    # z0 from the share of resamples below the estimate, a from the jackknife
    boot = rep.cluster
    z0 = stats.norm.ppf(np.mean(boot < rep.estimate) + 0.5 * np.mean(boot == rep.estimate))
    jack = np.array([np.delete(correct, i).mean() for i in range(30)])
    d = jack.mean() - jack
    a = np.sum(d**3) / (6 * np.sum(d**2) ** 1.5)
    z = stats.norm.ppf([0.025, 0.975])
    expected = np.percentile(boot, 100 * stats.norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z))))
    assert ours == pytest.approx(tuple(expected))
    np.testing.assert_allclose(rep.jackknife, jack)


def test_studentized_from_its_definition(small):
    ev, design = small
    rep = design.replicates(ev.correct_a)
    g = design.n_speakers
    se = np.sqrt((g - 1) / g * np.sum((rep.jackknife - rep.jackknife.mean()) ** 2))
    t = []
    for b in range(len(rep.cluster)):
        values = np.repeat(rep.cluster_jackknife[b], design.counts[b].astype(int))  # one value per draw
        se_b = np.sqrt((g - 1) / g * np.sum((values - values.mean()) ** 2))
        if se_b > 0:
            t.append((rep.cluster[b] - rep.estimate) / se_b)
    low_t, high_t = np.percentile(t, [2.5, 97.5])
    assert intervals.interval(rep, "studentized") == pytest.approx(
        (rep.estimate - high_t * se, rep.estimate - low_t * se)
    )


def test_intervals_stay_within_what_the_quantity_can_take():
    truth = np.array(["class0", "class1"] * 4)
    speakers = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    design = intervals.SpeakerDesign(truth, speakers, LABELS, resamples=200, seed=0)
    rep = design.replicates(np.array([1, 1, 1, 1, 1, 1, 0, 1], bool))
    for method in (*intervals.CLUSTERED_METHODS, intervals.CONDITIONAL):
        low, high = intervals.interval(rep, method)
        assert 0.0 <= low <= high <= 1.0, method


def test_all_alike_gives_a_zero_width_interval():
    truth = np.array(["class0", "class1"] * 6)
    speakers = np.repeat(["a", "b", "c", "d"], 3)
    design = intervals.SpeakerDesign(truth, speakers, LABELS, resamples=100, seed=0)
    rep = design.replicates(np.ones(12, bool))
    for method in (*intervals.CLUSTERED_METHODS, intervals.CONDITIONAL):
        assert intervals.interval(rep, method) == (1.0, 1.0)


def test_sign_flip_p_is_the_share_of_sign_patterns_as_extreme(small):
    ev, design = small
    difference = ev.correct_a.astype(float) - ev.correct_b.mean(axis=0)
    p, test = intervals.sign_flip_test(design, difference)
    # from the definition: class-balanced per-speaker contributions, every one of the 2^G patterns
    counts = {c: np.sum(ev.truth == c) for c in LABELS}
    weight = np.array([1 / (len(LABELS) * counts[t]) for t in ev.truth])
    totals = np.array([np.sum((weight * difference)[design.index == g]) for g in range(design.n_speakers)])
    assert totals.sum() == pytest.approx(
        design.replicates(ev.correct_a).estimate - np.mean([design.replicates(c).estimate for c in ev.correct_b])
    )
    patterns = [np.array(s) for s in itertools.product((1, -1), repeat=design.n_speakers)]
    expected = np.mean([abs(s @ totals) >= abs(totals.sum()) - 1e-12 for s in patterns])
    assert test == "exact sign-flip" and p == pytest.approx(expected)
    # as many patterns asked as there are: scipy enumerates them, and it says so
    assert intervals.sign_flip_test(design, difference, exact_up_to=2, resamples=2**design.n_speakers) == (p, test)


def test_monte_carlo_sign_flip_is_seeded_and_within_its_error_of_the_exact_p():
    rng = np.random.default_rng(3)
    ev = simulation.evaluation(rng, speakers=17, spread=simulation.Heterogeneity(0.7, 0.5, 0.0), effect=0.03, seeds=3)
    design = intervals.SpeakerDesign(ev.truth, ev.speakers, LABELS, resamples=10, seed=0, studentize=False)
    difference = ev.correct_a.astype(float) - ev.correct_b.mean(axis=0)
    exact, how = intervals.sign_flip_test(design, difference, exact_up_to=17)
    p_mc, test_mc = intervals.sign_flip_test(design, difference, exact_up_to=16, resamples=20_000, seed=1)
    assert how == "exact sign-flip" and test_mc == "Monte Carlo sign-flip"
    # two tails of 20,000 draws: within 4 standard errors of the exact share
    assert p_mc == pytest.approx(exact, abs=4 * 2 * np.sqrt(exact * (1 - exact) / 20_000) + 2 / 20_001)
    assert intervals.sign_flip_test(design, difference, exact_up_to=16, resamples=20_000, seed=1)[0] == p_mc
    again, _ = intervals.sign_flip_test(design, -difference, exact_up_to=16, resamples=20_000, seed=1)
    assert again == p_mc  # two-sided: the flipped difference is as extreme


def test_sign_flip_holds_its_level_at_ten_speakers():
    """Reduced form of the benchmark's type-I simulation: a true null, 3 seeds, 10 speakers."""
    rng = np.random.default_rng(7)
    null = simulation.Heterogeneity(0.7, 0.5, 0.0)
    rejected, runs = 0, 400
    for run in range(runs):
        ev = simulation.evaluation(rng, speakers=10, spread=null, effect=0.0, seeds=3)
        design = intervals.SpeakerDesign(ev.truth, ev.speakers, LABELS, resamples=10, seed=run, studentize=False)
        p, _ = intervals.sign_flip_test(design, ev.correct_a.astype(float) - ev.correct_b.mean(axis=0))
        rejected += p <= 0.05
    # 5 % level; Monte Carlo SE at 400 runs is 1.1 points
    assert rejected / runs <= 0.05 + 2.5 * np.sqrt(0.05 * 0.95 / runs)


def test_the_utterance_tests_hold_their_level_at_two_speakers():
    """Reduced form of benchmarks/target_tests.py: no difference between the conditions, 2 test
    speakers (analysis.target: utterances): the sign-flip test over utterances (3 seeds) and McNemar
    (one condition each) reject at most at their 5 % level."""
    from cuealign.analysis.stats import mcnemar_exact

    rng = np.random.default_rng(11)
    null = simulation.Heterogeneity(0.7, 0.5, 0.0)
    flips = mcnemars = 0
    runs = 200
    for run in range(runs):
        ev = simulation.evaluation(rng, speakers=2, spread=null, effect=0.0, seeds=3)
        design = intervals.SpeakerDesign(ev.truth, ev.speakers, LABELS, resamples=10, seed=run, within=True)
        change = ev.correct_a.astype(float) - ev.correct_b.mean(axis=0)
        flips += intervals.utterance_sign_flip_test(design, change, resamples=1000, seed=run)[0] <= 0.05
        mcnemars += mcnemar_exact(ev.correct_a, ev.correct_b[0])[2] <= 0.05
    bound = 0.05 + 2.5 * np.sqrt(0.05 * 0.95 / runs)  # Monte Carlo SE at 200 runs: 1.5 points
    assert flips / runs <= bound and mcnemars / runs <= bound


def test_coverage_reduced_form():
    """Reduced form of benchmarks/ci_coverage.py: the default method covers the population UAR and
    the paired difference at MIN_SPEAKERS; the plain percentile bootstrap at 2 speakers does not
    come near, which is why the analysis falls back to the conditional interval there."""
    rng = np.random.default_rng(11)
    covered = {"default": [0, 0], "percentile at 2": 0}
    runs = 150
    for run in range(runs):
        ev = simulation.evaluation(rng, speakers=intervals.MIN_SPEAKERS, spread=simulation.Heterogeneity(), effect=-0.5)
        design = intervals.SpeakerDesign(ev.truth, ev.speakers, LABELS, resamples=400, seed=run)
        a, b = design.replicates(ev.correct_a), design.replicates(ev.correct_b[0])
        low, high = intervals.interval(a, intervals.DEFAULT_METHOD)
        covered["default"][0] += low <= ev.true_uar_a <= high
        low, high = intervals.interval(b - a, intervals.DEFAULT_METHOD)
        covered["default"][1] += low <= ev.true_uar_b - ev.true_uar_a <= high
        two = simulation.evaluation(rng, speakers=2, spread=simulation.Heterogeneity())
        design = intervals.SpeakerDesign(two.truth, two.speakers, LABELS, resamples=200, seed=run, studentize=False)
        low, high = intervals.interval(design.replicates(two.correct_a), "percentile")
        covered["percentile at 2"] += low <= two.true_uar_a <= high
    se = np.sqrt(0.95 * 0.05 / runs)
    assert all(c / runs >= 0.95 - 2.5 * se - 0.02 for c in covered["default"]), covered
    assert covered["percentile at 2"] / runs < 0.7, covered


def _jackknife_t(rep: intervals.Replicates, df: float) -> tuple[float, float]:
    se = float(
        np.sqrt((len(rep.jackknife) - 1) / len(rep.jackknife) * np.sum((rep.jackknife - rep.jackknife.mean()) ** 2))
    )
    half = stats.t.ppf(0.975, df) * se
    return rep.estimate - half, rep.estimate + half


def test_coverage_with_unequal_speakers_and_unbalanced_classes_reduced_form():
    """Reduced form of benchmarks/ci_coverage.py's unequal design: 6 speakers of 20-300 utterances,
    5 unbalanced classes. The default interval covers the population UAR and difference; t with
    G - 1 degrees of freedom (the plain jackknife-t) falls short, which is why the default takes
    Bell-McCaffrey's."""
    rng = np.random.default_rng(21)
    labels = simulation.labels_of(5)
    covered = {"default": np.zeros(2), "G - 1": np.zeros(2)}
    runs = 800
    for run in range(runs):
        ev = simulation.evaluation(
            rng, speakers=6, spread=simulation.Heterogeneity(), effect=-0.5, sizes=(20, 300), classes=5
        )
        design = intervals.SpeakerDesign(ev.truth, ev.speakers, labels, resamples=10, seed=run, studentize=False)
        a, b = design.replicates(ev.correct_a), design.replicates(ev.correct_b[0])
        for j, (rep, truth) in enumerate([(a, ev.true_uar_a), (b - a, ev.true_uar_b - ev.true_uar_a)]):
            low, high = intervals.interval(rep, intervals.DEFAULT_METHOD)
            covered["default"][j] += low <= truth <= high
            low, high = _jackknife_t(rep, design.n_speakers - 1)
            covered["G - 1"][j] += low <= truth <= high
    se = np.sqrt(0.95 * 0.05 / runs)  # 0.8 points
    assert (covered["default"] / runs >= 0.95 - 2.5 * se).all(), covered
    assert (covered["G - 1"] < covered["default"] - 0.02 * runs).all(), covered


def test_pooled_folds_with_a_fold_effect_are_covered_when_resampled_by_fold():
    """IEMOCAP leave-one-session-out in small: 10 speakers in 5 folds, each fold's tokens and model
    shifting the effect of the second condition (SD 0.6 logits). Resampled by fold (the default for
    a pooled corpus) the difference's interval covers; by speaker it does not."""
    rng = np.random.default_rng(8)
    spread = simulation.Heterogeneity(fold=0.6)
    covered = {"fold": 0, "speaker": 0}
    runs = 800
    for run in range(runs):
        ev = simulation.evaluation(rng, speakers=10, spread=spread, effect=-0.5, folds=5)
        truth = ev.true_uar_b - ev.true_uar_a
        for unit, labels in (("fold", ev.folds), ("speaker", ev.speakers)):
            design = intervals.SpeakerDesign(ev.truth, labels, LABELS, resamples=10, seed=run, studentize=False)
            low, high = intervals.interval(
                design.replicates(ev.correct_b[0]) - design.replicates(ev.correct_a), intervals.DEFAULT_METHOD
            )
            covered[unit] += low <= truth <= high
    se = np.sqrt(0.95 * 0.05 / runs)
    assert covered["fold"] / runs >= 0.95 - 2.5 * se, covered
    assert covered["speaker"] / runs < 0.9, covered


def test_the_population_uar_is_what_many_speakers_average_to():
    """The quadrature's population UAR against 4,000 simulated speakers (SE about 0.003)."""
    rng = np.random.default_rng(1)
    spread = simulation.Heterogeneity()
    ev = simulation.evaluation(rng, speakers=4000, spread=spread, effect=-0.5)
    assert ev.these_speakers_uar_a == pytest.approx(ev.true_uar_a, abs=0.01)
    assert ev.these_speakers_uar_b == pytest.approx(ev.true_uar_b, abs=0.01)
    assert ev.true_uar_b < ev.true_uar_a - 0.05
    # and so with a fold effect (its variance is the population's too), unequal speakers, 5 classes
    folded = simulation.evaluation(
        rng,
        speakers=4000,
        spread=simulation.Heterogeneity(fold=0.6),
        effect=-0.5,
        folds=400,
        sizes=(20, 300),
        classes=5,
    )
    assert folded.these_speakers_uar_b == pytest.approx(folded.true_uar_b, abs=0.01)
    assert folded.these_speakers_uar_a == pytest.approx(folded.true_uar_a, abs=0.01)
