"""Peak memory of the audio check (cuealign.corpora.audio.check_audio) on a long multichannel file and on
a WAV whose header claims far more audio than the file holds.

    python benchmarks/audio_check_memory.py [--minutes 20] [--rate 48000] [--channels 6]

Each check runs in a fresh process; its peak resident set size (ru_maxrss) is reported beside
that of a process that only imports cuealign.corpora.audio (the baseline).
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

CHILD = """
import resource, sys, time
from cuealign.corpora.audio import check_audio
start = time.perf_counter()
info = check_audio(sys.argv[1]) if len(sys.argv) > 1 else None
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
print(f"{time.perf_counter() - start:.1f} s", info.status if info else "import only")
"""


def peak_rss_mb(*args: str) -> tuple[float, str]:
    """The child's own peak resident set size (ru_maxrss, kB on Linux) and what it said."""
    out = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)
    rss, said = out.stdout.strip().split("\n", 1)
    return int(rss) / 1024, said


def long_file(path: Path, minutes: float, rate: int, channels: int) -> None:
    """A voiced tone with pauses, minutes long, PCM 16, written in blocks."""
    t = np.arange(rate) / rate
    second = 0.3 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    with sf.SoundFile(path, "w", rate, channels, subtype="PCM_16") as out:
        for _ in range(int(minutes * 60)):
            out.write(np.repeat(second[:, None], channels, axis=1))


def claims_4_gb(path: Path, *, sparse: bool) -> None:
    """A WAV whose header says its data chunk holds 4 GB: 4 KB on disk, either cut off there or
    extended to the claimed size as a sparse file (4 KB of blocks, 4 GB of apparent size)."""
    data = bytes(4096)
    claimed = 0xFFFFFF00
    header = b"RIFF" + struct.pack("<I", claimed + 36) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    header += b"data" + struct.pack("<I", claimed)
    with open(path, "wb") as out:
        out.write(header + data)
        if sparse:
            out.truncate(len(header) + claimed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--channels", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        baseline, _ = peak_rss_mb()
        long = Path(folder) / "long.wav"
        start = time.perf_counter()
        long_file(long, args.minutes, args.rate, args.channels)
        print(f"wrote {long.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - start:.0f} s")
        whole, said = peak_rss_mb(str(long))
        print(f"| {args.minutes:g} min, {args.rate} Hz, {args.channels} channels | {whole:.0f} MB | {said} |")
        for sparse in (False, True):
            fake = Path(folder) / "claims.wav"
            claims_4_gb(fake, sparse=sparse)
            claimed, said = peak_rss_mb(str(fake))
            shape = "sparse, 4 GB apparent size" if sparse else "cut off at 4 KB"
            print(f"| header claims 4 GB ({shape}) | {claimed:.0f} MB | {said} |")
        print(f"| (import only) | {baseline:.0f} MB | |")


if __name__ == "__main__":
    main()
