"""The answer store at a million answers: writes (one transaction per utterance of 33 conditions,
as inference commits them, spread over the writers of 8 inference jobs), look-ups from a fresh
store (33 keys at a time, as an utterance asks), the files it leaves and their size; against the
former one-JSON-file-per-answer cache on a share of the answers (its per-answer cost, and the
files a million would make).

    python benchmarks/answer_store.py [--answers 1000000] [--json-answers 50000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from cuealign.cache import AnswerStore, KeyedJsonCache, content_key

CONDITIONS = 33
WRITERS = 8


def answer(i: int) -> dict:
    logprobs = np.random.default_rng(i).normal(size=4).tolist()
    return {"pred": "neutral", "raw_output": "neutral", "logprobs": logprobs, "seconds": 0.05, "audio_policy": "full"}


def files_and_bytes(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_blocks * 512 for p in files)  # on disk: a small file takes a block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=1_000_000)
    parser.add_argument("--json-answers", type=int, default=50_000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    keys = [content_key({"answer": i}) for i in range(args.answers)]
    values = [answer(i % 1000) for i in range(args.answers)]
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        utterances = range(0, args.answers, CONDITIONS)
        start = time.perf_counter()
        stores = [AnswerStore(root / "store", "predictions", writer=f"demo-model-{w}") for w in range(WRITERS)]
        for n, first in enumerate(utterances):
            stores[n % WRITERS].put_many(
                list(zip(keys[first : first + CONDITIONS], values[first : first + CONDITIONS], strict=True))
            )
        for store in stores:
            store.close()
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        reader = AnswerStore(root / "store", "predictions", writer="reader")
        found = 0
        for first in utterances:
            found += sum(v is not None for v in reader.get_many(keys[first : first + CONDITIONS]))
        read_s = time.perf_counter() - start
        assert found == args.answers
        files, size = files_and_bytes(root / "store")
        rows.append(("answer store (SQLite, 8 writers)", args.answers, write_s, read_s, files, size))

        count = min(args.json_answers, args.answers)
        cache = KeyedJsonCache(root / "json", "predictions")
        start = time.perf_counter()
        for key, value in zip(keys[:count], values[:count], strict=True):
            cache.put(key, value)
        json_write = time.perf_counter() - start
        start = time.perf_counter()
        assert all(cache.get(key) is not None for key in keys[:count])
        json_read = time.perf_counter() - start
        files, size = files_and_bytes(root / "json")
        rows.append(("one JSON file per answer (former)", count, json_write, json_read, files, size))
    print("| store | answers | write s | look-up s | writes/s | look-ups/s | files | MB on disk |")
    print("|---|---|---|---|---|---|---|---|")
    for name, n, w, r, files, size in rows:
        print(f"| {name} | {n:,} | {w:.1f} | {r:.1f} | {n / w:,.0f} | {n / r:,.0f} | {files:,} | {size / 2**20:.0f} |")
    name, n, w, r, files, size = rows[1]
    scale = args.answers / n
    print(
        f"| one JSON file per answer, projected | {args.answers:,} | {w * scale:.0f} | {r * scale:.0f} | "
        f"{n / w:,.0f} | {n / r:,.0f} | {int(files * scale):,} | {size * scale / 2**20:.0f} |"
    )


if __name__ == "__main__":
    main()
