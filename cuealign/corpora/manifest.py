"""Build a corpus' manifest: its utterances, each audio file opened and checked.

A file that fails a check keeps its row, with a status saying why, and is listed in
bad_files.csv; later stages use status == 'ok' rows only and account for the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Literal

import pandas as pd
from tqdm import tqdm

from cuealign.cache import KeyedJsonCache, content_key, file_state
from cuealign.corpora import CorpusTable, fingerprint
from cuealign.corpora.audio import OK, AudioChecks, AudioInfo, check_audio

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "utt_id",
    "path",
    "label",
    "orig_label",
    "speaker",
    "gender",
    "split",
    "duration_s",
    "sample_rate",
    "channels",
    "subtype",
    "peak",
    "clipped_fraction",
    "sha256",
    "status",
    "fingerprint",
]
BAD_FILE_COLUMNS = ["utt_id", "path", "label", "speaker", "split", "status"]


class BadAudioError(RuntimeError):
    """Raised when on_bad_audio is 'fail' and a file failed its checks."""


def _file_state(path: str, checks: AudioChecks) -> str | None:
    """The key of a file's check result: its state (cache.file_state) and the thresholds. None
    for a file that is not there."""
    state = file_state(path)
    return (
        None if state is None else content_key(state | {"checks": asdict(checks), "fingerprint": fingerprint.VERSION})
    )


def check_files(
    paths: Iterable[str],
    checks: AudioChecks,
    *,
    threads: int = 1,
    progress: bool = True,
    cache: KeyedJsonCache | None = None,
) -> list[AudioInfo]:
    """Check every file, in order, on ``threads`` threads (libsndfile releases the GIL). With a
    cache, a file unchanged since it was last checked is not read again: a rebuilt manifest
    re-reads only the files that changed."""
    paths = list(paths)
    unchanged = []

    def check(path: str) -> AudioInfo:
        state = _file_state(path, checks) if cache is not None else None
        if state is not None and (known := cache.get(state)) is not None:
            unchanged.append(path)
            return AudioInfo(**known)
        info = check_audio(path, checks)
        if state is not None:
            cache.put(state, info.as_row())
        return info

    with ThreadPoolExecutor(max_workers=max(threads, 1)) as pool:
        results = pool.map(check, paths)
        infos = list(
            tqdm(results, total=len(paths), desc="checking audio", unit="file", disable=not progress, mininterval=5)
        )
    if cache is not None:
        log.info(
            "audio checks: %d files read, %d unchanged since their last check",
            len(paths) - len(unchanged),
            len(unchanged),
        )
    return infos


def build_manifest(
    corpus: CorpusTable,
    checks: AudioChecks | None = None,
    *,
    on_bad_audio: Literal["skip", "fail"] = "skip",
    threads: int = 1,
    progress: bool = True,
    cache: KeyedJsonCache | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (manifest, bad_files) for an imported corpus.

    With on_bad_audio='fail', any failing file raises BadAudioError naming the files and reasons.
    """
    table = corpus.table
    infos = check_files(table["path"], checks or AudioChecks(), threads=threads, progress=progress, cache=cache)
    audio = pd.DataFrame([info.as_row() for info in infos], index=table.index)
    manifest = pd.concat([table, audio], axis=1)[MANIFEST_COLUMNS]
    manifest = manifest.astype(
        {
            "sample_rate": "Int64",
            "channels": "Int64",
            "duration_s": "float64",
            "peak": "float64",
            "clipped_fraction": "float64",
        }
    )
    bad = manifest.loc[manifest["status"] != OK, BAD_FILE_COLUMNS].reset_index(drop=True)
    log.info(
        "manifest: %d utterances, %d ok, %d failed their audio checks%s",
        len(manifest),
        len(manifest) - len(bad),
        len(bad),
        f"; dropped by the label map: {corpus.dropped}" if corpus.dropped else "",
    )
    for row in bad.head(20).itertuples():
        log.warning("%s: %s", row.path, row.status)
    if len(bad) and on_bad_audio == "fail":
        shown = "\n  ".join(f"{row.path}: {row.status}" for row in bad.head(10).itertuples())
        raise BadAudioError(
            f"{len(bad)} of {len(manifest)} audio files failed their checks (on_bad_audio: fail):\n  {shown}\n"
            "Fix or remove these files, or set audio_checks.on_bad_audio: skip to keep them out of the study."
        )
    if not (manifest["status"] == OK).any():
        raise BadAudioError("no audio file passed its checks; see bad_files.csv and the log")
    return manifest, bad


class LeakageError(ValueError):
    """Train and evaluated utterances share audio or speakers."""


def check_leakage(
    manifest: pd.DataFrame,
    *,
    same_audio: str = "error",
    speaker_in_two_splits: str = "error",
    evaluated: str | None = None,
) -> None:
    """Refuse a manifest whose splits share a recording or a speaker (the corpora's protocols are
    speaker-disjoint), naming the rows and the override (config: leakage).

    A recording is shared when two ids hold the same bytes (SHA-256) or the same sound (the
    acoustic fingerprint of cuealign.corpora.fingerprint: a copy re-encoded, resampled, at another
    gain or with silence added): in two splits, or twice in the ``evaluated`` split (counted twice).
    """
    usable = manifest[manifest["status"] == OK].reset_index(drop=True)
    problems = []
    if same_audio == "error":
        if copies := _shared_recordings(usable, evaluated):
            problems.append(_copies_problem(usable, copies, evaluated))
    elif copies := _shared_recordings(usable, evaluated):
        log.warning("leakage.same_audio: allow: %d pairs of ids hold the same recording, kept", len(copies))
    if speaker_in_two_splits == "error":
        splits = usable.groupby("speaker")["split"].unique()
        if len(shared := splits[splits.map(len) > 1]):
            counts = usable.groupby(["speaker", "split"]).size()
            shown = "; ".join(
                f"{speaker}: " + ", ".join(f"{split} {counts[speaker, split]}" for split in sorted(found))
                for speaker, found in list(shared.items())[:5]
            )
            problems.append(
                f"{len(shared)} speakers have utterances in two splits ({shown}): a speaker-disjoint protocol is "
                "broken. Fix the split column, or set leakage.speaker_in_two_splits: allow for a speaker-dependent "
                "design"
            )
    if problems:
        raise LeakageError("train/test leakage in the manifest: " + " ".join(problems))


def _shared_recordings(usable: pd.DataFrame, evaluated: str | None) -> dict[tuple[int, int], str]:
    """{(i, j): how} for rows i < j holding one recording, in two splits or both in ``evaluated``;
    how is 'identical bytes' or the fingerprints' correlation."""
    found: dict[tuple[int, int], str] = {}
    for _, rows in usable.groupby("sha256").groups.items():
        rows = sorted(rows)
        found.update({(i, j): "identical bytes" for k, i in enumerate(rows) for j in rows[k + 1 :]})
    if "fingerprint" in usable:
        for i, j, correlation in fingerprint.near_copies(usable["fingerprint"].tolist()):
            found.setdefault((i, j), f"the same sound, fingerprints correlated {correlation:.3f}")
    split = usable["split"].to_numpy()
    return {
        pair: how
        for pair, how in sorted(found.items())
        if split[pair[0]] != split[pair[1]] or (evaluated is not None and split[pair[0]] == evaluated)
    }


def _copies_problem(usable: pd.DataFrame, copies: dict[tuple[int, int], str], evaluated: str | None) -> str:
    split, ids, paths = (usable[c].to_numpy() for c in ("split", "utt_id", "path"))
    across = sum(split[i] != split[j] for i, j in copies)
    shown = "; ".join(
        f"{ids[i]} ({split[i]}, {paths[i]}) = {ids[j]} ({split[j]}, {paths[j]}): {how}"
        for (i, j), how in list(copies.items())[:5]
    )
    where = [f"{across} across splits"] if across else []
    if len(copies) > across:
        where.append(f"{len(copies) - across} within the evaluated split '{evaluated}', where each would count twice")
    return (
        f"{len(copies)} pairs of utterance ids hold one recording ({', '.join(where)}): {shown}"
        f"{'; ...' if len(copies) > 5 else ''}. Remove the copies, or set leakage.same_audio: allow"
    )


class FoldError(ValueError):
    """A fold of a corpus (cuealign.workflow.folds) that cannot be made or pooled."""


def fold_manifest(manifest: pd.DataFrame, session: int) -> pd.DataFrame:
    """The corpus manifest with one fold's split: ``session`` test, every other session train."""
    sessions = manifest["utt_id"].str.extract(r"^Ses(\d\d)", expand=False)
    if sessions.isna().any():
        raise FoldError(f"utterance ids without a session: {manifest.loc[sessions.isna(), 'utt_id'].head(3).tolist()}")
    out = manifest.copy()
    out["split"] = ["test" if int(s) == session else "train" for s in sessions]
    return out


def pooled_manifest(manifests: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per utterance of the corpus: each from the fold whose test split holds it (its
    split column says test, its fold column names the fold); utterances no fold tests (failed
    audio checks) once, from the first fold."""
    tested = [m[m["split"] == "test"].assign(fold=fold) for fold, m in manifests.items()]
    out = pd.concat(tested, ignore_index=True)
    doubled = out["utt_id"].duplicated()
    if doubled.any():
        raise FoldError(f"utterances in the test split of two folds: {out.loc[doubled, 'utt_id'].head(3).tolist()}")
    first = next(iter(manifests.values()))
    rest = first[~first["utt_id"].isin(out["utt_id"])].assign(fold=None)
    return pd.concat([out, rest], ignore_index=True)
