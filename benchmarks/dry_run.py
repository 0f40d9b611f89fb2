"""How long `snakemake -n` of the default config takes: the parse (config checks included) and the
DAG, what every SLURM job pays again when it re-parses the workflow. Optionally against another
checkout of the workflow (say the commit before a change) in the same run, so both numbers come
from the same machine state.

    python benchmarks/dry_run.py [--repeats 5] [--against REV]

With --against, REV is checked out into a temporary git worktree, and its package is put first on
PYTHONPATH for its runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def dry_run_seconds(workflow: Path, repeats: int, *, pythonpath: str | None = None) -> list[float]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", "--quiet"],
            cwd=workflow,
            env=env,
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - start)
    return times


def torch_imported_at_parse(workflow: Path, *, pythonpath: str | None = None) -> bool:
    """Whether the dry run imports torch (Python's own import log, -X importtime)."""
    env = dict(os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {}))
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "snakemake", "-n", "--quiet"],
        cwd=workflow,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return any(line.split("|")[-1].strip() == "torch" for line in out.stderr.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--against", help="a git revision to measure too (e.g. the commit before a change)")
    args = parser.parse_args()
    runs = [("this checkout", REPO, None)]
    with tempfile.TemporaryDirectory() as scratch:
        if args.against:
            other = Path(scratch) / "other"
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", str(other), args.against],
                check=True,
                capture_output=True,
            )
            runs.append((args.against, other, str(other)))
        print("| workflow | torch imported at parse | best (s) | median (s) |")
        print("|---|---|---|---|")
        try:
            for name, workflow, pythonpath in runs:
                times = dry_run_seconds(workflow, args.repeats, pythonpath=pythonpath)
                torch = torch_imported_at_parse(workflow, pythonpath=pythonpath)
                print(f"| {name} | {torch} | {min(times):.2f} | {statistics.median(times):.2f} |")
        finally:
            if args.against:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(runs[-1][1])], capture_output=True
                )


if __name__ == "__main__":
    main()
