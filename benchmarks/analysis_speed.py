"""The whole analysis of one corpus x model at IEMOCAP's test size: 1,241 utterances, 10
speakers, 26 conditions (none, aligned, conflict, 5 shuffles, 6 corruption levels x 3 seeds),
B = 10,000 speaker-bootstrap resamples, score mode (Jensen-Shannon included).

    python benchmarks/analysis_speed.py [--resamples B] [--repeats R]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from cuealign.analysis.answers import analyse
from cuealign.interventions import Condition

LABELS = ["angry", "happy", "neutral", "sad"]


def simulated_predictions(n: int = 1241, speakers: int = 10, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    typed = [Condition("none"), Condition("aligned"), Condition("conflict")]
    typed += [Condition("shuffle", seed=s) for s in range(5)]
    typed += [Condition("corrupt", p=p, seed=s) for p in (0, 0.2, 0.4, 0.6, 0.8, 1.0) for s in range(3)]
    truth = rng.choice(LABELS, n)
    frames = []
    for condition in typed:
        logits = rng.normal(size=(n, 4)) + 1.5 * (np.array(LABELS) == truth[:, None])
        frames.append(
            pd.DataFrame(
                {
                    "utt_id": [f"u{i:05d}" for i in range(n)],
                    **condition.as_row(),
                    "label": truth,
                    "speaker": [f"s{i % speakers}" for i in range(n)],
                    "pred": np.array(LABELS)[logits.argmax(1)],
                    **{f"logprob_{label}": logits[:, j] for j, label in enumerate(LABELS)},
                }
            )
        )
    return pd.concat(frames, ignore_index=True), [c.name for c in typed]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ci-method", default="jackknife-t", help="jackknife-t, studentized, bca, percentile")
    parser.add_argument("--min-speakers", type=int, default=4, help="above 10: the within-speaker interval")
    args = parser.parse_args()
    predictions, conditions = simulated_predictions()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        analyse(
            predictions,
            labels=LABELS,
            expected_conditions=conditions,
            resamples=args.resamples,
            seed=0,
            ci_method=args.ci_method,
            min_speakers=args.min_speakers,
        )
        times.append(time.perf_counter() - start)
    print(
        f"1,241 utterances x {len(conditions)} conditions, {args.ci_method} (min_speakers {args.min_speakers}), "
        f"B = {args.resamples}: "
        f"best {min(times):.2f} s, median {np.median(times):.2f} s over {args.repeats} runs"
    )


if __name__ == "__main__":
    main()
