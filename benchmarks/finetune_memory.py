"""Peak memory of fine-tuning against the size of the train set.

    python benchmarks/finetune_memory.py [--sizes 500 1000 2000 4300] [--seconds 2] [--eager-up-to 1000]
        [--ways lazy cached eager] [--cache-mb 2048]

A synthetic corpus of distinct wav files (noise-excited harmonic tones, --seconds long) is written
once; for each size a fresh process trains one epoch of a tiny random-weight Qwen2-Audio (hidden
32, 2 layers, batch 16) through cuealign.models.finetune.train and reports its peak RSS: "lazy"
featurises each batch as it comes (no cache), "cached" as the stage does by default (a feature
cache of --cache-mb, least recently used out), and, for contrast, "eager" featurises every
example up front first, as the fine-tuning stage did before (the processor's 30 s Whisper
features are 1.5 MB per example whatever the audio's length: 6.6 GB at IEMOCAP's ~4,300 train
utterances), run only up to --eager-up-to utterances.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from cuealign.workflow.config import model_entry

LABELS = ["angry", "happy", "neutral", "sad"]
PREFIX = "What emotion does the speaker express? Answer with one word from: angry, happy, neutral, sad."


def write_corpus(folder: Path, n: int, seconds: float) -> list[str]:
    paths = []
    for i in range(n):
        path = folder / f"u{i:05d}.wav"
        if not path.is_file():
            rng = np.random.default_rng(i)
            t = np.arange(int(16000 * seconds)) / 16000
            phase = 2 * np.pi * np.cumsum(np.full(t.size, 100 + i % 150)) / 16000
            wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2 + 0.01 * rng.standard_normal(t.size)
            sf.write(path, wave.astype(np.float32), 16000)
        paths.append(str(path))
    return paths


def child(folder: str, n: int, way: str, cache_mb: float) -> None:
    import torch

    from cuealign.models.finetune import Example, FeatureCache, collate, train
    from cuealign.models.loader import load_backend
    from cuealign.models.tiny import build_tiny_alm

    torch.set_num_threads(2)
    paths = sorted(str(p) for p in Path(folder, "wav").glob("*.wav"))[:n]
    suffix = " Acoustic cues measured from the audio: ENERGY=HIGH; PITCH=LOW; VOICE_QUALITY=MODAL."
    model = build_tiny_alm("qwen2-audio", Path(folder, f"model-{n}-{way}"), [PREFIX, suffix, " ".join(LABELS)] * 3)
    alm = load_backend(model_entry(model, dtype="float32"))
    examples = [
        Example(f"u{i}", c, i % 4, path, False, PREFIX, suffix if c == "aligned" else "", LABELS[i % 4])
        for i, path in enumerate(paths)
        for c in ("none", "aligned")
    ]
    held = [collate(alm, [e]) for e in examples] if way == "eager" else None  # the former eager featurisation
    features = FeatureCache(cache_mb) if way == "cached" else None
    start = time.perf_counter()
    history = train(
        alm, examples, mix={"none": 1, "aligned": 1}, epochs=1, batch_size=16, learning_rate=1e-3, features=features
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "n": n,
                "way": way,
                "peak_mb": peak_mb,
                "steps": len(history),
                "seconds": time.perf_counter() - start,
                "held": len(held or []),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 4300])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--eager-up-to", type=int, default=1000)
    parser.add_argument("--ways", nargs="+", default=["lazy", "cached", "eager"])
    parser.add_argument("--cache-mb", type=float, default=2048)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2], args.cache_mb)
        return
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "wav").mkdir()
        write_corpus(Path(tmp) / "wav", max(args.sizes), args.seconds)
        print("| train utterances | featurisation | peak RSS (MB) | steps | seconds |")
        print("|---|---|---|---|---|")
        for n in args.sizes:
            for way in args.ways:
                if way == "eager" and n > args.eager_up_to:
                    continue
                out = subprocess.run(
                    [sys.executable, __file__, "--child", tmp, str(n), way, "--cache-mb", str(args.cache_mb)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"| {n} | {way} | {row['peak_mb']:.0f} | {row['steps']} | {row['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
