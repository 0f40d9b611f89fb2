"""Coverage of every interval method the analysis offers, and the level of the seeded-condition
test, by simulation (cuealign.analysis.simulation: 4 classes, 5-15 utterances per speaker and class,
speaker and speaker x class random effects, paired conditions).

For 2, 4, 6, 10, 20 and 40 test speakers, with and without between-speaker heterogeneity: how
often the nominal 95 % interval covers the population UAR of a condition and the population
difference between two paired conditions (b - a, b 0.5 logits worse), and the mean width. The
within-speaker interval is also scored against what it describes: the expected UAR of the
speakers at hand. Then the type-I error of the sign-flip test (alpha 0.05) under a true null, for
a condition with 1 and with 3 seeds.

Two more designs, for the default jackknife-t (Bell-McCaffrey degrees of freedom) against the same
interval with G - 1 degrees of freedom: "unequal", 4 to 40 speakers of 20-300 utterances each
(log-uniform) over 4 or 5 unbalanced classes (cuealign.analysis.simulation.UNBALANCED); and "pooled
folds", IEMOCAP leave-one-session-out in small (10 speakers, 2 to a fold, 5 folds) with a fold
effect on the second condition (SD 0, 0.2, 0.4, 0.6 logits), the difference's interval resampled by
speaker and by fold (analysis.cluster).

    python benchmarks/ci_coverage.py [--runs 500] [--resamples 1000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from cuealign.analysis import intervals, simulation

SPEAKERS = (2, 4, 6, 10, 20, 40)
METHODS = (*intervals.CLUSTERED_METHODS, intervals.CONDITIONAL)
SPREADS = {"yes": simulation.Heterogeneity(), "no": simulation.NONE}


def coverage(speakers: int, spread_name: str, runs: int, resamples: int) -> dict:
    rng = np.random.default_rng([speakers, len(spread_name)])
    spread = SPREADS[spread_name]
    hits = {(q, m): 0 for q in ("UAR", "difference") for m in METHODS}
    widths = {(q, m): 0.0 for q in ("UAR", "difference") for m in METHODS}
    conditional = {"UAR": 0, "difference": 0}
    for run in range(runs):
        ev = simulation.evaluation(rng, speakers=speakers, spread=spread, effect=-0.5)
        design = intervals.SpeakerDesign(ev.truth, ev.speakers, simulation.LABELS, resamples=resamples, seed=run)
        a, b = design.replicates(ev.correct_a), design.replicates(ev.correct_b[0])
        quantities = {
            "UAR": (a, ev.true_uar_a, ev.these_speakers_uar_a),
            "difference": (b - a, ev.true_uar_b - ev.true_uar_a, ev.these_speakers_uar_b - ev.these_speakers_uar_a),
        }
        for name, (rep, truth, these) in quantities.items():
            for method in METHODS:
                low, high = intervals.interval(rep, method)
                hits[name, method] += low <= truth <= high
                widths[name, method] += high - low
                if method == intervals.CONDITIONAL:
                    conditional[name] += low <= these <= high
    return {
        "speakers": speakers,
        "heterogeneity": spread_name,
        "coverage": {k: v / runs for k, v in hits.items()},
        "width": {k: v / runs for k, v in widths.items()},
        "conditional": {k: v / runs for k, v in conditional.items()},
    }


UNEQUAL_SPEAKERS = (4, 6, 10, 20, 40)
FOLD_EFFECTS = (0.0, 0.2, 0.4, 0.6)


def _jackknife_t(rep: intervals.Replicates, df: float) -> tuple[float, float]:
    """estimate +- t(df) x the delete-one jackknife SE (jackknife-t with other degrees of freedom)."""
    low, high = intervals.interval(dataclasses.replace(rep, df=df), "jackknife-t")
    return low, high


def unequal(speakers: int, classes: int, runs: int) -> dict:
    """Coverage of jackknife-t (Bell-McCaffrey df) and of t with G - 1 df, unequal speakers."""
    rng = np.random.default_rng([speakers, classes, 7])
    labels = simulation.labels_of(classes)
    hits = {(q, m): 0 for q in ("UAR", "difference") for m in ("default", "G - 1")}
    width, dfs = 0.0, []
    for run in range(runs):
        ev = simulation.evaluation(
            rng, speakers=speakers, spread=simulation.Heterogeneity(), effect=-0.5, sizes=(20, 300), classes=classes
        )
        design = intervals.SpeakerDesign(ev.truth, ev.speakers, labels, resamples=10, seed=run, studentize=False)
        a, b = design.replicates(ev.correct_a), design.replicates(ev.correct_b[0])
        dfs.append(design.df)
        for name, rep, truth in (("UAR", a, ev.true_uar_a), ("difference", b - a, ev.true_uar_b - ev.true_uar_a)):
            low, high = intervals.interval(rep, "jackknife-t")
            hits[name, "default"] += low <= truth <= high
            width += (high - low) if name == "difference" else 0.0
            low, high = _jackknife_t(rep, speakers - 1)
            hits[name, "G - 1"] += low <= truth <= high
    return {
        "speakers": speakers,
        "classes": classes,
        "coverage": {k: v / runs for k, v in hits.items()},
        "df": float(np.mean(dfs)),
        "width": width / runs,
        "runs": runs,
    }


def pooled_folds(fold_effect: float, runs: int) -> dict:
    """Coverage of the difference's jackknife-t interval, 10 speakers in 5 folds, by speaker and by fold."""
    rng = np.random.default_rng([int(100 * fold_effect), 5])
    spread = simulation.Heterogeneity(fold=fold_effect)
    hits = {"speaker": 0, "fold": 0}
    for run in range(runs):
        ev = simulation.evaluation(rng, speakers=10, spread=spread, effect=-0.5, folds=5)
        truth = ev.true_uar_b - ev.true_uar_a
        for unit, units in (("speaker", ev.speakers), ("fold", ev.folds)):
            design = intervals.SpeakerDesign(
                ev.truth, units, simulation.LABELS, resamples=10, seed=run, studentize=False
            )
            low, high = intervals.interval(
                design.replicates(ev.correct_b[0]) - design.replicates(ev.correct_a), "jackknife-t"
            )
            hits[unit] += low <= truth <= high
    return {"fold_effect": fold_effect, "coverage": {k: v / runs for k, v in hits.items()}, "runs": runs}


def type_one(speakers: int, seeds: int, spread_name: str, runs: int) -> dict:
    rng = np.random.default_rng([speakers, seeds, len(spread_name)])
    spread = SPREADS[spread_name]
    null = simulation.Heterogeneity(spread.speaker, spread.speaker_class, 0.0)  # no effect in any speaker
    rejected = 0
    for run in range(runs):
        ev = simulation.evaluation(rng, speakers=speakers, spread=null, effect=0.0, seeds=seeds)
        design = intervals.SpeakerDesign(ev.truth, ev.speakers, simulation.LABELS, resamples=100, seed=run)
        p, _ = intervals.sign_flip_test(design, ev.correct_a.astype(float) - ev.correct_b.mean(axis=0), seed=run)
        rejected += p <= 0.05
    return {"speakers": speakers, "seeds": seeds, "heterogeneity": spread_name, "rate": rejected / runs, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    started = time.time()
    with ProcessPoolExecutor(args.jobs) as pool:
        cells = [(g, s) for s in SPREADS for g in SPEAKERS]
        results = list(
            pool.map(coverage, *zip(*cells, strict=True), [args.runs] * len(cells), [args.resamples] * len(cells))
        )
        nulls = [(10, k, s) for s in SPREADS for k in (1, 3)] + [(40, 3, "yes")]
        levels = list(pool.map(type_one, *zip(*nulls, strict=True), [4 * args.runs] * len(nulls)))
        shapes = [(g, c) for c in (4, 5) for g in UNEQUAL_SPEAKERS]
        unequals = list(pool.map(unequal, *zip(*shapes, strict=True), [4 * args.runs] * len(shapes)))
        folds = list(pool.map(pooled_folds, FOLD_EFFECTS, [4 * args.runs] * len(FOLD_EFFECTS)))
    monte_carlo = 100 * np.sqrt(0.95 * 0.05 / args.runs)
    print(
        f"runs per cell {args.runs} (Monte Carlo SE of a 95 % coverage: {monte_carlo:.1f} points), B = {args.resamples}"
    )
    for quantity in ("UAR", "difference"):
        print(f"\n{quantity}: coverage of the population value, % (mean width)\n")
        print("| speakers | heterogeneity | " + " | ".join(METHODS) + " | within-speaker, of these speakers |")
        print("|---" * (len(METHODS) + 3) + "|")
        for r in results:
            cells = [f"{100 * r['coverage'][quantity, m]:.1f} ({r['width'][quantity, m]:.3f})" for m in METHODS]
            print(
                f"| {r['speakers']} | {r['heterogeneity']} | "
                + " | ".join(cells)
                + f" | {100 * r['conditional'][quantity]:.1f} |"
            )
    print("\nsign-flip test, type-I error at alpha 0.05\n")
    print("| speakers | seeds | heterogeneity | rejections % | data sets |")
    print("|---|---|---|---|---|")
    for r in levels:
        print(f"| {r['speakers']} | {r['seeds']} | {r['heterogeneity']} | {100 * r['rate']:.1f} | {r['runs']} |")
    print("\nunequal speakers (20-300 utterances each), unbalanced classes: jackknife-t coverage, %\n")
    print("| speakers | classes | UAR | difference | mean df | UAR, t(G - 1) | difference, t(G - 1) | data sets |")
    print("|---|---|---|---|---|---|---|---|")
    for r in unequals:
        c = {k: f"{100 * v:.1f}" for k, v in r["coverage"].items()}
        print(
            f"| {r['speakers']} | {r['classes']} | {c['UAR', 'default']} | {c['difference', 'default']}"
            f" | {r['df']:.1f} | {c['UAR', 'G - 1']} | {c['difference', 'G - 1']} | {r['runs']} |"
        )
    print("\npooled folds (10 speakers in 5 folds): coverage of the difference's jackknife-t interval, %\n")
    print("| fold effect SD (logits) | resampled by speaker | resampled by fold | data sets |")
    print("|---|---|---|---|")
    for r in folds:
        c = r["coverage"]
        print(f"| {r['fold_effect']:g} | {100 * c['speaker']:.1f} | {100 * c['fold']:.1f} | {r['runs']} |")
    # per method, the fewest speakers from which it covers 93 % or more in every scenario
    print()
    for method in METHODS:
        valid = [
            g
            for g in SPEAKERS
            if all(
                r["coverage"][q, method] >= 0.93 for r in results if r["speakers"] >= g for q in ("UAR", "difference")
            )
        ]
        print(f"{method}: 93 % or more in every scenario from {min(valid) if valid else 'no'} speakers")
    print(f"({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
