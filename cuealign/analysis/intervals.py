"""Confidence intervals for UAR and its paired differences, and the paired test for conditions
with several seeds, all clustered by speaker.

Why clustered: utterances of one speaker are not independent (voice, recording, acting style),
so the population a study speaks about is one of speakers. Why paired: every condition is
evaluated on the same resamples, so the interval of a difference reflects only how the conditions
differ.

Every quantity is a linear combination of per-condition UARs (one condition, a difference, a mean
over seeds), and a UAR is a function of per-speaker x class sums of hits and utterances. So each
condition is reduced once to its replicates under every resampling scheme (``Replicates``), and
the combinations are taken on the replicates.

The methods (coverage measured by benchmarks/ci_coverage.py, table in benchmarks/README.md):
- ``percentile``: the plain speaker-clustered percentile bootstrap (the paper's wording);
- ``bca``: the same resamples, bias-corrected and accelerated (acceleration from the
  delete-one-speaker jackknife);
- ``studentized``: bootstrap-t, each resample studentised by its own delete-one-speaker
  jackknife standard error;
- ``jackknife-t``: estimate +- t(df) x the delete-one-speaker jackknife standard error (a
  cluster-robust interval with the CR3-type small-sample correction), df the Bell-McCaffrey
  degrees of freedom of that variance estimate (``bell_mccaffrey_df``): G - 1 when speakers hold
  equal numbers of each class, fewer when a few speakers hold most utterances (then G - 1
  covered 91.3-93.7 %, benchmarks/README.md "unequal speakers");
- ``within-speaker``: utterances resampled within each speaker. It describes these speakers only
  (an interval conditional on the speakers at hand), which is all that can be said with fewer
  speakers than any clustered method needs; the analysis uses it there and says so.

All arithmetic is float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

CLUSTERED_METHODS = ("percentile", "bca", "studentized", "jackknife-t")
CONDITIONAL = "within-speaker"
# Chosen by benchmarks/ci_coverage.py (table in benchmarks/README.md): with 4 to 40 test speakers,
# jackknife-t covered 93.6-96.4 % in every scenario (UAR and paired differences, with and without
# speaker heterogeneity), and 94.2-97.2 % with speakers of 20-300 utterances over unbalanced
# classes (on G - 1 degrees of freedom 91.5-95.0 %), as did studentized, but jackknife-t's intervals
# are narrower with few speakers (0.49 against 0.64 wide at 4), it has no resampling noise and costs
# G evaluations. The plain percentile bootstrap covered 79-84 % at 4 speakers and 89-90 % at 10.
DEFAULT_METHOD = "jackknife-t"
# Below 4 speakers the between-speaker variance rests on one degree of freedom: the bootstrap
# methods covered 0-51 % at 2 speakers, and jackknife-t held its level only by spanning nearly the
# whole scale (0.73-1.04 wide). There the analysis gives the within-speaker interval, labelled.
MIN_SPEAKERS = 4


@dataclass
class Replicates:
    """One quantity (a condition's UAR or a combination) on the data and in every resample."""

    estimate: float
    cluster: np.ndarray  # (B,) speakers resampled
    jackknife: np.ndarray  # (G,) one speaker left out
    within: np.ndarray | None  # (B,) utterances resampled within speaker
    cluster_jackknife: np.ndarray | None  # (B, G): resample b without one draw of speaker g
    counts: np.ndarray  # (B, G): how often resample b drew speaker g (the same for every quantity)
    bounds: tuple[float, float] = (0.0, 1.0)  # the values the quantity can take (a UAR: 0 to 1)
    df: float | None = None  # jackknife-t's degrees of freedom (the design's; None: G - 1)

    def __sub__(self, other: Replicates) -> Replicates:
        return combine([self, other], [1.0, -1.0])


def combine(parts: list[Replicates], weights: list[float]) -> Replicates:
    """The linear combination sum(w * part) of replicates made on the same resamples."""

    def mix(name):
        values = [getattr(p, name) for p in parts]
        if any(v is None for v in values):
            return None
        return sum(w * np.asarray(v, dtype=np.float64) for w, v in zip(weights, values, strict=True))

    return Replicates(
        float(mix("estimate")),
        mix("cluster"),
        mix("jackknife"),
        mix("within"),
        mix("cluster_jackknife"),
        parts[0].counts,
        (
            sum(w * (p.bounds[0] if w > 0 else p.bounds[1]) for w, p in zip(weights, parts, strict=True)),
            sum(w * (p.bounds[1] if w > 0 else p.bounds[0]) for w, p in zip(weights, parts, strict=True)),
        ),
        parts[0].df,
    )


def mean_of(parts: list[Replicates]) -> Replicates:
    return combine(parts, [1.0 / len(parts)] * len(parts))


def _uar(hits: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """UAR from class sums along the last axis; a class without utterances in a resample is left
    out of that resample's mean."""
    with np.errstate(invalid="ignore", divide="ignore"):
        recalls = np.where(totals > 0, hits / np.where(totals > 0, totals, 1.0), np.nan)
    return np.nanmean(recalls, axis=-1)


class SpeakerDesign:
    """The resamples every condition of one evaluation shares: ``resamples`` speaker draws (with
    replacement), the G delete-one-speaker jackknife sets and ``resamples`` within-speaker
    utterance draws, all from ``seed``.

    What a condition contributes is its per-speaker x class hits (G x C): the clustered methods
    need nothing else. Within-speaker resampling draws utterances, so it reads the per-utterance
    correctness; its draws are made speaker by speaker in blocks of resamples (memory bounded by
    ``block`` numbers, not B x n) and shared by all conditions (``replicates_many``)."""

    def __init__(
        self,
        truth: np.ndarray,
        speakers: np.ndarray,
        labels: list[str],
        *,
        resamples: int = 1000,
        seed: int = 0,
        studentize: bool = True,
        within: bool = True,
        block: int = 4_000_000,
    ):
        truth = np.asarray(truth)
        self.classes = [label for label in labels if np.any(truth == label)]
        self.onehot = np.stack([truth == label for label in self.classes], axis=1).astype(np.float64)
        self.speakers, self.index = np.unique(np.asarray(speakers), return_inverse=True)
        self.n_speakers = len(self.speakers)
        self.studentize = studentize
        self.resamples = resamples
        self.block = block
        self.totals = self._per_speaker(self.onehot)  # (G, C)
        self.df = bell_mccaffrey_df(self.totals)
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, self.n_speakers, size=(resamples, self.n_speakers))
        self.counts = np.zeros((resamples, self.n_speakers))
        np.add.at(self.counts, (np.arange(resamples)[:, None], draws), 1.0)
        # within speaker: each speaker's utterances drawn with replacement, as many as it has, from
        # the generator where the speaker draws left it (made only when asked for)
        self.has_within = within
        self._within_state = rng.bit_generator.state if within else None

    def _per_speaker(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros((self.n_speakers, values.shape[1]))
        np.add.at(out, self.index, values)
        return out

    def _within_sums(self, values: np.ndarray) -> np.ndarray:
        """(B, columns): every within-speaker resample's sums of ``values`` (n, columns). Speaker g's
        resample b is rng.multinomial(n_g, uniform, B)[b], drawn in blocks of rows (the same numbers
        as one B x n_g draw)."""
        rng = np.random.default_rng()
        rng.bit_generator.state = self._within_state
        out = np.zeros((self.resamples, values.shape[1]))
        for g in range(self.n_speakers):
            members = np.flatnonzero(self.index == g)
            rows = max(1, self.block // max(1, members.size))
            uniform = np.full(members.size, 1 / members.size)
            for start in range(0, self.resamples, rows):
                stop = min(self.resamples, start + rows)
                draws = rng.multinomial(members.size, uniform, stop - start).astype(np.float64)
                out[start:stop] += draws @ values[members]
        return out

    def within_weights(self) -> np.ndarray:
        """(B, n): how often each within-speaker resample drew each utterance (the whole matrix,
        for checks on small designs)."""
        return self._within_sums(np.eye(len(self.index)))

    def replicates(self, correct: np.ndarray) -> Replicates:
        """A condition's UAR (given its per-utterance correctness) on the data and every resample."""
        return self.replicates_many(np.asarray(correct)[:, None])[0]

    def replicates_many(self, correct: np.ndarray) -> list[Replicates]:
        """Each column's UAR (``correct``: utterances x conditions) on the data and every resample."""
        correct = np.asarray(correct, dtype=np.float64)
        n, k = correct.shape
        c = len(self.classes)
        within = None
        if self.has_within:  # one pass over the draws for every condition (and the class totals)
            hit_all = (correct[:, :, None] * self.onehot[:, None, :]).reshape(n, k * c)
            sums = self._within_sums(np.concatenate([hit_all, self.onehot], axis=1))
            within = _uar(sums[:, : k * c].reshape(-1, k, c), sums[:, None, k * c :])  # (B, K)
        out = []
        for j in range(k):
            hits = self._per_speaker(correct[:, j : j + 1] * self.onehot)  # (G, C)
            out.append(self._from_hits(hits, None if within is None else within[:, j]))
        return out

    def _from_hits(self, hits: np.ndarray, within: np.ndarray | None) -> Replicates:
        all_hits, all_totals = hits.sum(axis=0), self.totals.sum(axis=0)
        boot_hits, boot_totals = self.counts @ hits, self.counts @ self.totals  # (B, C)
        cluster_jackknife = None
        if self.studentize:
            # resample b less one draw of speaker g (NaN where g was not drawn)
            values = _uar(boot_hits[:, None, :] - hits[None], boot_totals[:, None, :] - self.totals[None])
            cluster_jackknife = np.where(self.counts > 0, values, np.nan)
        return Replicates(
            estimate=float(_uar(all_hits, all_totals)),
            cluster=_uar(boot_hits, boot_totals),
            jackknife=_uar(all_hits - hits, all_totals - self.totals),
            within=within,
            cluster_jackknife=cluster_jackknife,
            counts=self.counts,
            df=self.df,
        )


def bell_mccaffrey_df(totals: np.ndarray) -> float:
    """The degrees of freedom of the delete-one-speaker jackknife variance of a UAR made from
    ``totals`` (G speakers x C classes: utterances), by Satterthwaite's approximation under the
    working model of independent utterances of equal variance (Bell and McCaffrey 2002; Imbens and
    Kolesar 2016, "BM" degrees of freedom).

    The jackknife UARs are linear in the speaker x class recalls y: J = A y with A[g, (h, c)] =
    n_hc / (C (N_c - n_gc)) for h != g, and the variance estimate is a multiple of J' P J (P
    centres over speakers). With Var(y_hc) = s / n_hc, df = tr(PB)^2 / tr(PBPB), B = A diag(1 / n) A'.
    Equal speakers give G - 1; a few speakers holding most utterances give fewer, as the variance
    estimate then rests on them. Every condition and paired difference of one design shares it
    (the weights are the design's). Kept within [1, G - 1]."""
    n = np.asarray(totals, dtype=np.float64)
    g, c = n.shape
    if g < 2:
        return 1.0
    everyone = n.sum(axis=0)
    remaining = everyone[None, :] - n  # (G, C): class sizes with speaker g left out
    with np.errstate(divide="ignore"):
        s = np.where(remaining > 0, 1.0 / (c * remaining), 0.0)  # A[g, (h, c)] = s_gc n_hc, h != g
    # B[g, g'] = sum_c s_gc s_g'c (N_c - n_gc - n_g'c), plus sum_c s_gc^2 n_gc on the diagonal:
    # B = L R' + diag(d), rank 3C, so both traces take O(G C^2) (no G x G matrix)
    left = np.concatenate([s * everyone, -s * n, -s], axis=1)
    right = np.concatenate([s, s, s * n], axis=1)
    d = (s**2 * n).sum(axis=1)
    centred = left - left.mean(axis=0)  # P L
    core = right.T @ centred  # R' P L
    scaled = d[:, None] * centred
    trace = np.trace(core) + d.sum() * (1 - 1 / g)
    square = (
        np.sum(core * core.T)
        + 2 * np.trace(right.T @ (scaled - scaled.mean(axis=0)))
        + (d**2).sum() * (1 - 2 / g)
        + d.sum() ** 2 / g**2
    )
    if square <= 0:
        return float(g - 1)
    return float(np.clip(trace**2 / square, 1.0, g - 1))


def _jackknife_se(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Delete-one jackknife standard error over the last axis; ``weights`` counts how often each
    leave-one-out value occurs (a resample's repeated speakers)."""
    if weights is None:
        weights = np.ones_like(values)
    values = np.where(weights > 0, values, 0.0)
    g = weights.sum(axis=-1)
    mean = (weights * values).sum(axis=-1) / g
    return np.sqrt((g - 1) / g * (weights * (values - mean[..., None]) ** 2).sum(axis=-1))


def interval(rep: Replicates, method: str, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` interval of ``rep`` by ``method`` (CLUSTERED_METHODS or CONDITIONAL), within
    the values the quantity can take (t-type intervals can reach past them)."""
    low, high = _interval(rep, method, 1 - level)
    return max(low, rep.bounds[0]), min(high, rep.bounds[1])


def _interval(rep: Replicates, method: str, alpha: float) -> tuple[float, float]:
    estimate = rep.estimate
    if method == CONDITIONAL:
        if rep.within is None:
            raise ValueError("within-speaker intervals need a SpeakerDesign made with within=True")
        return _percentile(rep.within, alpha)
    if method == "percentile":
        return _percentile(rep.cluster, alpha)
    if method == "jackknife-t":
        df = len(rep.jackknife) - 1 if rep.df is None else rep.df
        half = stats.t.ppf(1 - alpha / 2, df) * float(_jackknife_se(rep.jackknife))
        return estimate - half, estimate + half
    if method == "bca":
        cluster = rep.cluster[np.isfinite(rep.cluster)]
        if np.ptp(cluster) == 0:
            return estimate, estimate
        z0 = stats.norm.ppf(np.clip(np.mean(cluster < estimate) + 0.5 * np.mean(cluster == estimate), 1e-6, 1 - 1e-6))
        d = rep.jackknife.mean() - rep.jackknife
        denominator = 6 * np.sum(d**2) ** 1.5
        a = np.sum(d**3) / denominator if denominator > 0 else 0.0
        z = stats.norm.ppf([alpha / 2, 1 - alpha / 2])
        shares = stats.norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
        low, high = np.percentile(cluster, 100 * shares)
        return float(low), float(high)
    if method == "studentized":
        if rep.cluster_jackknife is None:
            raise ValueError("studentized intervals need a SpeakerDesign made with studentize=True")
        se = float(_jackknife_se(rep.jackknife))
        if se == 0:
            return estimate, estimate
        boot_se = _jackknife_se(rep.cluster_jackknife, rep.counts)
        with np.errstate(invalid="ignore", divide="ignore"):
            t = (rep.cluster - estimate) / boot_se
        # a resample of one speaker drawn G times has no spread: its t is undefined, left out
        t = t[np.isfinite(t)]
        if t.size == 0:
            return estimate, estimate
        t_low, t_high = np.percentile(t, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        return estimate - t_high * se, estimate - t_low * se
    raise ValueError(f"unknown interval method {method!r}; choose one of {[*CLUSTERED_METHODS, CONDITIONAL]}")


def _percentile(values: np.ndarray, alpha: float) -> tuple[float, float]:
    low, high = np.nanpercentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def sign_flip_test(
    design: SpeakerDesign, difference: np.ndarray, *, exact_up_to: int = 16, resamples: int = 100_000, seed: int = 0
) -> tuple[float, str]:
    """Two-sided speaker-clustered sign-flip permutation test of a paired UAR difference
    (scipy.stats.permutation_test on the per-speaker totals, one sample: signs flipped).

    ``difference`` is per utterance: condition a's correctness minus b's, where either may be a
    mean over seeds (so every seed counts). Weighting utterance i by 1 / (classes x utterances of
    its class) makes the sum of the per-speaker totals exactly the UAR difference; under the null
    each speaker's total is as likely negative as positive, so the p-value is the share of the
    2^G sign patterns whose sum is as extreme as the observed one: all of them for up to
    ``exact_up_to`` speakers, else ``resamples`` random patterns (seeded; scipy counts the observed
    one, and doubles the smaller tail, which for this symmetric null is the share of |sum| at least
    the observed, exactly when enumerated).
    """
    totals = np.zeros(design.n_speakers)
    np.add.at(totals, design.index, _weighted(design, difference))
    exact = design.n_speakers <= exact_up_to or 2**design.n_speakers <= resamples  # scipy enumerates them then
    return _flip_p(totals, exact, resamples, seed), "exact sign-flip" if exact else "Monte Carlo sign-flip"


def _weighted(design: SpeakerDesign, difference: np.ndarray) -> np.ndarray:
    """Each utterance's paired difference weighted by 1 / (classes x utterances of its class): they
    sum to the UAR difference."""
    difference = np.asarray(difference, dtype=np.float64)
    if np.any(np.isnan(difference)):
        raise ValueError("the per-utterance difference has NaN; every utterance needs a prediction in both conditions")
    per_class = design.onehot.sum(axis=0)
    return (design.onehot / (per_class * len(design.classes))).sum(axis=1) * difference


def _flip_p(values: np.ndarray, exact: bool, resamples: int, seed: int) -> float:
    """Two-sided sign-flip p of sum(values): scipy.stats.permutation_test, one sample, signs flipped."""
    result = stats.permutation_test(
        (values,),
        _sum,
        permutation_type="samples",
        vectorized=True,
        n_resamples=np.inf if exact else resamples,
        batch=max(1, BLOCK // len(values)),
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def utterance_sign_flip_test(
    design: SpeakerDesign, difference: np.ndarray, *, resamples: int = 100_000, seed: int = 0
) -> tuple[float, str]:
    """Two-sided sign-flip permutation test of a paired UAR difference over these utterances
    (conditional on the speakers at hand; analysis.target: utterances).

    ``difference`` is per utterance, as for ``sign_flip_test`` (a side may be a mean over seeds, so
    every seed counts); each is weighted by 1 / (classes x utterances of its class), so their sum
    is the UAR difference. Under the null that the two conditions are exchangeable for each
    utterance, each weighted difference is as likely negative as positive: the p-value is the share
    of sign patterns whose |sum| is at least the observed one, over all of them for up to 16
    utterances that differ, else ``resamples`` random ones plus the observed (seeded). Utterances
    with no difference do not move the sum and are left out.
    """
    weighted = _weighted(design, difference)
    moving = weighted[weighted != 0]
    if len(moving) == 0:
        return 1.0, "exact sign-flip over utterances"
    exact = len(moving) <= 16
    test = ("exact" if exact else "Monte Carlo") + " sign-flip over utterances"
    return _flip_p(moving, exact, resamples, seed), test


def smallest_sign_flip_p(n_speakers: int) -> float:
    """The smallest two-sided p-value a sign-flip test over ``n_speakers`` can give (2 / 2^G)."""
    return min(1.0, 2.0 / 2.0**n_speakers)


BLOCK = 4_000_000  # numbers in a batch of sign patterns at once (memory bound)


def _sum(x: np.ndarray, axis: int) -> np.ndarray:
    return np.sum(x, axis=axis)
