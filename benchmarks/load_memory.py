"""Peak host memory when loading a bfloat16 checkpoint with dtype float32 (the former default)
and auto (the default: the checkpoint's own dtype), through cuealign's loader.

Builds a random-weight Qwen2-Audio of the real class, ~285M parameters (text and audio hidden
1024, 16 layers each), saved in bfloat16 as the released checkpoints are; each way loads it in a
fresh process and reports its peak RSS, less that of a process that only imported the libraries.

    python benchmarks/load_memory.py [--hidden 1024] [--layers 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

LOAD = """
import json, sys
from cuealign.models.loader import load_backend
from cuealign.workflow.config import model_entry
dtype = sys.argv[2]
if dtype != "none":
    backend = load_backend(model_entry(sys.argv[1], dtype=dtype))
    loaded = backend.dtype
else:
    import torch, transformers  # the libraries alone
    loaded = None
# VmHWM, not ru_maxrss: Linux carries the parent's ru_maxrss across exec
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_mb": peak / 1024, "loaded": loaded}))
"""


def build(folder: Path, hidden: int, layers: int) -> tuple[int, float]:
    import torch

    from cuealign.models.tiny import build_tiny_alm

    build_tiny_alm("qwen2-audio", folder, ["what emotion does the speaker express"], hidden=hidden, layers=layers)
    from transformers import Qwen2AudioForConditionalGeneration

    model = Qwen2AudioForConditionalGeneration.from_pretrained(folder, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 2**20
    return sum(p.numel() for p in model.parameters()), size


def load(folder: Path, dtype: str) -> dict:
    done = subprocess.run([sys.executable, "-c", LOAD, str(folder), dtype], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        parameters, size = build(folder, args.hidden, args.layers)
        base = load(folder, "none")["peak_mb"]
        print(
            f"{parameters / 1e6:.0f}M parameters, {size:.0f} MiB of bfloat16 safetensors; "
            f"libraries alone {base:.0f} MB\n"
        )
        print("| dtype asked | loaded as | peak RSS (MB) | above the libraries (MB) |")
        print("|---|---|---|---|")
        for dtype in ("float32", "auto"):
            result = load(folder, dtype)
            print(f"| {dtype} | {result['loaded']} | {result['peak_mb']:.0f} | {result['peak_mb'] - base:.0f} |")


if __name__ == "__main__":
    main()
