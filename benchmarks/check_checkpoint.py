"""Check one real checkpoint end to end on a few utterances, on the machine that will run the study.

    python benchmarks/check_checkpoint.py --family qwen2-audio --path Qwen/Qwen2-Audio-7B-Instruct \
        --device cuda --dtype bfloat16 [--audio a.wav b.wav ...] [--utterances 4]

What it checks, with the study's default prompt and the paper's 26 conditions per utterance:
1. the model loads from its local folder or the Hugging Face cache (nothing is downloaded), with
   its own processor, chat template and audio window; the tokens each label is scored as;
2. split == joint: every prompt tokenises as a whole exactly as its cached prefix and its suffix
   do apart (the backend's own check; a failure is its error message);
3. cached == full: the label scores on the prefix cache equal those of the whole prompt prepared by
   the model's own processor with no cache (max difference, and whether the argmax agrees); and
   how the answer's probability splits between the labels' spellings (lower case, Capitalised,
   UPPER CASE), so that a user sees whether label_variants: case matters for this model;
4. batched generation from the prefix cache gives the same tokens as transformers' generate one
   prompt at a time;
5. throughput: utterance x condition per second in score mode (prefix cache, batched), in generate
   mode (one greedy batch per utterance), and the naive per-prompt scoring loop on one utterance.

It ends with a Markdown row for benchmarks/README.md ("Real checkpoints") naming the device and
the date. Exit status 1 when a check fails. Without --audio it uses synthetic voiced utterances.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time

import numpy as np
import torch

from cuealign.corpora.audio import load_model_audio
from cuealign.models.loader import load_backend
from cuealign.prompts import PromptTemplate
from cuealign.workflow.config import config_schema, model_entry

LEVELS = ["VERY_LOW", "LOW", "MID", "HIGH", "VERY_HIGH"]
CONCEPTS = ["ENERGY", "PITCH", "BRIGHTNESS", "DYNAMICS", "FORMANTS"]
QUALITIES = ["MODAL", "BREATHY", "PRESSED", "ROUGH", "CREAKY"]
# tolerance of cached vs full label log-probs by dtype (kernels differ between the two paths)
TOLERANCE = {"float32": 1e-3, "bfloat16": 0.25, "float16": 0.1}


def token_strings(rng: np.random.Generator, n: int = 25) -> list[str]:
    """n cue blocks like the study's (none is the empty one, added by the caller)."""
    return [
        "; ".join(f"{c}={rng.choice(LEVELS)}" for c in CONCEPTS) + f"; VOICE_QUALITY={rng.choice(QUALITIES)}"
        for _ in range(n)
    ]


def voiced(seed: int, seconds: float, rate: int) -> np.ndarray:
    """A harmonic tone with a falling pitch and noise: enough for a model to hear something."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    f0 = (110 + 60 * (seed % 3)) * (1 - 0.2 * t / seconds)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 8))
    return (0.2 * wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", required=True, choices=["qwen2-audio", "qwen2.5-omni", "audio-flamingo-3"])
    parser.add_argument("--path", required=True, help="local folder or a hub id in the local cache")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(TOLERANCE))
    parser.add_argument("--audio", nargs="*", default=[], help="wav files (default: synthetic utterances)")
    parser.add_argument("--utterances", type=int, default=4, help="synthetic utterances when no --audio")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each synthetic utterance")
    parser.add_argument("--labels", default="angry,happy,neutral,sad")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args(argv)
    labels = args.labels.split(",")
    spec = model_entry(args.path, args.family, revision=args.revision, device=args.device, dtype=args.dtype)
    failures: list[str] = []

    start = time.perf_counter()
    backend = load_backend(spec)
    loaded = time.perf_counter() - start
    print(f"1. loaded {args.path} ({args.family}, {args.dtype}) on {backend.device} in {loaded:.1f} s")
    print(f"   audio window {backend.window_s:g} s at {backend.sampling_rate} Hz")
    print(f"   label tokens: {backend.label_tokens(labels)}")

    defaults = {k: v["default"] for k, v in config_schema()["properties"]["prompt"]["properties"].items()}
    template = PromptTemplate(template=defaults["template"], cues=defaults["cues"], labels=tuple(labels))
    prefix = template.parts("")[0]
    suffixes = [template.parts(t)[1] for t in ["", *token_strings(np.random.default_rng(0))]]
    if args.audio:
        audios = [
            load_model_audio(path, rate=backend.sampling_rate, window_s=backend.window_s, silence=False)[0]
            for path in args.audio
        ]
    else:
        audios = [voiced(i, args.seconds, backend.sampling_rate) for i in range(args.utterances)]

    head, tail = backend.split_template(prefix)
    try:
        backend.check_split(head, [s + tail for s in suffixes])
        print(f"2. split == joint for all {len(suffixes)} prompts")
    except ValueError as exc:
        failures.append(f"split: {exc}")
        print(f"2. FAILED: {exc}")

    worst, agree = 0.0, True
    for audio in audios[:2]:
        cached = backend.score(audio, prefix, suffixes[:3], labels, batch_size=args.batch_size)
        for i, suffix in enumerate(suffixes[:3]):
            full = backend.score_full(audio, prefix, suffix, labels)
            worst = max(worst, float(np.abs(cached[i] - full).max()))
            agree &= int(np.argmax(cached[i])) == int(np.argmax(full))
    ok = worst <= TOLERANCE[args.dtype] and agree
    print(
        f"3. cached vs full: max |difference| {worst:.2e} (tolerance {TOLERANCE[args.dtype]:g}), argmax agrees: {agree}"
    )
    if not ok:
        failures.append(f"cached vs full: {worst:.3g}, argmax agrees {agree}")

    # 3b. how the answer's probability splits between spellings: where the capitalised one holds a
    # noticeable share, label_variants: case (their log-sum-exp) scores what the model means
    spellings = {"lower case": labels, "Capitalised": [x[:1].upper() + x[1:] for x in labels]}
    spellings["UPPER CASE"] = [x.upper() for x in labels]
    every = [x for group in spellings.values() for x in group]
    mass = np.zeros(len(every))
    for audio in audios[:2]:
        mass += np.exp(backend.score(audio, prefix, suffixes[:2], every, batch_size=args.batch_size)).sum(axis=0)
    mass /= 2 * min(2, len(audios))
    shares = {name: float(mass[k * len(labels) : (k + 1) * len(labels)].sum()) for k, name in enumerate(spellings)}
    print(
        "3b. probability of the first answer token on each spelling of the labels (mean over utterances and "
        "the none and first cue prompts): "
        + ", ".join(f"{name} {share:.3f}" for name, share in shares.items())
        + (
            f"; capitalised labels hold {shares['Capitalised'] / max(shares['lower case'], 1e-12):.1f}x the "
            "lower-case mass: set label_variants: case"
            if shares["Capitalised"] > 0.1 * shares["lower case"]
            else "; label_variants: exact loses little"
        )
    )

    some = suffixes[:4]
    batched = backend.generate(audios[0], prefix, some, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    single = [backend.generate_one(audios[0], prefix, s, max_new_tokens=args.max_new_tokens) for s in some]
    same = sum(a == b for a, b in zip(batched, single, strict=True))
    print(f"4. batched generation equals transformers' generate for {same} of {len(some)} prompts: {batched}")
    if same != len(some) and args.dtype == "float32":
        failures.append(f"generation: {same} of {len(some)} identical")

    def timed(run) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        begin = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - begin

    timed(lambda: backend.score(audios[0], prefix, suffixes, labels, batch_size=args.batch_size))  # warm-up
    rows = len(audios) * len(suffixes)
    score_s = timed(lambda: [backend.score(a, prefix, suffixes, labels, batch_size=args.batch_size) for a in audios])
    generate_s = timed(
        lambda: [
            backend.generate(a, prefix, suffixes, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
            for a in audios
        ]
    )
    naive_s = timed(lambda: [backend.score_full(audios[0], prefix, s, labels) for s in suffixes]) * len(audios)
    print(
        f"5. {len(audios)} utterances x {len(suffixes)} conditions: score {rows / score_s:.1f}/s, "
        f"generate {rows / generate_s:.1f}/s, naive per-prompt scoring {rows / naive_s:.1f}/s "
        f"({naive_s / score_s:.1f}x slower than score mode)"
    )
    card = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available() and "cuda" in str(backend.device)
        else (platform.processor() or platform.machine())
    )
    print("\n| date | device | model | dtype | score u x c/s | generate u x c/s | naive scoring u x c/s | max diff |")
    print(
        f"| {datetime.date.today()} | {card} | {args.path} | {args.dtype} | {rows / score_s:.1f} | "
        f"{rows / generate_s:.1f} | {rows / naive_s:.1f} | {worst:.1e} |"
    )
    if failures:
        print("\nFAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
