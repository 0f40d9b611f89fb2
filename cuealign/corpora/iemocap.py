"""IEMOCAP in its release layout.

SessionN/dialog/EmoEvaluation/<dialog>.txt holds lines ``[start - end]<TAB>utt_id<TAB>emo<TAB>[V, A, D]``;
the audio is SessionN/sentences/wav/<dialog>/<utt_id>.wav. The speaker of Ses01F_impro01_M003 is
the male actor of session 1 (the letter of the last field, not of the dialog).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from cuealign.corpora.common import (
    CorpusError,
    CorpusTable,
    apply_label_map,
    read_annotation_text,
    require_dir,
    require_unique_ids,
)

log = logging.getLogger(__name__)

_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\t(?P<utt>\S+)\t(?P<emo>\S+)\t\[")
_UTT = re.compile(r"^Ses(?P<session>\d\d)[FM]_.+_(?P<gender>[FM])\d+$")


def iemocap_annotation_files(root: str | Path, *, sessions: list[int]) -> list[Path]:
    """The EmoEvaluation files of the given sessions, in a fixed order."""
    root = Path(root)
    files: list[Path] = []
    for session in sorted(sessions):
        folder = require_dir(root / f"Session{session}" / "dialog" / "EmoEvaluation", what=f"IEMOCAP session {session}")
        found = sorted(folder.glob("*.txt"))
        if not found:
            raise CorpusError(f"IEMOCAP session {session}: no annotation files (*.txt) in {folder}")
        files.extend(found)
    return files


def _parse_evaluation(path: Path) -> list[tuple[str, str]]:
    """(utterance, raw label) of every turn line ('[start - end]<TAB>utt<TAB>label<TAB>[V, A, D]').
    Evaluator and attribute lines are skipped; a line that opens like a turn line and does not
    parse (tabs turned into spaces by an editor, a cut line) is an error naming the file and line,
    since skipping it would silently lose an utterance."""
    rows = []
    for number, line in enumerate(read_annotation_text(path).splitlines(), start=1):
        if match := _LINE.match(line):
            rows.append((match["utt"], match["emo"]))
        elif line.lstrip().startswith("["):
            raise CorpusError(
                f"{path}:{number}: a turn line that does not parse: {line!r}. IEMOCAP's turn lines are "
                "'[start - end]<TAB>utterance<TAB>label<TAB>[V, A, D]' (tab-separated); restore the file "
                "from the release"
            )
    return rows


def read_iemocap(
    root: str | Path,
    *,
    label_map: dict[str, str | None],
    sessions: list[int] = (1, 2, 3, 4, 5),
    test_sessions: list[int] = (5,),
    dev_sessions: list[int] = (),
) -> CorpusTable:
    """Read IEMOCAP's categorical labels; split by session (default Sessions 1-4 train, 5 test)."""
    root = Path(root).resolve()
    if overlap := set(test_sessions) & set(dev_sessions):
        raise CorpusError(f"IEMOCAP: sessions {sorted(overlap)} are in both test_sessions and dev_sessions")
    records = []
    files = iemocap_annotation_files(root, sessions=sessions)
    for path in files:
        for utt_id, emo in _parse_evaluation(path):
            match = _UTT.match(utt_id)
            if match is None:
                raise CorpusError(f"{path}: utterance id {utt_id!r} is not of the form SesNN[FM]_<dialog>_[FM]NNN")
            session = int(match["session"])
            dialog = utt_id.rsplit("_", 1)[0]
            split = "test" if session in test_sessions else "dev" if session in dev_sessions else "train"
            records.append(
                dict(
                    utt_id=utt_id,
                    path=str(root / f"Session{session}" / "sentences" / "wav" / dialog / f"{utt_id}.wav"),
                    orig_label=emo,
                    speaker=f"Ses{session:02d}{match['gender']}",
                    gender=match["gender"],
                    split=split,
                )
            )
    if not records:
        raise CorpusError(f"IEMOCAP at {root}: no annotated utterances found")
    table = pd.DataFrame.from_records(records)
    require_unique_ids(table, source=f"IEMOCAP at {root}")
    table, dropped = apply_label_map(table, label_map, source=f"IEMOCAP at {root}")
    if len(table) + sum(dropped.values()) != len(records):  # every turn line read is kept or counted
        raise CorpusError(f"IEMOCAP at {root}: {len(records)} turn lines read, but {len(table)} kept and {dropped}")
    log.info(
        "IEMOCAP: %d turn lines in %d annotation files: %d utterances kept, dropped by label map: %s",
        len(records),
        len(files),
        len(table),
        dropped or "none",
    )
    return CorpusTable(table, dropped)
