"""Utterance x condition per second at the paper's design (26 conditions: none, aligned, conflict,
5 shuffles, 6 corruption levels x 3 seeds) on a tiny random-weight Qwen2-Audio, three ways:

- naive: the whole prompt (audio included) run for every condition, answer generated (greedy),
  as per-prompt harnesses do;
- naive scoring: the whole prompt run for every condition and label, no cache;
- cuealign: the audio prefix encoded once per utterance, every (condition, label) scored on its
  KV cache in batches.

    python benchmarks/inference_throughput.py [--utterances N] [--seconds S]

Also prints the floor set by the unique tokens: one prefix per utterance plus one suffix per
condition and label, in tokens, against the tokens each way processes.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from cuealign.backends import load_backend
from cuealign.backends.tiny import build_tiny_alm

LABELS = ["angry", "happy", "neutral", "sad"]
PREFIX = "What emotion does the speaker express? Answer with one word from: angry, happy, neutral, sad."
LEVELS = ["VERY_LOW", "LOW", "MID", "HIGH", "VERY_HIGH"]


def suffixes(rng) -> list[str]:
    out = [""]
    for _ in range(25):
        tokens = "; ".join(f"{c}={rng.choice(LEVELS)}" for c in ("ENERGY", "PITCH", "BRIGHTNESS", "DYNAMICS", "FORMANTS"))
        out.append(f"\nAcoustic cues measured from the audio: {tokens}; VOICE_QUALITY=MODAL.")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0, help="audio length per utterance")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_alm("qwen2-audio", tmp, [PREFIX, *suffixes(rng), " ".join(LABELS)] * 3, hidden=args.hidden, layers=args.layers)
        backend = load_backend({"family": "qwen2-audio", "path": str(path), "device": "cpu", "dtype": "float32",
                                "trust_remote_code": False})
        audios = [(0.1 * rng.standard_normal(int(16000 * args.seconds))).astype(np.float32) for _ in range(args.utterances)]
        conditions = suffixes(rng)
        rows = args.utterances * len(conditions)

        start = time.perf_counter()
        for audio in audios:
            for suffix in conditions:
                backend.generate(audio, PREFIX, [suffix], max_new_tokens=4)
        naive = time.perf_counter() - start

        start = time.perf_counter()
        for audio in audios:
            for suffix in conditions:
                backend.score_full(audio, PREFIX, suffix, LABELS)
        naive_score = time.perf_counter() - start

        start = time.perf_counter()
        for audio in audios:
            backend.score(audio, PREFIX, conditions, LABELS, batch_size=128)
        ours = time.perf_counter() - start

        # The floor: the prefix once plus each condition's suffix once (single-token labels need
        # nothing more), timed with one-character labels, which are single tokens.
        start = time.perf_counter()
        for audio in audios:
            backend.score(audio, PREFIX, conditions, ["a", "b", "c", "d"], batch_size=128)
        floor_seconds = time.perf_counter() - start

        prefix = backend.encode_prefix(audios[0], PREFIX)
        p = prefix.ids.shape[1]
        suffix_lengths = [len(backend.ids(c + prefix.tail)) for c in conditions]
        label_lengths = [len(backend.ids(x)) for x in LABELS]
        s, l = np.mean(suffix_lengths), np.mean(label_lengths)
        floor = p + sum(suffix_lengths)
        ours_tokens = floor + sum(n + m - 1 for n in suffix_lengths for m in label_lengths if m > 1)
        full = sum(p + n + m for n in suffix_lengths for m in label_lengths)

    print(f"{args.utterances} utterances of {args.seconds:g} s x {len(conditions)} conditions x {len(LABELS)} labels; "
          f"prefix {p} tokens, suffix {s:.0f}, label {l:.1f}; hidden {args.hidden}, {args.layers} layers\n")
    print("| way | seconds | utterance x condition / s | speed-up over naive |")
    print("|---|---|---|---|")
    for name, seconds in [("naive (full prompt per condition, generate 4 tokens)", naive),
                          ("naive scoring (full prompt per condition and label)", naive_score),
                          ("cuealign (prefix cache + batched scoring)", ours),
                          ("floor: prefix once + each suffix once", floor_seconds)]:
        print(f"| {name} | {seconds:.2f} | {rows / seconds:.1f} | {naive / seconds:.1f}x |")
    print(f"\ncuealign / floor: {ours / floor_seconds:.2f}x in time")
    print(f"tokens per utterance: naive scoring {full}, cuealign {ours_tokens}, floor {floor} "
          f"(labels of {label_lengths} tokens; with single-token labels cuealign is the floor)")


if __name__ == "__main__":
    main()
