"""eGeMAPSv02 low-level descriptors with openSMILE, summarised per file, with a content-keyed cache.

Why voiced, non-zero frames: openSMILE sets the ``*_sma3nz`` LLDs (F0, jitter, shimmer, HNR,
the harmonic relations, formants) to 0 in unvoiced frames, so a plain mean over all frames pulls
them toward 0 by the file's share of silence and consonants; and it also writes 0 for jitter and
shimmer in some frames inside voiced stretches (where a period could not be measured). openSMILE's
own eGeMAPSv02 functionals (``*_sma3nz_amean``) average the non-zero frames, so those LLDs are
averaged over voiced frames (F0 > 0) whose value is not 0: averaging the zeros in put jitter and
shimmer 10-29 % low, by class (docs/findings.md). The others are averaged over all frames.

Where the means depart from openSMILE's functionals, on purpose or by framing (measured on the
synthetic corpus by tests/unit/test_features.py, tolerances in FUNCTIONAL_TOLERANCE):
- ``F1-3amplitudeLogRelF0``: openSMILE writes -201 (not 0) in unvoiced frames, so its non-zero
  amean averages the placeholders in (about -50 dB); ours is over voiced frames only.
- The all-frame LLDs (loudness, spectral flux, MFCCs): openSMILE's functionals come from its own
  framing of the signal; means agree within a few per cent of the value.
- No all-frame functional exists for the four spectral-balance LLDs; their voiced means are
  compared with alphaRatioV etc. The four spectral-balance LLDs are also averaged over
voiced frames, under the names eGeMAPS' own functionals give them (alphaRatioV, hammarbergIndexV,
slopeV0-500, slopeV500-1500): over all frames, pauses and their faint broadband noise read as
"bright" and swamp the voice's own tilt.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import opensmile
import pandas as pd
from tqdm import tqdm

from cuealign.cache import KeyedJsonCache
from cuealign.corpora.audio import read_mono

log = logging.getLogger(__name__)

FEATURE_SET = opensmile.FeatureSet.eGeMAPSv02
SAMPLE_RATE = 16000
VOICING_LLD = "F0semitoneFrom27.5Hz_sma3nz"
# Bump when the per-file summary changes, so cached rows of the old summary are not reused.
SUMMARY_VERSION = "voiced-nonzero-means-v3"
# LLD -> name of its voiced-frame mean (eGeMAPS functional naming)
VOICED_SPECTRAL = {
    "alphaRatio_sma3": "alphaRatioV_sma3nz",
    "hammarbergIndex_sma3": "hammarbergIndexV_sma3nz",
    "slope0-500_sma3": "slopeV0-500_sma3nz",
    "slope500-1500_sma3": "slopeV500-1500_sma3nz",
}

# How close each file-level mean comes to openSMILE's own eGeMAPSv02 functional (``<LLD>_amean``,
# loudness spelt in lower case there), measured on the 288 files of the synthetic demo corpus.
# EXACT: the same frames averaged (max relative difference 6e-8); within 1 % is required. The
# others: openSMILE's functionals frame the signal their own way, so the deviation is given in
# units of the descriptor's spread between files (what the binning sees): the largest measured,
# with a margin. F1-3amplitudeLogRelF0 departs on purpose (see above) and is not compared.
EXACT_FUNCTIONALS = (
    "F0semitoneFrom27.5Hz_sma3nz",
    "jitterLocal_sma3nz",
    "shimmerLocaldB_sma3nz",
    "HNRdBACF_sma3nz",
    "logRelF0-H1-H2_sma3nz",
    "logRelF0-H1-A3_sma3nz",
)
FRAMED_FUNCTIONALS = {  # descriptor -> tolerance (between-file SDs); measured max in the comment
    "Loudness_sma3": 0.2,  # 0.09
    "spectralFlux_sma3": 0.2,  # 0.10
    "mfcc1_sma3": 0.4,  # 0.23
    "mfcc2_sma3": 0.1,  # 0.04
    "mfcc3_sma3": 0.1,  # 0.04
    "mfcc4_sma3": 0.1,  # 0.06
    "F1frequency_sma3nz": 0.3,  # 0.17
    "F2frequency_sma3nz": 0.3,  # 0.14
    "F3frequency_sma3nz": 0.3,  # 0.15
    "F1bandwidth_sma3nz": 0.6,  # 0.40
    "F2bandwidth_sma3nz": 0.4,  # 0.27
    "F3bandwidth_sma3nz": 0.4,  # 0.21
    "alphaRatioV_sma3nz": 0.3,  # 0.14
    "hammarbergIndexV_sma3nz": 0.3,  # 0.19
    "slopeV0-500_sma3nz": 0.1,  # 0.04
    "slopeV500-1500_sma3nz": 0.3,  # 0.14
}

_local = threading.local()


def _smile() -> opensmile.Smile:
    # One extractor per thread: openSMILE's C API runs outside the GIL, its Python object is not shared.
    if not hasattr(_local, "smile"):
        _local.smile = opensmile.Smile(
            feature_set=FEATURE_SET,
            feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
            sampling_rate=SAMPLE_RATE,
            resample=True,
        )
    return _local.smile


def lld_names() -> list[str]:
    """The 25 eGeMAPSv02 LLD names, in openSMILE's order."""
    return list(_smile().feature_names)


def summary_columns() -> list[str]:
    return lld_names() + list(VOICED_SPECTRAL.values()) + ["voiced_fraction", "n_frames"]


def summarise_llds(frames: pd.DataFrame) -> dict[str, float]:
    """File-level means of LLD frames: ``*_sma3nz`` over voiced frames whose value is not 0 (as
    openSMILE's functionals average them), the rest over all frames."""
    voiced = frames[VOICING_LLD].to_numpy() > 0
    row: dict[str, float] = {}
    for name in frames.columns:
        values = frames[name].to_numpy(dtype=float)
        if name.endswith("_sma3nz"):
            kept = values[voiced & (values != 0)]
            row[name] = float(kept.mean()) if kept.size else float("nan")
        else:
            row[name] = float(values.mean()) if values.size else float("nan")
    for name, voiced_name in VOICED_SPECTRAL.items():
        values = frames[name].to_numpy(dtype=float)[voiced]
        row[voiced_name] = float(values.mean()) if values.size else float("nan")
    row["voiced_fraction"] = float(voiced.mean()) if voiced.size else 0.0
    row["n_frames"] = int(voiced.size)
    return row


def extract_file(path: str | Path) -> dict[str, float]:
    """openSMILE LLDs of one file, summarised."""
    samples, rate = read_mono(path)
    frames = _smile().process_signal(samples, rate)
    return summarise_llds(frames)


class LLDCache(KeyedJsonCache):
    """Per-file summaries keyed by audio content hash, under a namespace of the openSMILE version,
    the feature set and the summary version (a change of any of them misses the old entries)."""

    def __init__(self, root: str | Path):
        super().__init__(root, f"lld/opensmile-{opensmile.__version__}/{FEATURE_SET.name}/{SUMMARY_VERSION}")


# pool "auto": processes from this many files per worker, threads below (a spawned process takes
# 0.6-1.5 s to start, importing openSMILE and pandas, by machine: the work of up to ~20 files)
PROCESSES_FROM = 200
POOLS = ("auto", "threads", "processes")


def extract_lld_means(
    manifest: pd.DataFrame,
    *,
    cache: LLDCache | None = None,
    threads: int = 1,
    progress: bool = True,
    pool: str = "auto",
) -> pd.DataFrame:
    """utt_id + per-file LLD means, voiced_fraction and n_frames for every row of ``manifest``
    (rows must have passed their audio checks). Cached files are not extracted again.

    ``threads`` workers, as ``pool`` says: ``threads`` (one openSMILE per thread), ``processes``
    (spawned: they share no GIL, which openSMILE's Python frame callback holds for part of each
    file's time, but each pays 0.6-1.5 s to start) or ``auto`` (the default): processes from
    PROCESSES_FROM files per worker, threads below. benchmarks/lld_extraction.py measures both
    against two independent openSMILE loops (2-vCPU machines, 2026-12-02): at 1,152 files
    processes 0.84-1.07 of linear over three runs against 0.80-0.89 for threads (the bare loops
    0.90-1.10 in the same runs); at 512 files 0.87 against 0.84 (bare loops 0.95)."""
    columns = summary_columns()
    # a cached row that lacks a column (damaged, or written by an older summary) is extracted again
    rows: list[dict | None] = [
        row if isinstance(row, dict) and all(c in row for c in columns) else None
        for row in ([cache.get(sha) if cache else None for sha in manifest["sha256"]])
    ]
    todo = [i for i, row in enumerate(rows) if row is None]
    workers = max(threads, 1)
    if pool not in POOLS:
        raise ValueError(f"pool {pool!r}: choose one of {POOLS}")
    processes = workers > 1 and (pool == "processes" or (pool == "auto" and len(todo) >= PROCESSES_FROM * workers))
    log.info(
        "LLDs: %d files, %d from the cache, %d to extract (%d %s)",
        len(rows),
        len(rows) - len(todo),
        len(todo),
        workers,
        "processes" if processes else "threads",
    )
    paths = [str(p) for p in manifest["path"].to_numpy()]
    hashes = manifest["sha256"].to_numpy()
    if processes:  # spawned, not forked: a fresh openSMILE per process, nothing native copied
        executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        done = executor.map(extract_file, [paths[i] for i in todo], chunksize=4)
    else:
        executor = ThreadPoolExecutor(max_workers=workers)
        done = executor.map(extract_file, [paths[i] for i in todo])
    with executor:
        for i, row in tqdm(
            zip(todo, done, strict=True),
            total=len(todo),
            desc="openSMILE LLDs",
            unit="file",
            disable=not progress,
            mininterval=5,
        ):
            if cache:  # as each file is done: a killed job keeps what it extracted
                cache.put(hashes[i], row)
            rows[i] = row
    table = pd.DataFrame.from_records(rows, columns=summary_columns())
    table.insert(0, "utt_id", manifest["utt_id"].to_numpy())
    unvoiced = table.loc[table["voiced_fraction"] == 0, "utt_id"].tolist()
    if unvoiced:
        log.warning("%d files have no voiced frames (their *_sma3nz means are NaN): %s", len(unvoiced), unvoiced[:10])
    return table
