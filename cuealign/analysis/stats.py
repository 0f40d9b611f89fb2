"""The study's statistics: UAR, exact McNemar with Holm correction, and Spearman's rho over the
corruption curve. The speaker-clustered intervals and the seeded-condition test are
cuealign.analysis.intervals."""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests


def uar(truth: np.ndarray, pred: np.ndarray, labels: list[str]) -> float:
    """Unweighted average recall over the classes present in ``truth`` (a prediction outside
    ``labels``, such as 'unparsed', is simply wrong)."""
    recalls = [np.mean(pred[truth == label] == label) for label in labels if np.any(truth == label)]
    return float(np.mean(recalls))


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int, float]:
    """Exact McNemar test on paired correctness: (a right b wrong, a wrong b right, p)."""
    a_only = int(np.sum(correct_a & ~correct_b))
    b_only = int(np.sum(~correct_a & correct_b))
    table = [[0, a_only], [b_only, 0]]
    p = 1.0 if a_only + b_only == 0 else float(mcnemar(table, exact=True).pvalue)
    return a_only, b_only, p


def holm(pvalues: list[float]) -> np.ndarray:
    """Holm-adjusted p-values over a family of tests."""
    if len(pvalues) == 0:
        return np.array([])
    return multipletests(pvalues, method="holm")[1]


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Spearman's rho and its two-sided p-value (scipy's t approximation)."""
    result = stats.spearmanr(x, y)
    return float(result.statistic), float(result.pvalue)


EXACT_UP_TO = 100_000  # permutations: n! <= this (n <= 8 points) enumerates them all


def spearman_permutation(x: np.ndarray, y: np.ndarray, *, seed: int = 0) -> tuple[float, float, str]:
    """Spearman's rho, its two-sided permutation p-value and how it was found: every pairing of
    the points enumerated (exact) for up to 8 points, else EXACT_UP_TO random pairings (seeded).
    For the corruption curve's few levels the t approximation (``spearman``) is not to be trusted."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    # one sample: its order against x is what is permuted (n! pairings)
    result = stats.permutation_test(
        (y,),
        lambda b: stats.spearmanr(x, b).statistic,
        permutation_type="pairings",
        n_resamples=EXACT_UP_TO,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    exact = math.factorial(len(x)) <= EXACT_UP_TO
    return float(result.statistic), float(result.pvalue), "exact permutation" if exact else "Monte Carlo permutation"


def label_distribution(logp: np.ndarray) -> np.ndarray:
    """Rows of label log-probs as distributions over the labels (softmax over the labels only:
    a model's probability mass outside the label set is left out, as the argmax does)."""
    return special.softmax(np.asarray(logp, dtype=float), axis=1)
