"""What every importer shares: the table it returns, label mapping, path containment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

IDENTITY_COLUMNS = ["utt_id", "path", "label", "orig_label", "speaker", "gender", "split"]
SPLITS = ("train", "dev", "test")


class CorpusError(ValueError):
    """The corpus on disk does not match what its importer expects."""


@dataclass
class CorpusTable:
    """An importer's result: one row per kept utterance plus the counts of labels dropped on purpose."""

    table: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.table = self.table[IDENTITY_COLUMNS].reset_index(drop=True)
        self.table["speaker"] = normalise_speakers(self.table["speaker"])


def normalise_speakers(speakers: pd.Series) -> pd.Series:
    """Speaker ids without surrounding whitespace ('F05 ' is F05); ids that still differ only in
    case ('F05', 'f05') or are empty are an error naming them, since they would count as several
    speakers (or one) in every speaker-clustered statistic."""
    cleaned = speakers.astype(str).str.strip()
    if (cleaned == "").any():
        raise CorpusError(
            f"{int((cleaned == '').sum())} utterances have an empty speaker id; give every utterance its speaker"
        )
    spellings = cleaned.groupby(cleaned.str.casefold()).unique()
    clashes = [sorted(v) for v in spellings if len(v) > 1]
    if clashes:
        counts = cleaned.value_counts()
        shown = "; ".join(
            " and ".join(f"{name!r} ({counts[name]} utterances)" for name in group) for group in clashes[:5]
        )
        raise CorpusError(
            f"speaker ids that differ only in case: {shown}. Spell each speaker one way in the corpus table "
            "(they would count as different speakers)"
        )
    return cleaned


def apply_label_map(
    table: pd.DataFrame, label_map: dict[str, str | None], *, source: str
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Map ``orig_label`` to ``label``; rows mapped to None are dropped and counted.

    A raw label missing from the map is an error: silently losing a class is worse than stopping.
    """
    unknown = sorted(set(table["orig_label"]) - set(label_map))
    if unknown:
        counts = table["orig_label"].value_counts()
        listed = ", ".join(f"{label!r} ({counts[label]} rows)" for label in unknown)
        raise CorpusError(
            f"{source}: labels not in label_map: {listed}. Add each to the corpus' label_map "
            "(map it to null to drop it on purpose)."
        )
    if empty := sorted(raw for raw, label in label_map.items() if label is not None and not str(label).strip()):
        raise CorpusError(
            f"{source}: label_map maps {empty} to an empty class name; give the class a name, or null to drop"
        )
    mapped = table.assign(label=table["orig_label"].map(label_map))
    dropped_rows = mapped["label"].isna()
    dropped = mapped.loc[dropped_rows, "orig_label"].value_counts().sort_index()
    return mapped.loc[~dropped_rows].reset_index(drop=True), {k: int(v) for k, v in dropped.items()}


# byte-order marks, longest first (UTF-32 LE starts with UTF-16 LE's)
_BOMS = [
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
]


def read_annotation_text(path: Path) -> str:
    """An annotation file's text, decoded by its byte-order mark (UTF-8, UTF-16 or UTF-32, as an
    editor may save it), else as UTF-8. Anything else is an error naming the file and the fix:
    replacing undecodable bytes would garble lines, and a garbled line is a lost utterance."""
    data = Path(path).read_bytes()
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                problem = f"starts with a {encoding} byte-order mark but is not {encoding}: {exc}"
                raise CorpusError(f"{path}: {problem}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        guess = "UTF-16 without a byte-order mark" if data.count(b"\x00") > len(data) // 4 else "not UTF-8"
        raise CorpusError(
            f"{path}: {guess} (byte {data[exc.start]:#04x} at offset {exc.start}); save it as UTF-8, e.g. "
            f"`iconv -f <its encoding> -t utf-8 {path.name}`, or restore it from the release"
        ) from None


def resolve_inside(root: Path, relative: str, *, source: str) -> Path:
    """``root / relative`` made absolute, refusing a path that leaves ``root`` (by ../ or absolute).

    The check is lexical, so a corpus whose files are symlinks into a data store still works.
    """
    root = root.resolve()
    path = Path(os.path.normpath(root / relative))
    if not path.is_relative_to(root):
        raise CorpusError(
            f"{source}: path {relative!r} resolves to {path}, outside the corpus root {root}. "
            "Give paths relative to the root, inside it."
        )
    return path


def require_dir(path: Path, *, what: str) -> Path:
    if not path.is_dir():
        raise CorpusError(f"{what}: {path} is not a folder. Check the corpus' root in config.yaml.")
    return path


def require_unique_ids(table: pd.DataFrame, *, source: str) -> None:
    dup = table["utt_id"][table["utt_id"].duplicated(keep=False)]
    if len(dup):
        shown = ", ".join(sorted(set(dup))[:5])
        raise CorpusError(
            f"{source}: {dup.nunique()} duplicate utterance ids ({shown}{', ...' if dup.nunique() > 5 else ''}); "
            "every utterance needs its own id."
        )
