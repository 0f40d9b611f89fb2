"""The synthetic corpus as a corpus: read the ground-truth table cuealign.corpora.synthesis wrote."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cuealign.corpora.common import CorpusError, CorpusTable, require_unique_ids, resolve_inside

GROUND_TRUTH = "ground_truth.csv"
# the generator's classes (cuealign.corpora.synthesis), here so that the workflow knows a synthetic corpus'
# size when it builds the DAG without importing the generator
CLASSES: tuple[str, ...] = ("angry", "happy", "neutral", "sad")


def synthetic_size(options: dict) -> int:
    """Utterances a synthetic corpus with these (validated) options holds."""
    return (options["female_speakers"] + options["male_speakers"]) * options["utterances_per_class"] * len(CLASSES)


def synthetic_split_size(options: dict, split: str) -> int:
    """Utterances of ``split`` (train, dev, test or all) in a synthetic corpus with these options:
    the last test_speakers_per_gender of each gender are test, the dev_speakers_per_gender before
    them dev (cuealign.corpora.synthesis.assign_splits)."""
    per_speaker = options["utterances_per_class"] * len(CLASSES)
    speakers = options["female_speakers"] + options["male_speakers"]
    test, dev = 2 * options["test_speakers_per_gender"], 2 * options["dev_speakers_per_gender"]
    count = {"test": test, "dev": dev, "train": speakers - test - dev, "all": speakers}[split]
    return max(count, 0) * per_speaker


def read_synthetic_corpus(root: str | Path, **_generation: object) -> CorpusTable:
    """Read ``root``/ground_truth.csv (generation options are the generator's, not needed here)."""
    root = Path(root).resolve()
    table_path = root / GROUND_TRUTH
    if not table_path.is_file():
        raise CorpusError(f"synthetic corpus: {table_path} not found; the synthesize_corpus rule writes it")
    truth = pd.read_csv(table_path, dtype={"gender": str})
    require_unique_ids(truth, source=str(table_path))
    table = truth.assign(
        path=[str(resolve_inside(root, p, source=str(table_path))) for p in truth["path"]],
        orig_label=truth["label"],
    )
    return CorpusTable(table)
