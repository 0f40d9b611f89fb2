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
from scipy import signal

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


def check_audio(path: str | Path, checks: AudioChecks = AudioChecks()) -> AudioInfo:
    """Open ``path``, read every sample and return its properties and status.

    The status names the first failing check: missing, empty file, unreadable, no samples,
    too short, non-finite samples, silent, clipped.
    """
    path = Path(path)
    if not path.is_file():
        return AudioInfo(status="missing: no such file")
    if path.stat().st_size == 0:
        return AudioInfo(status="empty file: 0 bytes", sha256=sha256_of(path))
    digest = sha256_of(path)
    try:
        info = sf.info(str(path))
        # float64 so that NaN/inf in float files survive and integer files map to [-1, 1).
        samples, rate = sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        # libsndfile's message repeats the path ("Error opening '<path>': <reason>"); keep the reason.
        reason = str(exc).split("': ", 1)[-1]
        return AudioInfo(status=f"unreadable: {reason}", sha256=digest)
    frames, channels = samples.shape
    props = dict(sample_rate=int(rate), channels=int(channels), subtype=info.subtype, sha256=digest)
    duration = frames / rate
    if frames == 0:
        return AudioInfo(status="no samples: the file holds a header only", duration_s=0.0, **props)
    if (missing := wav_bytes_missing(path)) > 0:
        # libsndfile quietly reads what is there when the header promises more (a cut-off copy).
        return AudioInfo(
            status=f"truncated: the WAV header promises {missing} more bytes of audio than the file holds",
            duration_s=duration,
            **props,
        )
    if duration < checks.min_duration_s:
        return AudioInfo(
            status=f"too short: {duration:.3f} s < min_duration_s {checks.min_duration_s} s",
            duration_s=duration,
            **props,
        )
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int((~finite).sum())
        return AudioInfo(status=f"non-finite samples: {bad} NaN or infinite values", duration_s=duration, **props)
    magnitude = np.abs(samples)
    peak = float(magnitude.max())
    clipped = float((magnitude >= checks.clip_level).mean())
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
    centred = samples - samples.mean(axis=0)
    mono = centred.mean(axis=1)
    if samples.shape[1] > 1:
        own = float(np.mean(np.sqrt(np.mean(centred**2, axis=0))))
        kept = float(np.sqrt(np.mean(mono**2))) / own if own > 0 else 0.0
        if kept < checks.min_mono_energy:
            return AudioInfo(
                status=(
                    f"cancels in mono: the downmix keeps {kept:.1%} of the channels' level < min_mono_energy "
                    f"{checks.min_mono_energy:.0%} (channels in opposite phase?)"
                ),
                **measured,
            )
    voiced = voiced_fraction(mono, int(rate))
    if voiced < checks.min_voiced_fraction:
        return AudioInfo(
            status=(
                f"no speech: {voiced:.1%} of the sounding frames are voiced < min_voiced_fraction "
                f"{checks.min_voiced_fraction:.0%} (noise, hum, a click, an offset?)"
            ),
            **measured,
        )
    return AudioInfo(status=OK, **measured)


def voiced_fraction(
    mono: np.ndarray, rate: int, *, frame_s: float = 0.04, floor_db: float = 40.0, block: int = 2048
) -> float:
    """The share of sounding frames (within ``floor_db`` of the loudest) that are periodic at a
    voice's pitch (70-500 Hz): the normalised autocorrelation of the frame has a peak above 0.5 at
    a lag in that range, rising from a dip. Noise, mains hum (50/60 Hz), a click or an offset have
    none; a voice, even with long pauses, has many. A screening check before any feature is
    extracted, not a pitch tracker. Frames are analysed ``block`` at a time, so memory does not
    grow with the file's length."""
    size = int(frame_s * rate)
    if mono.size < size or size < 8:
        return 0.0
    window = np.hanning(size)
    view = np.lib.stride_tricks.sliding_window_view(mono, size)[:: size // 2]

    def windowed(rows):
        return (rows - rows.mean(axis=1, keepdims=True)) * window  # what is analysed

    energy = np.concatenate([np.sum(windowed(view[i : i + block]) ** 2, axis=1) for i in range(0, len(view), block)])
    if energy.max() <= 0:
        return 0.0
    floor = energy.max() * 10 ** (-floor_db / 10)
    lags = np.arange(size)
    correction = np.correlate(window, window, "full")[size - 1 :]  # Boersma's window correction
    correction = correction / correction[0]
    in_range = (lags[1:-1] >= rate / 500) & (lags[1:-1] <= rate / 70)
    voiced = sounding = 0
    for i in range(0, len(view), block):
        frames = windowed(view[i : i + block])[energy[i : i + block] >= floor]
        if not len(frames):
            continue
        autocorrelation = np.fft.irfft(np.abs(np.fft.rfft(frames, n=2 * size, axis=1)) ** 2, axis=1)[:, :size]
        with np.errstate(invalid="ignore", divide="ignore"):
            normalised = autocorrelation / autocorrelation[:, :1] / correction
        # a peak inside the pitch range (a low-frequency hum is merely high at short lags, falling
        # all the way, with no peak there) that rises from a dip (an offset or a slow swell stays
        # near 1 at every lag: no period)
        middle = normalised[:, 1:-1]
        peak = (middle > normalised[:, :-2]) & (middle >= normalised[:, 2:])
        dip = np.minimum.accumulate(np.nan_to_num(normalised, nan=1.0), axis=1)[:, 1:-1]
        peak &= (middle - dip > 0.3) & in_range
        voiced += int(np.sum(np.max(np.where(peak, middle, -np.inf), axis=1) > 0.5))
        sounding += len(frames)
    return voiced / sounding if sounding else 0.0


def read_mono(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples as float32 mono (channels averaged) at the file's own rate: what every stage that
    reads audio after the checks (openSMILE, the models, fine-tuning) starts from."""
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return samples.mean(axis=1), int(rate)


def load_model_audio(path: str, *, rate: int, window_s: float, silence: bool) -> tuple[np.ndarray, str]:
    """Mono float32 at ``rate``; silence of the same length for tokens_only; (audio, policy)."""
    mono, source_rate = read_mono(path)
    if source_rate != rate:
        divisor = np.gcd(int(source_rate), int(rate))
        mono = signal.resample_poly(mono, rate // divisor, source_rate // divisor).astype(np.float32)
    if silence:
        mono = np.zeros_like(mono)
    policy = "full"
    limit = int(window_s * rate)
    if mono.size > limit:
        log.warning("%s: %.1f s is longer than the model's %.0f s window; truncated", path, mono.size / rate, window_s)
        mono = mono[:limit]
        policy = f"truncated to {window_s:g} s"
    return mono, policy
