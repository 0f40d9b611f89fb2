"""Utterance x condition per second at the paper's design (26 conditions: none, aligned, conflict,
5 shuffles, 6 corruption levels x 3 seeds) on a tiny random-weight model of a registry family
(Qwen2-Audio or the Qwen2.5-Omni thinker), three ways:

- naive: the whole prompt (audio included) run for every condition, answer generated (greedy,
  transformers' generate), as per-prompt harnesses do;
- naive scoring: the whole prompt run for every condition and label, no cache;
- cuealign: the audio prefix encoded once per utterance, every condition's suffix scored on its KV
  cache in batches, the tails of multi-token labels branched off each suffix's own cache;
- cuealign generate: the prefix encoded once, every condition decoded greedily in one batch from
  its cache (4 tokens), token-identical to the naive way's answers (checked here too).

    python benchmarks/inference_throughput.py [--family qwen2.5-omni] [--utterances N] [--seconds S] [--repeats R]

Also prints the floor set by the unique tokens: one prefix per utterance plus one suffix per
condition and label, in tokens, against the tokens each way processes.
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
PREFIX = "What emotion does the speaker express? Answer with one word from: angry, happy, neutral, sad."
LEVELS = ["VERY_LOW", "LOW", "MID", "HIGH", "VERY_HIGH"]


def suffixes(rng) -> list[str]:
    out = [""]
    for _ in range(25):
        tokens = "; ".join(
            f"{c}={rng.choice(LEVELS)}" for c in ("ENERGY", "PITCH", "BRIGHTNESS", "DYNAMICS", "FORMANTS")
        )
        out.append(f" Acoustic cues measured from the audio: {tokens}; VOICE_QUALITY=MODAL.")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="qwen2-audio", choices=["qwen2-audio", "qwen2.5-omni", "audio-flamingo-3"])
    parser.add_argument("--utterances", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0, help="audio length per utterance")
    parser.add_argument("--repeats", type=int, default=3, help="each way is timed this many times; the best counts")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        texts = [PREFIX, *suffixes(rng), " ".join(LABELS)] * 3
        path = build_tiny_alm(args.family, tmp, texts, hidden=args.hidden, layers=args.layers)
        backend = load_backend(model_entry(path, args.family, dtype="float32"))
        audios = [
            (0.1 * rng.standard_normal(int(16000 * args.seconds))).astype(np.float32) for _ in range(args.utterances)
        ]
        conditions = suffixes(rng)
        rows = args.utterances * len(conditions)

        def best(run) -> float:  # seconds, best of --repeats
            times = []
            for _ in range(args.repeats):
                backend.forget_prefixes()  # no utterance's prefix kept from the repeat before
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            return min(times)

        def whole(a, s):  # the whole prompt for one condition: nothing kept from the call before
            backend.forget_prefixes()
            return backend.generate_one(a, PREFIX, s, max_new_tokens=4)

        naive = best(lambda: [whole(a, s) for a in audios for s in conditions])
        batched = best(
            lambda: [backend.generate(a, PREFIX, conditions, max_new_tokens=4, batch_size=128) for a in audios]
        )
        one_by_one = [backend.generate_one(audios[0], PREFIX, s, max_new_tokens=4) for s in conditions]
        if backend.generate(audios[0], PREFIX, conditions, max_new_tokens=4, batch_size=128) != one_by_one:
            raise SystemExit("batched generation differs from transformers' generate one prompt at a time")
        naive_score = best(lambda: [backend.score_full(a, PREFIX, s, LABELS) for a in audios for s in conditions])
        ours = best(lambda: [backend.score(a, PREFIX, conditions, LABELS, batch_size=128) for a in audios])
        # The floor: the prefix once plus each condition's suffix once, timed with one-character
        # labels, which are single tokens (so nothing is run after the suffix).
        floor_seconds = best(
            lambda: [backend.score(a, PREFIX, conditions, ["a", "b", "c", "d"], batch_size=128) for a in audios]
        )

        prefix = backend.encode_prefix(audios[0], PREFIX)
        p = prefix.ids.shape[1]
        suffix_lengths = [len(backend.ids(c + prefix.tail)) for c in conditions]
        label_lengths = [len(backend.ids(x)) for x in LABELS]
        s, label_mean = np.mean(suffix_lengths), np.mean(label_lengths)
        floor = p + sum(suffix_lengths)
        ours_tokens = floor + sum(m - 1 for _ in suffix_lengths for m in label_lengths if m > 1)  # label tails
        full = sum(p + n + m for n in suffix_lengths for m in label_lengths)

    print(
        f"{args.family}: {args.utterances} utterances of {args.seconds:g} s x {len(conditions)} conditions"
        f" x {len(LABELS)} labels; "
        f"prefix {p} tokens, suffix {s:.0f}, label {label_mean:.1f}; hidden {args.hidden}, {args.layers} layers\n"
    )
    print("| way | seconds | utterance x condition / s | speed-up over naive |")
    print("|---|---|---|---|")
    for name, seconds in [
        ("naive (full prompt per condition, generate 4 tokens)", naive),
        ("cuealign generate (prefix cache, all conditions one greedy batch, 4 tokens)", batched),
        ("naive scoring (full prompt per condition and label)", naive_score),
        ("cuealign (prefix cache + batched scoring)", ours),
        ("floor: prefix once + each suffix once", floor_seconds),
    ]:
        print(f"| {name} | {seconds:.2f} | {rows / seconds:.1f} | {naive / seconds:.1f}x |")
    print(f"\ncuealign / floor: {ours / floor_seconds:.2f}x in time")
    print(
        f"tokens per utterance: naive scoring {full}, cuealign {ours_tokens}, floor {floor} "
        f"(labels of {label_lengths} tokens, their tails branched off each suffix's cache)"
    )


if __name__ == "__main__":
    main()
