"""The leakage check's acoustic fingerprint (cuealign.corpora.fingerprint): how often an altered
copy of a recording is found, and how often distinct recordings are taken for copies.

Each source recording is written as 16 kHz 16-bit WAV and as altered copies (re-encoded, resampled,
another bit depth, gain changed, silence added, a second channel), every file goes through the
audio checks as a corpus' files do (check_audio computes the fingerprint), and near_copies pairs
them. Distinct recordings: the synthetic corpus (every speaker and class) and one speaker's
recordings of one class (the same voice and manner, different content: the hardest case a
synthesiser gives; real corpora were not reachable here).

    python benchmarks/fingerprint.py [--sources 24] [--one-speaker 200] [--scale 10039]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from cuealign.corpora import fingerprint
from cuealign.corpora.audio import check_audio
from cuealign.corpora.synthesis import CLASSES, EMOTIONS, make_speakers, synthesize_utterance

RATE = 16000


def _resampled(audio, rate):
    divisor = np.gcd(RATE, rate)
    return signal.resample_poly(audio, rate // divisor, RATE // divisor), rate


def _silence(seconds, rate=RATE):
    return np.zeros(int(seconds * rate))


ALTERATIONS = {
    "FLAC 16-bit": lambda a: (a, RATE, "FLAC", "PCM_16"),
    "WAV 24-bit": lambda a: (a, RATE, "WAV", "PCM_24"),
    "WAV float": lambda a: (a, RATE, "WAV", "FLOAT"),
    "MP3 (libsndfile default)": lambda a: (a, RATE, "MP3", "MPEG_LAYER_III"),
    "OGG Vorbis": lambda a: (a, RATE, "OGG", "VORBIS"),
    "resampled to 8 kHz": lambda a: (*_resampled(a, 8000), "WAV", "PCM_16"),
    "resampled to 22.05 kHz": lambda a: (*_resampled(a, 22050), "WAV", "PCM_16"),
    "resampled to 48 kHz": lambda a: (*_resampled(a, 48000), "WAV", "PCM_16"),
    "gain -20 dB": lambda a: (a * 0.1, RATE, "WAV", "PCM_16"),
    "gain +3 dB": lambda a: (a * 1.41, RATE, "WAV", "PCM_16"),
    "10 ms silence before": lambda a: (np.concatenate([_silence(0.01), a]), RATE, "WAV", "PCM_16"),
    "0.5 s silence before, 1 s after": lambda a: (
        np.concatenate([_silence(0.5), a, _silence(1.0)]),
        RATE,
        "WAV",
        "PCM_16",
    ),
    "stereo (the same signal twice)": lambda a: (np.column_stack([a, a]), RATE, "WAV", "PCM_16"),
    "44.1 kHz, -6 dB, 0.2 s before, FLAC 24-bit": lambda a: (
        np.concatenate([_silence(0.2, 44100), _resampled(a, 44100)[0] * 0.5]),
        44100,
        "FLAC",
        "PCM_24",
    ),
}


def _fingerprint(path):
    info = check_audio(path)
    return info.fingerprint if info.status == "ok" else None


def _utterance(speaker, label, seed):
    audio, _ = synthesize_utterance(speaker, EMOTIONS[label], np.random.default_rng(seed), sample_rate=RATE)
    return audio


def detection(folder: Path, sources: int) -> list[tuple[str, int, int, float]]:
    """(alteration, found, sources, lowest correlation with its source)."""
    speakers = make_speakers(4, 4)
    originals = []
    for k in range(sources):
        path = folder / f"source{k}.wav"
        sf.write(path, _utterance(speakers[k % 8], CLASSES[k % len(CLASSES)], [7, k]), RATE, subtype="PCM_16")
        originals.append(_fingerprint(path))
    rows = []
    for name, alter in ALTERATIONS.items():
        copies = []
        for k in range(sources):
            audio, rate, kind, subtype = alter(sf.read(folder / f"source{k}.wav")[0])
            path = folder / f"copy{k}.{kind.lower()}"
            sf.write(path, np.clip(audio, -1, 1), rate, format=kind, subtype=subtype)
            copies.append(_fingerprint(path))
        pairs = {(i, j): r for i, j, r in fingerprint.near_copies(originals + copies)}
        found = [(k, k + sources) in pairs for k in range(sources)]
        lowest = min((pairs[k, k + sources] for k in range(sources) if found[k]), default=float("nan"))
        rows.append((name, sum(found), sources, lowest))
    return rows


def false_matches(folder: Path, name: str, utterances) -> tuple[str, int, int, float]:
    """(set, recordings, pairs taken for copies, the highest correlation of two recordings of about
    the same length)."""
    prints = []
    for k, audio in enumerate(utterances):
        path = folder / f"{name}{k}.wav"
        sf.write(path, audio, RATE, subtype="PCM_16")
        prints.append(_fingerprint(path))
    saved = fingerprint.MATCH_CORRELATION
    try:
        fingerprint.MATCH_CORRELATION = -1.0  # every pair within the duration tolerance, to see the highest
        comparable = fingerprint.near_copies(prints)
    finally:
        fingerprint.MATCH_CORRELATION = saved
    matched = sum(r >= saved for _, _, r in comparable)
    return name, len(prints), len(comparable), matched, max((r for *_, r in comparable), default=float("nan"))


def comparison_time(n: int) -> float:
    """Seconds near_copies takes for ``n`` recordings with IEMOCAP's spread of durations (0.6-35 s,
    median 3.4 s): the cost of the check itself, on top of the audio checks' reading."""
    rng = np.random.default_rng(0)
    sound = np.clip(rng.lognormal(np.log(3.4), 0.7, n), 0.6, 35.0)
    shape = (fingerprint.TIME_BINS, fingerprint.BANDS)
    prints = [fingerprint.Fingerprint(s, rng.normal(0, 8, shape)).encode() for s in sound]
    started = time.perf_counter()
    fingerprint.near_copies(prints)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", type=int, default=24)
    parser.add_argument("--one-speaker", type=int, default=200)
    parser.add_argument("--scale", type=int, default=10039, help="recordings for the comparison's timing")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(
            f"threshold: correlation >= {fingerprint.MATCH_CORRELATION}, durations within "
            f"{fingerprint.DURATION_TOLERANCE[0]} s or {fingerprint.DURATION_TOLERANCE[1]:.0%}\n"
        )
        print("| altered copy | found | lowest correlation with its source |\n|---|---|---|")
        for name, found, total, lowest in detection(folder, args.sources):
            print(f"| {name} | {found}/{total} | {lowest:.3f} |")
        speakers = make_speakers(8, 8)  # the default config's demo corpus: seed 0, 6 per class
        corpus = [
            _utterance(speaker, label, [0, s, c, u])
            for s, speaker in enumerate(speakers)
            for c, label in enumerate(CLASSES)
            for u in range(6)
        ]
        one = [_utterance(speakers[0], "neutral", [11, u]) for u in range(args.one_speaker)]
        print(
            "\n| distinct recordings | recordings | pairs of about the same length | taken for copies | "
            "highest correlation |\n|---|---|---|---|---|"
        )
        for row in (
            false_matches(folder, "the demo corpus (16 speakers x 4 classes x 6)", corpus),
            false_matches(folder, "one speaker, one class", one),
        ):
            print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |")
    print(f"\nnear_copies over {args.scale} recordings: {comparison_time(args.scale):.1f} s")
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
