"""An acoustic fingerprint per recording, to find one recording under two ids when its bytes differ
(re-encoded, resampled, another bit depth, a gain change, silence added before or after).

The fingerprint is the recording's band-energy pattern: the mono signal in 32 ms frames every 8 ms, each frame's
energy in 16 mel-spaced bands from 100 to 3,800 Hz (so 8 kHz files take part), leading and trailing
frames more than 40 dB below the loudest one dropped, the time axis cut into 64 equal parts (so the
pattern does not depend on the sample rate or on how much silence surrounds the sound), in dB with
each band's mean over time removed (so not on the gain or on a channel's frequency response: what
is left is how the sound moves in time, which differs between recordings even of one voice). Two
recordings are the same sound when their sounding durations agree (``DURATION_TOLERANCE``) and
their patterns correlate at ``MATCH_CORRELATION`` or more. benchmarks/fingerprint.py measures
both rates: copies found and distinct recordings matched (benchmarks/README.md).

The patterns are computed while the audio checks read a file (``Fingerprinter.add`` on each
block), so no file is read twice.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

BANDS = 16
TIME_BINS = 64
FRAME_S, HOP_S = 0.032, 0.008
LOW_HZ, HIGH_HZ = 100.0, 3800.0
TRIM_DB = 40.0
MAX_S = 600.0  # only the first 10 minutes: memory stays bounded (utterances are far shorter)
VERSION = 1  # part of the audio-check cache key: a change here recomputes every fingerprint
# Measured in benchmarks/fingerprint.py: every altered copy correlates >= 0.965 with its source,
# distinct recordings of the demo corpus or of one speaker (same class, same length) <= 0.826.
MATCH_CORRELATION = 0.9
DURATION_TOLERANCE = (0.1, 0.03)  # seconds, and a share of the longer one


def _mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _filterbank(rate: int, size: int) -> np.ndarray:
    """(bins, BANDS) triangular mel filters over the rfft bins of a ``size``-sample frame."""
    freqs = np.fft.rfftfreq(size, 1.0 / rate)
    edges = 700.0 * (10 ** (np.linspace(_mel(LOW_HZ), _mel(HIGH_HZ), BANDS + 2) / 2595.0) - 1.0)
    bank = np.zeros((len(freqs), BANDS))
    for band in range(BANDS):
        low, mid, high = edges[band : band + 3]
        rising, falling = (freqs - low) / (mid - low), (high - freqs) / (high - mid)
        bank[:, band] = np.clip(np.minimum(rising, falling), 0.0, None)
    return bank


class Fingerprinter:
    """Band energies of a stream of mono blocks at ``rate``; ``result()`` gives the fingerprint."""

    def __init__(self, rate: int):
        self.size, self.hop = max(round(FRAME_S * rate), 2), max(round(HOP_S * rate), 1)
        self.hop_s = self.hop / rate
        self.window = np.hanning(self.size)
        self.bank = _filterbank(rate, self.size)
        self.pending = np.zeros(0)
        self.energies: list[np.ndarray] = []
        self.room = int(MAX_S * rate)  # samples still taken

    def add(self, mono: np.ndarray) -> None:
        mono = mono[: self.room]
        self.room -= len(mono)
        self.pending = np.concatenate([self.pending, mono])
        if len(self.pending) < self.size:
            return
        view = np.lib.stride_tricks.sliding_window_view(self.pending, self.size)[:: self.hop]
        self.pending = self.pending[len(view) * self.hop :]
        spectrum = np.abs(np.fft.rfft(view * self.window, axis=1)) ** 2
        self.energies.append((spectrum @ self.bank).astype(np.float32))

    def result(self) -> Fingerprint | None:
        """None when nothing sounds (no frame, or every frame silent)."""
        if not self.energies:
            return None
        energy = np.concatenate(self.energies).astype(np.float64)
        total = energy.sum(axis=1)
        if total.max() <= 0:
            return None
        sounding = np.flatnonzero(total >= total.max() * 10 ** (-TRIM_DB / 10))
        kept = energy[sounding[0] : sounding[-1] + 1]
        level = 10 * np.log10(kept + total.max() * 1e-7)  # a floor relative to the loudest frame: gain-free
        pattern = _to_bins(level)
        pattern -= pattern.mean(axis=0)
        return Fingerprint(sound_s=len(kept) * self.hop_s, pattern=pattern)


def _to_bins(level: np.ndarray) -> np.ndarray:
    """(frames, BANDS) to (TIME_BINS, BANDS): the mean of each of TIME_BINS equal stretches, or
    linear interpolation when there are fewer frames than bins."""
    frames = len(level)
    if frames >= TIME_BINS:
        edges = np.linspace(0, frames, TIME_BINS + 1)
        starts, stops = np.floor(edges[:-1]).astype(int), np.maximum(np.floor(edges[1:]).astype(int), 1)
        stops = np.maximum(stops, starts + 1)
        sums = np.vstack([np.zeros(BANDS), np.cumsum(level, axis=0)])
        return (sums[stops] - sums[starts]) / (stops - starts)[:, None]
    where = (np.arange(TIME_BINS) + 0.5) * frames / TIME_BINS - 0.5
    return np.column_stack([np.interp(where, np.arange(frames), level[:, band]) for band in range(BANDS)])


@dataclass(frozen=True)
class Fingerprint:
    """The sounding duration in seconds and the (TIME_BINS, BANDS) pattern in dB about each band's mean."""

    sound_s: float
    pattern: np.ndarray

    def encode(self) -> str:
        """``<sound_s>:<base64 of the pattern in 0.5 dB steps, int8>``: 1.4 KB, stored in the manifest."""
        steps = np.clip(np.round(self.pattern * 2), -127, 127).astype(np.int8)
        return f"{self.sound_s:.3f}:{base64.b64encode(steps.tobytes()).decode('ascii')}"

    @classmethod
    def decode(cls, text: str) -> Fingerprint:
        sound, data = text.split(":", 1)
        steps = np.frombuffer(base64.b64decode(data), dtype=np.int8).astype(np.float64)
        return cls(sound_s=float(sound), pattern=steps.reshape(TIME_BINS, BANDS) / 2)


def near_copies(fingerprints: list[str | None]) -> list[tuple[int, int, float]]:
    """Pairs (i, j, correlation), i < j, of entries that are the same sound: sounding durations
    within DURATION_TOLERANCE and patterns correlated at MATCH_CORRELATION or more. Entries are
    compared only with those of about the same duration (sorted by it), so the work grows with the
    number of recordings times the number of about the same length, not with its square."""
    known = [(i, Fingerprint.decode(text)) for i, text in enumerate(fingerprints) if isinstance(text, str)]
    if len(known) < 2:
        return []
    known.sort(key=lambda item: item[1].sound_s)
    index = np.array([i for i, _ in known])
    sound = np.array([f.sound_s for _, f in known])
    patterns = np.stack([f.pattern.ravel() for _, f in known])
    patterns = patterns - patterns.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(patterns, axis=1)
    patterns = patterns / np.where(norms > 0, norms, 1.0)[:, None]
    absolute, relative = DURATION_TOLERANCE
    reach = np.searchsorted(sound, sound + np.maximum(absolute, relative * sound), side="right")
    pairs = []
    for a in range(len(known) - 1):
        if reach[a] <= a + 1:
            continue
        correlation = patterns[a + 1 : reach[a]] @ patterns[a]
        for offset in np.flatnonzero(correlation >= MATCH_CORRELATION):
            b = a + 1 + offset
            i, j = sorted((int(index[a]), int(index[b])))
            pairs.append((i, j, float(correlation[offset])))
    return sorted(pairs)
