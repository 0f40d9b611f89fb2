"""Any other corpus: a CSV or TSV with path, label, speaker and optional utt_id, gender, split."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from cuealign.corpora.common import (
    SPLITS,
    CorpusError,
    CorpusTable,
    apply_label_map,
    require_dir,
    require_unique_ids,
    resolve_inside,
)

log = logging.getLogger(__name__)

_REQUIRED = ("path", "label", "speaker")


def read_table_corpus(
    root: str | Path,
    *,
    table: str | Path,
    label_map: dict[str, str | None],
    default_split: str | None = None,
) -> CorpusTable:
    """Read a corpus table; paths are relative to ``root`` and may not leave it."""
    root = require_dir(Path(root).expanduser().resolve(), what="corpus root")
    table_path = Path(table).expanduser()
    sep = "\t" if table_path.suffix.lower() in {".tsv", ".tab"} else ","
    try:
        raw = pd.read_csv(table_path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8")
    except FileNotFoundError:
        raise CorpusError(f"corpus table {table_path} not found") from None
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{table_path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the table as UTF-8 "
            "(a spreadsheet's 'CSV UTF-8', or iconv -f latin1 -t utf-8)"
        ) from None
    except pd.errors.EmptyDataError:
        raise CorpusError(f"{table_path}: the table is empty; it needs a header and one row per utterance") from None
    except pd.errors.ParserError as exc:
        raise CorpusError(f"{table_path}: not a readable {'TSV' if sep == chr(9) else 'CSV'} table ({exc})") from None
    source = str(table_path)
    if raw.empty:
        raise CorpusError(f"{source}: a header and no rows; add one row per utterance")
    if missing := [column for column in _REQUIRED if column not in raw.columns]:
        raise CorpusError(
            f"{source}: missing columns {missing}; it has {list(raw.columns)} "
            f"(needed: {', '.join(_REQUIRED)}; optional: utt_id, gender, split)"
        )
    if (raw["path"] == "").any():
        rows = (raw.index[raw["path"] == ""] + 2).tolist()[:5]
        raise CorpusError(f"{source}: empty path on line(s) {rows}")
    utt_id = raw["utt_id"] if "utt_id" in raw else raw["path"].map(lambda p: str(Path(p).with_suffix("")))
    gender = raw["gender"] if "gender" in raw else pd.Series("", index=raw.index)
    gender = gender.astype(object).where(gender != "", None)
    if bad := sorted(set(gender.dropna()) - {"F", "M"}):
        raise CorpusError(f"{source}: gender must be F, M or empty, found {bad}")
    if "split" not in raw and default_split is None:
        raise CorpusError(
            f"{source}: no split column; add one (train/dev/test, speaker-disjoint) or set the corpus' "
            "default_split to the split every row belongs to"
        )
    split = raw["split"] if "split" in raw else pd.Series(default_split, index=raw.index)
    if bad := sorted(set(split) - set(SPLITS)):
        raise CorpusError(f"{source}: split must be one of {list(SPLITS)}, found {bad}")
    frame = pd.DataFrame(
        dict(
            utt_id=utt_id,
            path=[str(resolve_inside(root, p, source=source)) for p in raw["path"]],
            orig_label=raw["label"],
            speaker=raw["speaker"],
            gender=gender,
            split=split,
        )
    )
    require_unique_ids(frame, source=source)
    frame, dropped = apply_label_map(frame, label_map, source=source)
    log.info("%s: %d utterances kept, dropped by label map: %s", source, len(frame), dropped or "none")
    return CorpusTable(frame, dropped)
