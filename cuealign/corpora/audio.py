"""Open and check an audio file once, recording what later stages need and why a file is unusable.

Files are never rewritten: any channel count and sample rate are accepted here and converted
(to 16 kHz mono, say) on the fly by the stage that reads them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from cuealign.corpora.fingerprint import Fingerprinter

log = logging.getLogger(__name__)

OK = "ok"


@dataclass(frozen=True, kw_only=True)
class AudioChecks:
    """Thresholds of the checks (config: audio_checks)."""

    min_duration_s: float = 0.25
    silence_peak: float = 1e-4
    clip_level: float = 0.999
    max_clipped_fraction: float = 0.01
    min_mono_energy: float = 0.1
    min_voiced_fraction: float = 0.05


@dataclass(frozen=True)
class AudioInfo:
    """What one audio file is and whether it is usable; status is 'ok' or the reason it is not."""

    status: str
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    subtype: str | None = None
    peak: float | None = None
    clipped_fraction: float | None = None
    sha256: str | None = None
    fingerprint: str | None = None  # cuealign.corpora.fingerprint, for a file that passed its checks

    def as_row(self) -> dict:
        return asdict(self)


def sha256_of(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """Content hash of a file's bytes (the key of every per-file cache)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def wav_bytes_missing(path: str | Path) -> int:
    """For a RIFF/WAVE file, how many bytes its data chunk declares beyond the end of the file (else 0)."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        riff = handle.read(12)
        if len(riff) < 12 or riff[:4] not in (b"RIFF", b"RIFX") or riff[8:] != b"WAVE":
            return 0
        order = "little" if riff[:4] == b"RIFF" else "big"
        while len(header := handle.read(8)) == 8:
            length = int.from_bytes(header[4:], order)
            if header[:4] == b"data":
                # 0xFFFFFFFF: a streaming writer left the size unknown
                return 0 if length == 0xFFFFFFFF else max(handle.tell() + length - size, 0)
            handle.seek(length + (length & 1), os.SEEK_CUR)
    return 0


def check_audio(path: str | Path, checks: AudioChecks = AudioChecks(), *, block_s: float = 10.0) -> AudioInfo:
    """Open ``path``, read every sample and return its properties and status.

    The status names the first failing check: missing, empty file, unreadable, no samples,
    truncated, too short, non-finite samples, silent, clipped, cancels in mono, no speech. The
    samples are read ``block_s`` seconds at a time, so memory does not grow with the file's length
    or with what its header claims.
    """
    path = Path(path)
    if not path.exists():
        return AudioInfo(status="missing: no such file")
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file (a pipe, a device?)"
        return AudioInfo(status=f"not a file: the path is {kind}")
    if path.stat().st_size == 0:
        return AudioInfo(status="empty file: 0 bytes", sha256=sha256_of(path))
    digest = sha256_of(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        # libsndfile's message repeats the path ("Error opening '<path>': <reason>"); keep the reason.
        reason = str(exc).split("': ", 1)[-1]
        return AudioInfo(status=f"unreadable: {reason}", sha256=digest)
    rate, channels = int(info.samplerate), int(info.channels)
    props = dict(sample_rate=rate, channels=channels, subtype=info.subtype, sha256=digest)
    if (missing := wav_bytes_missing(path)) > 0:
        # libsndfile quietly reads what is there when the header promises more (a cut-off copy);
        # found from the header, before reading: a header may claim gigabytes the file lacks
        return AudioInfo(
            status=f"truncated: the WAV header promises {missing} more bytes of audio than the file holds",
            duration_s=info.frames / rate if rate else None,
            **props,
        )
    stream = _Measure(channels, rate, checks)
    try:
        # float64 so that NaN/inf in float files survive and integer files map to [-1, 1)
        for block in sf.blocks(str(path), blocksize=max(int(block_s * rate), 1), dtype="float64", always_2d=True):
            stream.add(block)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        return AudioInfo(status=f"unreadable: {str(exc).split(chr(39) + ': ', 1)[-1]}", **props)
    duration = stream.frames / rate
    if stream.frames == 0:
        return AudioInfo(status="no samples: the file holds a header only", duration_s=0.0, **props)
    if duration < checks.min_duration_s:
        return AudioInfo(
            status=f"too short: {duration:.3f} s < min_duration_s {checks.min_duration_s} s",
            duration_s=duration,
            **props,
        )
    if stream.non_finite:
        return AudioInfo(
            status=f"non-finite samples: {stream.non_finite} NaN or infinite values", duration_s=duration, **props
        )
    return _judged(stream, checks, duration, props)


def _judged(stream, checks: AudioChecks, duration: float, props: dict) -> AudioInfo:
    """The status of a file read whole: silent, clipped, cancels in mono, no speech, or ok."""
    channels = props["channels"]
    peak = stream.peak
    clipped = stream.clipped / (stream.frames * channels)
    measured = dict(duration_s=duration, peak=peak, clipped_fraction=clipped, **props)
    if peak <= checks.silence_peak:
        return AudioInfo(status=f"silent: peak {peak:.2g} <= silence_peak {checks.silence_peak}", **measured)
    if clipped > checks.max_clipped_fraction:
        return AudioInfo(
            status=(
                f"clipped: {clipped:.1%} of samples at full scale > max_clipped_fraction "
                f"{checks.max_clipped_fraction:.1%}"
            ),
            **measured,
        )
    # what every later stage hears is the mono downmix, without its DC offset
    if channels > 1 and (kept := stream.mono_energy()) < checks.min_mono_energy:
        return AudioInfo(
            status=(
                f"cancels in mono: the downmix keeps {kept:.1%} of the channels' level < min_mono_energy "
                f"{checks.min_mono_energy:.0%} (channels in opposite phase?)"
            ),
            **measured,
        )
    if (voiced := stream.voicing.fraction()) < checks.min_voiced_fraction:
        return AudioInfo(
            status=(
                f"no speech: {voiced:.1%} of the sounding frames are voiced < min_voiced_fraction "
                f"{checks.min_voiced_fraction:.0%} (noise, hum, a click, an offset?)"
            ),
            **measured,
        )
    fingerprint = stream.fingerprint.result()
    return AudioInfo(status=OK, fingerprint=fingerprint.encode() if fingerprint else None, **measured)


class _Measure:
    """What check_audio needs, accumulated block by block: counts, peak, clipped samples, sums
    for the channels' and the downmix's levels, the voicing of the downmix and its fingerprint."""

    def __init__(self, channels: int, rate: int, checks: AudioChecks):
        self.checks, self.frames, self.non_finite, self.peak, self.clipped = checks, 0, 0, 0.0, 0
        self.sums, self.squares = np.zeros(channels), np.zeros(channels)
        self.mono_sum = self.mono_square = 0.0
        self.voicing = _Voicing(rate)
        self.fingerprint = Fingerprinter(rate)

    def add(self, block: np.ndarray) -> None:
        self.frames += len(block)
        finite = np.isfinite(block)
        self.non_finite += int((~finite).sum())
        if self.non_finite:
            return  # the file fails on this; the rest needs no measuring
        magnitude = np.abs(block)
        self.peak = max(self.peak, float(magnitude.max(initial=0.0)))
        self.clipped += int((magnitude >= self.checks.clip_level).sum())
        self.sums += block.sum(axis=0)
        self.squares += (block**2).sum(axis=0)
        mono = block.mean(axis=1)
        self.mono_sum += float(mono.sum())
        self.mono_square += float((mono**2).sum())
        self.voicing.add(mono)
        self.fingerprint.add(mono)

    def mono_energy(self) -> float:
        """The downmix's level as a share of the channels' own (both without their DC offset)."""
        n = self.frames
        channel_sd = np.sqrt(np.maximum(self.squares / n - (self.sums / n) ** 2, 0.0))
        mono_sd = np.sqrt(max(self.mono_square / n - (self.mono_sum / n) ** 2, 0.0))
        own = float(channel_sd.mean())
        return mono_sd / own if own > 0 else 0.0


class _Voicing:
    """Per 40 ms frame (hop 20 ms) of a stream of mono samples: the frame's energy and whether it
    is periodic at a voice's pitch (70-500 Hz): its normalised autocorrelation has a peak above
    0.5 at a lag in that range, rising from a dip (a low-frequency hum is merely high at short
    lags, with no peak there; an offset or a slow swell stays near 1 at every lag). Frames span
    the blocks the stream arrives in."""

    def __init__(self, rate: int, frame_s: float = 0.04):
        self.rate, self.size = rate, int(frame_s * rate)
        self.hop = max(self.size // 2, 1)
        self.window = np.hanning(self.size)
        correction = np.correlate(self.window, self.window, "full")[self.size - 1 :]  # Boersma's
        self.correction = correction / correction[0] if self.size else correction
        lags = np.arange(1, self.size - 1)
        self.in_range = (lags >= rate / 500) & (lags <= rate / 70)
        self.pending = np.zeros(0)
        self.energies: list[np.ndarray] = []
        self.voiced: list[np.ndarray] = []

    def add(self, mono: np.ndarray) -> None:
        if self.size < 8:
            return
        self.pending = np.concatenate([self.pending, mono])
        if len(self.pending) < self.size:
            return
        view = np.lib.stride_tricks.sliding_window_view(self.pending, self.size)[:: self.hop]
        frames = (view - view.mean(axis=1, keepdims=True)) * self.window  # what is analysed
        self.pending = self.pending[len(view) * self.hop :]
        self.energies.append(np.sum(frames**2, axis=1))
        autocorrelation = np.fft.irfft(np.abs(np.fft.rfft(frames, n=2 * self.size, axis=1)) ** 2, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            normalised = autocorrelation[:, : self.size] / autocorrelation[:, :1] / self.correction
        middle = normalised[:, 1:-1]
        peak = (middle > normalised[:, :-2]) & (middle >= normalised[:, 2:])
        dip = np.minimum.accumulate(np.nan_to_num(normalised, nan=1.0), axis=1)[:, 1:-1]
        peak &= (middle - dip > 0.3) & self.in_range
        self.voiced.append(np.max(np.where(peak, middle, -np.inf), axis=1) > 0.5)

    def fraction(self, floor_db: float = 40.0) -> float:
        """The share of sounding frames (within ``floor_db`` of the loudest) that are voiced."""
        if not self.energies:
            return 0.0
        energy, voiced = np.concatenate(self.energies), np.concatenate(self.voiced)
        if energy.max() <= 0:
            return 0.0
        sounding = energy >= energy.max() * 10 ** (-floor_db / 10)
        return float(voiced[sounding].mean())


def voiced_fraction(mono: np.ndarray, rate: int, *, block: int = 1 << 16) -> float:
    """The share of a mono signal's sounding frames that are voiced (``_Voicing``): a screening
    check before any feature is extracted, not a pitch tracker. Noise, mains hum, a click or an
    offset have none; a voice, even with long pauses, has many."""
    voicing = _Voicing(rate)
    for start in range(0, len(mono), block):
        voicing.add(np.asarray(mono[start : start + block], dtype=np.float64))
    return voicing.fraction()


def read_mono(path: str | Path, *, seconds: float | None = None, block_s: float = 10.0) -> tuple[np.ndarray, int]:
    """Samples as float32 mono (channels averaged) at the file's own rate: what every stage that
    reads audio after the checks (openSMILE, the models, fine-tuning) starts from. Read and mixed
    down ``block_s`` seconds at a time, so memory holds the mono signal and one block, not every
    channel of the whole file; ``seconds``: only the start of the file."""
    info = sf.info(str(path))
    rate = int(info.samplerate)
    frames = info.frames if seconds is None else min(info.frames, int(np.ceil(seconds * rate)))
    mono = np.empty(frames, dtype=np.float32)
    blocksize = max(min(int(block_s * rate), frames), 1)
    buffer = np.empty((blocksize, info.channels), dtype=np.float32)  # each block read into it, not copied
    done = 0
    blocks = sf.blocks(str(path), dtype="float32", always_2d=True, frames=frames, out=buffer)
    for block in blocks:
        mono[done : done + len(block)] = block.mean(axis=1)
        done += len(block)
    return mono[:done], rate


# Read this much audio past the model's window before resampling: the resampling filter's reach
# (about 30 input samples at the usual rates) is far inside it, so the window's samples are those
# of resampling the whole file.
RESAMPLING_MARGIN_S = 1.0


def load_model_audio(path: str, *, rate: int, window_s: float, silence: bool) -> tuple[np.ndarray, str]:
    """Mono float32 at ``rate``; silence of the same length for tokens_only; (audio, policy).
    Only the model's window (and a margin for the resampling filter) is read, so memory does not
    grow with the file's length."""
    info = sf.info(str(path))
    mono, source_rate = read_mono(path, seconds=window_s + RESAMPLING_MARGIN_S)
    if source_rate != rate:
        # imported here: scipy.signal takes ~0.6 s to import, which every spawned LLD worker
        # (cuealign.features, which needs only read_mono) would otherwise pay at start-up
        from scipy import signal

        divisor = np.gcd(int(source_rate), int(rate))
        mono = signal.resample_poly(mono, rate // divisor, source_rate // divisor).astype(np.float32)
    if silence:
        mono = np.zeros_like(mono)
    policy = "full"
    limit = int(window_s * rate)
    if info.frames > window_s * source_rate or mono.size > limit:
        seconds = info.frames / source_rate
        log.warning("%s: %.1f s is longer than the model's %.0f s window; truncated", path, seconds, window_s)
        mono = mono[:limit]
        policy = f"truncated to {window_s:g} s"
    return mono, policy
