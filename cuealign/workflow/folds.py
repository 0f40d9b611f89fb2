"""Cross-validation folds: IEMOCAP leave-one-session-out, analysed as one pooled study.

IEMOCAP's standard test split (Session 5) holds 2 speakers, too few for an interval about
speakers (benchmarks/README.md, "Interval coverage"). With ``folds: sessions`` each session is the
test split of one fold whose other sessions are its train split: every fold is a corpus of its own
(``<corpus>-s<k>``: manifest, token standardisation and bin edges fitted on its train sessions,
prompts, fine-tuned models, predictions), and the analysis of ``<corpus>`` pools the test
predictions of all folds (all 10 speakers). The folds' manifests are the corpus' own manifest with
the split column redrawn, so the audio is checked once.
"""

from __future__ import annotations

import copy
from typing import Any

# a fold's manifest and the pooled one (fold_manifest, pooled_manifest) live with the manifest
from cuealign.corpora.manifest import FoldError

FOLD_OF = "fold_of"  # the key a fold corpus' config entry carries: its parent corpus
FOLD_SESSION = "fold_session"


def fold_name(corpus: str, session: int) -> str:
    return f"{corpus}-s{session}"


def expand_folds(config: dict[str, Any]) -> dict[str, list[str]]:
    """Add one corpus entry per fold to ``config['corpora']`` (in place) for every corpus with
    ``folds: sessions``; return {corpus: [its fold corpora]}."""
    pooled: dict[str, list[str]] = {}
    for name, spec in list(config["corpora"].items()):
        if spec.get("folds", "none") == "none":
            continue
        where = f"config: corpora.{name}"
        if spec["type"] != "iemocap":
            raise FoldError(f"{where}.folds: only IEMOCAP corpora have sessions to fold over")
        if spec["dev_sessions"]:
            raise FoldError(
                f"{where}: folds: sessions holds out each session in turn and trains on all the others; "
                "remove dev_sessions (or set folds: none)"
            )
        if spec.get("evaluate_split", config.get("evaluate_split", "test")) != "test":
            raise FoldError(f"{where}: folds: sessions evaluates each fold's test session; set evaluate_split: test")
        if len(spec["sessions"]) < 2:
            raise FoldError(f"{where}: folds: sessions needs at least 2 sessions, not {spec['sessions']}")
        pooled[name] = []
        for session in sorted(spec["sessions"]):
            fold = fold_name(name, session)
            if fold in config["corpora"]:
                raise FoldError(f"{where}: the fold corpus {fold!r} clashes with a corpus of that name; rename it")
            config["corpora"][fold] = copy.deepcopy(spec) | {
                "test_sessions": [session],
                "folds": "none",
                FOLD_OF: name,
                FOLD_SESSION: session,
            }
            pooled[name].append(fold)
    _check_cluster(config, pooled)
    return pooled


def _check_cluster(config: dict[str, Any], pooled: dict[str, list[str]]) -> None:
    """analysis.cluster: fold resamples folds, which only a corpus pooled over folds has."""
    if config.get("analysis", {}).get("cluster") != "fold":
        return
    unpooled = [name for name, spec in config["corpora"].items() if FOLD_OF not in spec and name not in pooled]
    if unpooled:
        raise FoldError(
            f"config: analysis.cluster: fold resamples the folds of a corpus pooled over folds, but {unpooled} "
            "are not (corpora.<name>.folds: none); set analysis.cluster: auto (folds where there are folds, "
            "speakers elsewhere) or speaker"
        )
