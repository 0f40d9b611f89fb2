"""What inference leaves on the model's path per utterance: audio read/resampled and the
processor's work (chat template, tokens, log-mel features) in line with the model, or made ahead
in the read-ahead thread while the model works on the utterance before (the default).

predict_shard itself runs (the real code path) on a tiny random-weight model of a registry family
over wav files at 44.1 kHz (so every read resamples), the paper's 26 conditions, score mode, each
way timed from a fresh answer store. The model's share is small on a tiny model; on a GPU the
model's forward runs off the CPU, which is what ``--torch-threads 1`` approximates on 2 cores
(one core for the model, one for the read-ahead thread). ``--prefix-batch K`` adds a third way:
the prefixes of K utterances encoded in one forward pass (the models' ``prefix_batch``), whose
scores are checked to equal the default's up to float rounding.

    python benchmarks/read_ahead.py [--family qwen2-audio] [--utterances 24] [--seconds 4] [--torch-threads 1]
        [--prefix-batch 4] [--model PATH --device cuda]

``--model`` times a real checkpoint of the family (a local folder or a cached hub id) instead of
the tiny one, in its own dtype, on ``--device``: the measurement to make on a GPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from cuealign.cache import AnswerStore
from cuealign.corpora.audio import load_model_audio
from cuealign.interventions import Condition
from cuealign.models.inference import predict_shard
from cuealign.models.loader import load_backend
from cuealign.models.tiny import build_tiny_alm
from cuealign.workflow.config import model_entry

LABELS = ["angry", "happy", "neutral", "sad"]
PREFIX = "What emotion does the speaker express? Answer with one word from: angry, happy, neutral, sad."
LEVELS = ["VERY_LOW", "LOW", "MID", "HIGH", "VERY_HIGH"]


class InLine:
    """The backend without prepare: the processor runs where the model runs (before 2026-12-02)."""

    prepare = None

    def __init__(self, backend):
        self.backend = backend

    def __getattr__(self, name):
        return getattr(self.backend, name)


def prompts(folder: Path, utterances: int, seconds: float, rng) -> pd.DataFrame:
    rows = []
    for u in range(utterances):
        path = folder / f"u{u}.wav"
        sf.write(path, 0.1 * rng.standard_normal(int(44100 * seconds)), 44100)
        for c in range(26):
            tokens = "; ".join(f"{n}={rng.choice(LEVELS)}" for n in ("ENERGY", "PITCH", "BRIGHTNESS", "DYNAMICS"))
            rows.append(
                dict(
                    utt_id=f"u{u}",
                    **Condition("none" if c == 0 else f"shuffle_s{c}").as_row(),
                    audio="original",
                    prefix_text=PREFIX,
                    suffix_text="" if c == 0 else f" Acoustic cues measured from the audio: {tokens}.",
                    label=LABELS[u % 4],
                    split="test",
                    speaker=f"s{u % 4}",
                    path=str(path),
                    sha256=f"hash{u}",
                )
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="qwen2-audio", choices=["qwen2-audio", "qwen2.5-omni", "audio-flamingo-3"])
    parser.add_argument("--utterances", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prefix-batch", type=int, default=0, help="also time prefix_batch K (0: not)")
    parser.add_argument("--model", help="a real checkpoint of the family instead of a tiny random one")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    rng = np.random.default_rng(0)
    settings = {"dtype": "auto" if args.model else "float32", "device": args.device, "max_new_tokens": 4}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = args.model or build_tiny_alm(args.family, root / "model", [PREFIX, " ".join(LEVELS), " ".join(LABELS)])
        spec = model_entry(path, args.family, **settings)
        backend = load_backend(spec)
        table = prompts(root, args.utterances, args.seconds, rng)
        ways = {
            "processor in line (audio read ahead)": (InLine(backend), spec),
            "processor ahead (default)": (backend, spec),
        }
        if args.prefix_batch:
            ways[f"processor ahead, prefix_batch {args.prefix_batch}"] = (
                backend,
                spec | {"prefix_batch": args.prefix_batch},
            )
        times = {name: [] for name in ways}
        results = {}
        for repeat in range(args.repeats):  # the ways take turns
            for k, (name, (way, how)) in enumerate(ways.items()):
                backend.forget_prefixes()
                store = AnswerStore(root / f"store-{repeat}-{k}", "bench")
                start = time.perf_counter()
                results[name] = predict_shard(table, way, labels=LABELS, spec=how, cache=store, progress=False)
                times[name].append(time.perf_counter() - start)
        a, b, *batched = results.values()
        if not a.drop(columns="seconds").equals(b.drop(columns="seconds")):
            raise SystemExit("the two ways gave different predictions")
        logprobs = [f"logprob_{label}" for label in LABELS]
        differences = []
        for c in batched:  # one forward for several prefixes: the same up to float rounding
            gap = float(np.abs(c[logprobs].to_numpy(float) - b[logprobs].to_numpy(float)).max())
            differences.append((gap, float((c["pred"] != b["pred"]).mean())))
            if backend.dtype == "float32" and gap > 1e-5:
                raise SystemExit(f"prefix_batch gave scores {gap:.2g} away from one prefix at a time")
        # the parts, one utterance at a time, in line
        first = table.iloc[0]
        parts = {"audio read + resample": [], "processor (template, tokens, log-mel)": [], "model (score)": []}
        for _ in range(5):
            t0 = time.perf_counter()
            audio, _ = load_model_audio(
                first["path"], rate=backend.sampling_rate, window_s=backend.window_s, silence=False
            )
            t1 = time.perf_counter()
            prepared = backend.prepare(audio, PREFIX)
            t2 = time.perf_counter()
            backend.forget_prefixes()
            backend.score(audio, PREFIX, list(table["suffix_text"][:26]), LABELS, batch_size=32, prepared=prepared)
            t3 = time.perf_counter()
            for name, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                parts[name].append(seconds)
    n = args.utterances
    print(
        f"{args.family} ({args.model or 'tiny, random weights'}, {args.device}, {backend.dtype}): {n} utterances "
        f"of {args.seconds:g} s at 44.1 kHz x 26 conditions, score mode, torch threads {args.torch_threads}, "
        f"best of {args.repeats}\n"
    )
    print("| way | seconds | ms per utterance |")
    print("|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {min(t):.2f} | {1000 * min(t) / n:.0f} |")
    for gap, changed in differences:
        print(f"\nprefix_batch vs one at a time: scores {gap:.2g} apart at most, {changed:.2%} of answers changed")
    print("\n| part (one utterance, in line, best of 5) | ms |")
    print("|---|---|")
    for name, t in parts.items():
        print(f"| {name} | {1000 * min(t):.1f} |")


if __name__ == "__main__":
    main()
