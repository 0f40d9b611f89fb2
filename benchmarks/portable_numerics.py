"""What portable numerics cost: one training step of the demo ALM (forward and backward of a batch
of 16 utterances) with the native kernels and with portable ones, at the released 30 s audio
window and at the demo's 6 s, each in a fresh process (the kernels are chosen per process).

    python benchmarks/portable_numerics.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

STEP = """
import json, sys, time
import numpy as np
from cuealign.models.numerics import setup_numerics
numerics, folder = sys.argv[1], sys.argv[5]
threads, window, repeats = map(int, sys.argv[2:5])
setup_numerics(numerics, "cpu", threads=threads)
import torch
from cuealign.models.registry import family
from cuealign.models.tiny import build_tiny_alm
from cuealign.models.transformers_alm import TransformersALM
text = "What emotion does the speaker express? Answer with one word from: angry, happy, neutral, sad."
path = build_tiny_alm("qwen2-audio", folder, [text] * 3, hidden=32, layers=2, vocab_size=600, window_s=window)
alm = TransformersALM(str(path), family=family("qwen2-audio"), device="cpu", dtype="auto")
prefix, _ = alm.prefix_inputs(np.random.default_rng(0).standard_normal(40000).astype("float32") * 0.1, text)
inputs = {k: torch.cat([v] * 16) for k, v in prefix.items()}
alm.model.train()
def step():
    alm.model(**inputs).logits.float().log_softmax(-1)[:, -1, 5].sum().backward()
step()
times = []
for _ in range(repeats):
    start = time.perf_counter(); step(); times.append(time.perf_counter() - start)
print(json.dumps({"seconds": min(times), "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"one training step, batch 16, best of {args.repeats} ({time.strftime('%Y-%m-%d')})\n")
    print("| audio window | numerics | threads | kernels | seconds per step |")
    print("|---|---|---|---|---|")
    for window in (30, 6):
        for numerics, threads in (("native", 2), ("native", 1), ("portable", 1)):
            with tempfile.TemporaryDirectory() as folder:
                out = subprocess.run(
                    [sys.executable, "-c", STEP, numerics, str(threads), str(window), str(args.repeats), folder],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            print(f"| {window} s | {numerics} | {threads} | {row['capability']} | {row['seconds']:.2f} |")


if __name__ == "__main__":
    main()
