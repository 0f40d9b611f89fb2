"""Corpus importers: each reads one corpus layout into the same table of utterances.

The table has the manifest's identity columns (utt_id, path, label, orig_label, speaker,
gender, split); audio checks are added by cuealign.corpora.manifest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cuealign.corpora.aibo import aibo_annotation_files, read_aibo
from cuealign.corpora.common import CorpusError, CorpusTable
from cuealign.corpora.iemocap import iemocap_annotation_files, read_iemocap
from cuealign.corpora.synthetic import read_synthetic_corpus
from cuealign.corpora.table import read_table_corpus

__all__ = ["CorpusError", "CorpusTable", "read_corpus", "annotation_files"]

_READERS: dict[str, Callable[..., CorpusTable]] = {
    "iemocap": read_iemocap,
    "aibo": read_aibo,
    "manifest": read_table_corpus,
    "synthetic": read_synthetic_corpus,
}


def read_corpus(spec: dict[str, Any], **overrides: Any) -> CorpusTable:
    """Read the corpus a validated config entry describes (``overrides`` replace spec keys)."""
    options = {key: value for key, value in spec.items() if key != "type"} | overrides
    for key in ("root", "table"):  # ~/data is the user's data folder, not a folder named ~
        if isinstance(options.get(key), str):
            options[key] = os.path.expanduser(options[key])
    return _READERS[spec["type"]](**options)


def annotation_files(spec: dict[str, Any]) -> list[Path]:
    """The label files a corpus' manifest depends on (so that editing them rebuilds it)."""
    kind = spec["type"]
    spec = {k: os.path.expanduser(v) if k in ("root", "table") and isinstance(v, str) else v for k, v in spec.items()}
    if kind == "iemocap":
        return iemocap_annotation_files(spec["root"], sessions=spec["sessions"])
    if kind == "aibo":
        return aibo_annotation_files(spec["root"], labels=spec["labels"])
    if kind == "manifest":
        return [Path(spec["table"])]
    return []
