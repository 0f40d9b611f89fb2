"""LLD extraction throughput: cuealign's extract_lld_means (1 worker, 2 threads, 2 processes)
against a bare opensmile loop over the same files.

    python benchmarks/lld_extraction.py [--files N] [--repeats R]

Generates a synthetic corpus in a temp folder (so the numbers are reproducible anywhere), runs
each variant R times and prints a Markdown row per variant: seconds (best of R), files/s, the
real-time factor, the overhead over the bare loop and the parallel efficiency of 2 threads and
2 processes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import opensmile
import pandas as pd

from cuealign.corpora import read_corpus
from cuealign.corpora.manifest import build_manifest
from cuealign.corpora.synthesis import generate_corpus
from cuealign.features import extract_lld_means


def bare_loop(paths: list[str]) -> None:
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.LowLevelDescriptors
    )
    for path in paths:
        smile.process_file(path)


def bare_halves(paths: list[str]) -> None:
    """The bare loop in two processes, each over half the files, started before the clock: what
    the machine gives two independent openSMILE loops (the ceiling of any pool)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    halves = [context.Process(target=bare_loop, args=(paths[k::2],)) for k in (0, 1)]
    for half in halves:
        half.start()
    for half in halves:
        half.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers-per-gender", type=int, default=4)
    parser.add_argument("--utterances-per-class", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_corpus(
            root,
            female_speakers=args.speakers_per_gender,
            male_speakers=args.speakers_per_gender,
            utterances_per_class=args.utterances_per_class,
        ).to_csv(root / "ground_truth.csv", index=False)
        manifest, _ = build_manifest(read_corpus({"type": "synthetic", "root": str(root)}), progress=False)
        paths = manifest["path"].tolist()
        audio_s = float(manifest["duration_s"].sum())
        # no cache: this measures extraction, not cache hits; the ways take turns in each repeat
        ways = {
            "bare opensmile loop (1 thread)": lambda: bare_loop(paths),
            "bare opensmile loop, 2 independent processes (the machine's ceiling)": lambda: bare_halves(paths),
            "cuealign extract_lld_means (1 worker)": lambda: extract_lld_means(manifest, threads=1, progress=False),
            "cuealign extract_lld_means (2 threads)": lambda: extract_lld_means(
                manifest, threads=2, progress=False, pool="threads"
            ),
            "cuealign extract_lld_means (2 processes)": lambda: extract_lld_means(
                manifest, threads=2, progress=False, pool="processes"
            ),
        }
        bare_loop(paths)  # warm the page cache: every way reads the files from memory
        times = {name: [] for name in ways}
        for _ in range(args.repeats):
            for name, run in ways.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        results = {name: min(t) for name, t in times.items()}
    bare = results["bare opensmile loop (1 thread)"]
    one = results["cuealign extract_lld_means (1 worker)"]
    print(f"{len(paths)} files, {audio_s:.0f} s of audio, best of {args.repeats}\n")
    print("| variant | seconds | files/s | real-time factor |")
    print("|---|---|---|---|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.2f} | {len(paths) / seconds:.1f} | {seconds / audio_s:.4f} |")
    print(f"\noverhead of the pipeline over the bare loop (1 worker): {100 * (one / bare - 1):+.1f} %")
    ceiling = bare / (2 * results["bare opensmile loop, 2 independent processes (the machine's ceiling)"])
    print(f"two independent bare loops: {ceiling:.2f} of linear (the machine's ceiling for this work)")
    for pool in ("threads", "processes"):
        print(f"parallel efficiency at 2 {pool}: {one / (2 * results[f'cuealign extract_lld_means (2 {pool})']):.2f}")


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    main()
