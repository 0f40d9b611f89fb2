"""Simulated evaluations with a known population UAR, to measure what the intervals and tests
really do (benchmarks/ci_coverage.py in full, tests/unit/test_intervals.py in a reduced form).

An evaluation: G speakers, each with 5-15 utterances of every class (or, with ``sizes``, a total
drawn from that range and split over classes of unequal shares ``class_shares``). Speaker s answers an
utterance of class c correctly with probability expit(mu_c + u_s + v_sc) (u: the speaker, v: the
speaker x class interaction, both normal). A second condition shifts the logit by ``effect`` +
w_s (the effect differs by speaker) and its correctness is coupled to the first one's through a
shared uniform (paired conditions agree on most utterances, as real conditions do); each seed
of the second condition is coupled to the first in the same way. With ``folds``, the speakers are
dealt into that many folds (as IEMOCAP's sessions, two speakers each, pooled over leave-one-
session-out folds), and each fold shifts the second condition's logit by its own f_k (its tokens
and fine-tuned model are shared by its speakers): the fold effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

CLASS_LOGITS = (1.2, 0.4, -0.2, -0.8)  # four classes of different difficulty
NODES, GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(80)  # E[f(Z)], Z ~ N(0, 1)


@dataclass
class Heterogeneity:
    speaker: float = 0.7  # sd of u_s (logits)
    speaker_class: float = 0.5  # sd of v_sc
    effect: float = 0.3  # sd of w_s, the speaker's own effect of the second condition
    fold: float = 0.0  # sd of f_k, the fold's own effect of the second condition (with folds)


NONE = Heterogeneity(0.0, 0.0, 0.0)


def population_uar(
    shift: float, spread: Heterogeneity, *, with_effect: bool, class_logits: tuple = CLASS_LOGITS
) -> float:
    """The UAR over the population of speakers (the estimand): the mean over classes of
    E[expit(mu_c + shift + random effects)], by Gauss-Hermite quadrature."""
    variance = spread.speaker**2 + spread.speaker_class**2 + (spread.effect**2 + spread.fold**2 if with_effect else 0.0)
    sd = np.sqrt(variance)
    recalls = [np.sum(GH_WEIGHTS * expit(mu + shift + sd * NODES)) / np.sqrt(2 * np.pi) for mu in class_logits]
    return float(np.mean(recalls))


@dataclass
class Evaluation:
    truth: np.ndarray  # (n,) class names
    speakers: np.ndarray  # (n,)
    folds: np.ndarray  # (n,) each utterance's fold (all "0" without folds)
    correct_a: np.ndarray  # (n,) bool
    correct_b: np.ndarray  # (seeds, n) bool
    true_uar_a: float  # population
    true_uar_b: float
    these_speakers_uar_a: float  # expected UAR of these speakers (what a within-speaker interval is about)
    these_speakers_uar_b: float


LABELS = [f"class{c}" for c in range(len(CLASS_LOGITS))]
# unequal designs (benchmarks/ci_coverage.py --design unequal): 4 or 5 classes of unequal shares, as
# IEMOCAP's four (neutral the most common) and FAU Aibo's five (one class most of the data)
UNBALANCED = {
    4: ((1.2, 0.4, -0.2, -0.8), (0.45, 0.25, 0.2, 0.1)),
    5: ((1.5, 0.6, 0.0, -0.5, -1.0), (0.55, 0.2, 0.12, 0.08, 0.05)),
}


def labels_of(classes: int) -> list[str]:
    return [f"class{c}" for c in range(classes)]


def evaluation(
    rng: np.random.Generator,
    *,
    speakers: int,
    spread: Heterogeneity,
    effect: float = 0.0,
    seeds: int = 1,
    coupling: float = 0.8,
    sizes: tuple[int, int] | None = None,
    classes: int = 4,
    folds: int | None = None,
) -> Evaluation:
    """One simulated test split evaluated under conditions a and b (b with ``seeds`` seeds).
    ``sizes``: each speaker's utterances drawn uniformly from that range (log scale) and split over
    ``classes`` unbalanced classes (UNBALANCED); else 5-15 of each of the four classes.
    ``folds``: speakers dealt into that many folds, each with its effect on b (spread.fold)."""
    logits, shares = UNBALANCED[classes] if sizes else (CLASS_LOGITS, None)
    classes = len(logits)
    u = rng.normal(0, spread.speaker, speakers)
    v = rng.normal(0, spread.speaker_class, (speakers, classes))
    w = rng.normal(0, spread.effect, speakers)
    if sizes is None:
        counts = rng.integers(5, 16, size=(speakers, classes))
    else:
        totals = np.exp(rng.uniform(np.log(sizes[0]), np.log(sizes[1] + 1), speakers)).astype(int)
        counts = np.stack([rng.multinomial(n, shares) for n in totals])
    fold_of = np.arange(speakers) % folds if folds else np.zeros(speakers, dtype=int)
    f = rng.normal(0, spread.fold, folds) if folds else np.zeros(1)  # (drawn only with folds)
    speaker = np.repeat(np.repeat(np.arange(speakers), classes), counts.ravel())
    klass = np.repeat(np.tile(np.arange(classes), speakers), counts.ravel())
    logit_a = np.asarray(logits)[klass] + u[speaker] + v[speaker, klass]
    logit_b = logit_a + effect + w[speaker] + f[fold_of[speaker]]
    p_a, p_b = expit(logit_a), expit(logit_b)
    shared = rng.random(speaker.size)

    def coupled():  # a uniform that is a's own with probability `coupling`, else a fresh one
        return np.where(rng.random(speaker.size) < coupling, shared, rng.random(speaker.size))

    correct_a = shared < p_a
    correct_b = np.stack([coupled() < p_b for _ in range(seeds)])

    def expected_uar(p):
        return float(np.mean([p[klass == c].mean() for c in range(classes)]))

    return Evaluation(
        truth=np.asarray(labels_of(classes))[klass],
        speakers=speaker.astype(str),
        folds=fold_of[speaker].astype(str),
        correct_a=correct_a,
        correct_b=correct_b,
        true_uar_a=population_uar(0.0, spread, with_effect=False, class_logits=logits),
        true_uar_b=population_uar(effect, spread, with_effect=True, class_logits=logits),
        these_speakers_uar_a=expected_uar(p_a),
        these_speakers_uar_b=expected_uar(p_b),
    )
