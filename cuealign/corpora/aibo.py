"""FAU-Aibo as distributed for the INTERSPEECH 2009 Emotion Challenge.

labels/IS2009EmotionChallenge/chunk_labels_5cl_corpus.txt holds ``<chunk> <A|E|N|P|R> <conf>``
lines; audio is wav/<chunk>.wav. Chunk ids start with school and child (Ohm_01_..., Mont_13_...):
that pair is the speaker. Ohm is train (less a speaker-disjoint dev part), Mont is test. Children
have no gender-specific binning, so gender stays empty.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cuealign.corpora.common import (
    CorpusError,
    CorpusTable,
    apply_label_map,
    read_annotation_text,
    require_dir,
    require_unique_ids,
    resolve_inside,
)

log = logging.getLogger(__name__)

_SCHOOL_SPLIT = {"Ohm": "train", "Mont": "test"}


def aibo_annotation_files(root: str | Path, *, labels: str) -> list[Path]:
    path = resolve_inside(Path(root), labels, source="FAU-Aibo labels")
    if not path.is_file():
        raise CorpusError(f"FAU-Aibo: label file {path} not found. Set the corpus' labels (relative to root).")
    return [path]


def _parse_labels(path: Path) -> pd.DataFrame:
    records = []
    for number, line in enumerate(read_annotation_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) not in (2, 3):
            raise CorpusError(f"{path}:{number}: expected '<chunk> <label> [confidence]', got {line!r}")
        school = fields[0].split("_", 1)[0]
        if school not in _SCHOOL_SPLIT:
            if number == 1:  # a header line
                continue
            raise CorpusError(f"{path}:{number}: chunk {fields[0]!r} belongs to neither Ohm nor Mont")
        parts = fields[0].split("_")
        records.append(dict(utt_id=fields[0], orig_label=fields[1], speaker=f"{parts[0]}_{parts[1]}", school=school))
    if not records:
        raise CorpusError(f"{path}: no labelled chunks")
    return pd.DataFrame.from_records(records)


def _dev_speakers(ohm_speakers: list[str], *, fraction: float, seed: int) -> set[str]:
    count = int(round(fraction * len(ohm_speakers)))
    rng = np.random.default_rng(seed)
    return set(rng.choice(sorted(ohm_speakers), size=count, replace=False).tolist())


def read_aibo(
    root: str | Path,
    *,
    label_map: dict[str, str | None],
    labels: str = "labels/IS2009EmotionChallenge/chunk_labels_5cl_corpus.txt",
    dev_fraction: float = 0.2,
    dev_speakers: list[str] | None = None,
    seed: int = 0,
) -> CorpusTable:
    """Read FAU-Aibo's 5-class chunk labels with the Ohm/Mont split and a speaker-disjoint dev part."""
    root = Path(root).resolve()
    require_dir(root / "wav", what="FAU-Aibo audio")
    (label_path,) = aibo_annotation_files(root, labels=labels)
    table = _parse_labels(label_path)
    require_unique_ids(table, source=str(label_path))
    ohm = sorted(table.loc[table["school"] == "Ohm", "speaker"].unique())
    if dev_speakers is not None:
        if stray := sorted(set(dev_speakers) - set(ohm)):
            raise CorpusError(f"FAU-Aibo: dev_speakers {stray} are not Ohm speakers of {label_path}")
        dev = set(dev_speakers)
    else:
        dev = _dev_speakers(ohm, fraction=dev_fraction, seed=seed)
    split = table["school"].map(_SCHOOL_SPLIT).where(~table["speaker"].isin(dev), "dev")
    table = table.assign(path=[str(root / "wav" / f"{utt}.wav") for utt in table["utt_id"]], gender=None, split=split)
    table, dropped = apply_label_map(table, label_map, source=str(label_path))
    log.info("FAU-Aibo: %d chunks kept, dev speakers %s", len(table), sorted(dev))
    return CorpusTable(table, dropped)
