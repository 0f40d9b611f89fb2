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
    return AudioInfo(status=OK, **measured)


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
