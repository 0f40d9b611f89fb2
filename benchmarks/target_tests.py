"""Type-I error and power of every test the analysis runs, per analysis.target, by simulation
(cuealign.analysis.simulation: 4 classes, 5-15 utterances per speaker and class, speaker and speaker
x class random effects, paired conditions coupled through a shared uniform).

For 2, 4, 8 and 20 test speakers: how often each test rejects at alpha 0.05 when
- the conditions do not differ at all (a true null for every target),
- the second condition's effect is 0 on average but varies between speakers (logit SD 0.5): the
  population of speakers shows (almost) no difference, these speakers' utterances do,
- the second condition is 0.5 logits worse on average (SD 0.3 between speakers): power.
Tests: about speakers, the sign-flip test over speakers (one condition against one; a condition
against a mean over 3 seeds); about utterances, the exact McNemar test (one against one) and the
sign-flip test over utterances (against a mean over 3 seeds). "not testable" where a sign-flip test
over G speakers cannot give a p below alpha (2 / 2^G > 0.05).

    python benchmarks/target_tests.py [--runs 400] [--resamples 2000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from cuealign.analysis import intervals, simulation
from cuealign.analysis.stats import mcnemar_exact

SPEAKERS = (2, 4, 8, 20)
SCENARIOS = {
    "no difference at all": (0.0, simulation.Heterogeneity(effect=0.0)),
    "effect 0 on average, SD 0.5 between speakers": (0.0, simulation.Heterogeneity(effect=0.5)),
    "0.5 logits worse, SD 0.3 between speakers": (-0.5, simulation.Heterogeneity(effect=0.3)),
}
TESTS = (
    "speakers: sign-flip, 1 vs 1",
    "speakers: sign-flip, 1 vs 3 seeds",
    "utterances: McNemar, 1 vs 1",
    "utterances: sign-flip, 1 vs 3 seeds",
)


def rejections(speakers: int, scenario: str, runs: int, resamples: int, alpha: float = 0.05) -> dict:
    """Share of ``runs`` simulated studies in which each test rejects at ``alpha``."""
    effect, spread = SCENARIOS[scenario]
    rng = np.random.default_rng([speakers, len(scenario)])
    counts = dict.fromkeys(TESTS, 0)
    testable = intervals.smallest_sign_flip_p(speakers) <= alpha
    for run in range(runs):
        ev = simulation.evaluation(rng, speakers=speakers, spread=spread, effect=effect, seeds=3)
        design = intervals.SpeakerDesign(ev.truth, ev.speakers, simulation.LABELS, resamples=10, seed=run)
        single = ev.correct_a.astype(float) - ev.correct_b[0].astype(float)
        seeded = ev.correct_a.astype(float) - ev.correct_b.mean(axis=0)
        if testable:
            counts[TESTS[0]] += intervals.sign_flip_test(design, single, resamples=resamples, seed=run)[0] < alpha
            counts[TESTS[1]] += intervals.sign_flip_test(design, seeded, resamples=resamples, seed=run)[0] < alpha
        counts[TESTS[2]] += mcnemar_exact(ev.correct_a, ev.correct_b[0])[2] < alpha
        counts[TESTS[3]] += intervals.utterance_sign_flip_test(design, seeded, resamples=resamples, seed=run)[0] < alpha
    return {test: (counts[test] / runs if testable or test.startswith("utterances") else None) for test in TESTS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--resamples", type=int, default=2000, help="Monte Carlo sign patterns (above 16 units)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    cells = [(g, s) for s in SCENARIOS for g in SPEAKERS]
    with ProcessPoolExecutor(args.jobs) as pool:
        found = list(
            pool.map(rejections, *zip(*cells, strict=True), [args.runs] * len(cells), [args.resamples] * len(cells))
        )
    print(f"rejection rate at alpha 0.05, {args.runs} simulated studies per cell\n")
    for scenario in SCENARIOS:
        print(f"{scenario}:\n\n| test | " + " | ".join(f"{g} speakers" for g in SPEAKERS) + " |")
        print("|---|" + "---|" * len(SPEAKERS))
        for test in TESTS:
            cells_of = [found[cells.index((g, scenario))][test] for g in SPEAKERS]
            print(f"| {test} | " + " | ".join("not testable" if c is None else f"{c:.1%}" for c in cells_of) + " |")
        print()
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
