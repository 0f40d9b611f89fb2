"""A prompt-wording sweep (prompt.variants) against separate runs, one per wording.

    python benchmarks/variant_sweep.py [--family qwen2-audio] [--wordings 5] [--utterances 4] [--seconds 3]

The paper's 26 conditions per utterance under --wordings wordings of the instruction, scored on
a tiny random-weight model of the real class (hidden 64, 2 layers), CPU, 2 threads:

- separate runs: each wording on its own, as a run per wording would do it (every utterance's
  audio encoded once per wording);
- sweep: as the inference stage runs prompt.variants (an utterance's wordings one after the
  other: its system + audio prefix is encoded once and each wording continues it with only its
  own instruction tokens);
- one wording: the cost of a study without variants, for scale.

Also checks that the sweep's scores equal the separate runs' (to 1e-5).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from cuealign.models.loader import load_backend
from cuealign.models.tiny import build_tiny_alm
from cuealign.workflow.config import model_entry

LABELS = ["angry", "happy", "neutral", "sad"]
WORDINGS = [
    "What emotion does the speaker express? Answer with one word from: angry, happy, neutral, sad.",
    "How does the speaker feel? Reply with one of these words: angry, happy, neutral, sad.",
    "Classify the speaker's emotion as angry, happy, neutral or sad.",
    "Which emotion do you hear: angry, happy, neutral or sad? One word.",
    "Listen to the speaker. Is the speaker angry, happy, neutral or sad?",
    "Name the emotion in this voice (angry, happy, neutral, sad).",
]
LEVELS = ["VERY_LOW", "LOW", "MID", "HIGH", "VERY_HIGH"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="qwen2-audio", choices=["qwen2-audio", "qwen2.5-omni", "audio-flamingo-3"])
    parser.add_argument("--wordings", type=int, default=5, choices=range(2, len(WORDINGS) + 1))
    parser.add_argument("--utterances", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    wordings = WORDINGS[: args.wordings]
    conditions = [""] + [
        " Acoustic cues measured from the audio: "
        + "; ".join(f"{c}={rng.choice(LEVELS)}" for c in ("ENERGY", "PITCH", "BRIGHTNESS", "DYNAMICS", "FORMANTS"))
        + "; VOICE_QUALITY=MODAL."
        for _ in range(25)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_alm(args.family, tmp, [*wordings, *conditions, " ".join(LABELS)] * 3, hidden=64)
        backend = load_backend(model_entry(path, args.family, dtype="float32"))
        audios = [
            (0.1 * rng.standard_normal(int(16000 * args.seconds))).astype(np.float32) for _ in range(args.utterances)
        ]

        def fresh(a, w):  # a run of one wording: each utterance's audio encoded for it
            backend.forget_prefixes()
            return backend.score(a, w, conditions, LABELS)

        def separate():
            return {(w, u): fresh(a, w) for w in wordings for u, a in enumerate(audios)}

        def sweep():
            return {(w, u): backend.score(a, w, conditions, LABELS) for u, a in enumerate(audios) for w in wordings}

        def one():
            return [backend.score(a, wordings[0], conditions, LABELS) for a in audios]

        def best(run) -> tuple[float, object]:
            times, out = [], None
            for _ in range(args.repeats):
                backend.forget_prefixes()  # no utterance's prefix kept from the repeat before
                start = time.perf_counter()
                out = run()
                times.append(time.perf_counter() - start)
            return min(times), out

        separate_s, a = best(separate)
        sweep_s, b = best(sweep)
        one_s, _ = best(one)
        worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
        if worst > 1e-5:
            raise SystemExit(f"the sweep's scores differ from the separate runs' by {worst:.2g}")
    rows = args.utterances * len(conditions) * len(wordings)
    print(
        f"{args.family}: {args.utterances} utterances of {args.seconds:g} s x {len(conditions)} conditions x "
        f"{len(wordings)} wordings ({rows} prompts); sweep == separate to {worst:.1e}\n"
    )
    print("| way | seconds | prompts / s | relative to one wording |")
    print("|---|---|---|---|")
    for name, seconds, n in [
        (f"{len(wordings)} separate runs, one per wording", separate_s, rows),
        (f"sweep of {len(wordings)} wordings (audio prefix shared)", sweep_s, rows),
        ("one wording (no variants)", one_s, rows // len(wordings)),
    ]:
        print(f"| {name} | {seconds:.2f} | {n / seconds:.1f} | {seconds / one_s:.2f}x |")


if __name__ == "__main__":
    main()
