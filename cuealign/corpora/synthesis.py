"""A deterministic source-filter synthesizer of emotional pseudo-speech with known acoustic causes.

Each utterance is a string of consonant-vowel syllables: Rosenberg glottal pulses (F0 contour,
jitter, shimmer, open quotient), a one-pole spectral tilt, aspiration noise and a cascade of
formant resonators per vowel; consonants are high-passed noise. The four classes differ the way
the literature describes (angry: loud, bright, fast, pressed; sad: quiet, dark, slow, breathy,
low and flat F0). The per-class parameters are the ones docs/findings.md measured to work; every file's
generating parameters go into a ground-truth table, so that tokens can be tested against causes.

Same seed, same bytes: all randomness comes from numpy Generators seeded by (seed, speaker,
class, utterance) and every iteration order is explicit.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy import signal

from cuealign.corpora.synthetic import CLASSES  # one list of classes for the generator and the workflow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmotionParams:
    """How a class shifts a speaker's voice (docs/findings.md, 'A synthetic emotional-speech corpus')."""

    f0_shift_st: float  # semitones above the speaker's base F0
    f0_range: float  # factor on the intonation excursions
    rate: float  # speaking-rate factor (durations divided by it)
    gain_db: float  # level relative to neutral
    open_quotient: float  # glottal open phase / period: higher = breathier
    tilt: float  # one-pole low-pass coefficient on the source: higher = darker
    aspiration: float  # aspiration noise relative to the voiced source
    jitter: float  # relative SD of period lengths
    shimmer: float  # relative SD of pulse amplitudes
    f1_scale: float
    f23_scale: float


EMOTIONS: dict[str, EmotionParams] = {
    "neutral": EmotionParams(0.0, 1.0, 1.00, 0.0, 0.60, 0.50, 0.10, 0.006, 0.050, 1.00, 1.00),
    "happy": EmotionParams(4.0, 1.7, 1.12, 5.0, 0.55, 0.30, 0.08, 0.005, 0.045, 1.06, 1.04),
    "angry": EmotionParams(3.0, 1.4, 1.20, 8.0, 0.45, 0.00, 0.05, 0.004, 0.035, 1.12, 1.02),
    "sad": EmotionParams(-2.5, 0.45, 0.80, -6.0, 0.70, 0.88, 0.60, 0.020, 0.140, 0.94, 0.98),
}

# Adult male vowel formants (Hz): a, e, i, o, u. Speakers scale them (female vocal tracts are shorter).
_VOWELS = np.array(
    [[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]],
    dtype=float,
)
_BANDWIDTHS = (80.0, 100.0, 150.0, 200.0)
_F4 = 3400.0
_INTERNAL_RATE_FACTOR = 3  # synthesise at 3x the output rate so pulse placement adds no jitter


@dataclass(frozen=True)
class Speaker:
    speaker: str
    gender: str  # F or M
    f0_hz: float
    formant_scale: float
    level_db: float


def make_speakers(female: int, male: int) -> list[Speaker]:
    """Female speakers F01.. (F0 188-228 Hz) then male M01.. (95-122 Hz), evenly spread."""

    def spread(lo: float, hi: float, n: int, i: int) -> float:
        return lo if n == 1 else lo + (hi - lo) * i / (n - 1)

    speakers = []
    for gender, count, f0, scale in (("F", female, (188, 228), (1.15, 1.2)), ("M", male, (95, 122), (1.0, 1.05))):
        for i in range(count):
            speakers.append(
                Speaker(
                    speaker=f"{gender}{i + 1:02d}",
                    gender=gender,
                    f0_hz=spread(*f0, count, i),
                    formant_scale=spread(*scale, count, i),
                    # a small, fixed level difference between speakers (+-1 dB)
                    level_db=spread(-1.0, 1.0, count, (i * 3) % count) if count > 1 else 0.0,
                )
            )
    return speakers


def assign_splits(speakers: list[Speaker], *, test_per_gender: int, dev_per_gender: int) -> dict[str, str]:
    """The last speakers of each gender are test, the ones before them dev, the rest train."""
    splits = {}
    for gender in ("F", "M"):
        group = [s.speaker for s in speakers if s.gender == gender]
        if test_per_gender + dev_per_gender >= len(group):
            raise ValueError(
                f"synthetic corpus: {len(group)} {gender} speakers cannot give {test_per_gender} test and "
                f"{dev_per_gender} dev speakers and still leave one for train; add speakers"
            )
        for position, name in enumerate(reversed(group)):
            splits[name] = (
                "test"
                if position < test_per_gender
                else "dev"
                if position < test_per_gender + dev_per_gender
                else "train"
            )
    return splits


def _rosenberg(n: int, open_quotient: float) -> np.ndarray:
    """One period of Rosenberg's glottal flow, n samples long."""
    t = np.arange(n, dtype=float)
    n_open = max(open_quotient * n, 2.0)
    tp = 2.0 / 3.0 * n_open
    tn = n_open - tp
    flow = np.zeros(n)
    rise = t <= tp
    fall = (t > tp) & (t <= tp + tn)
    flow[rise] = 0.5 * (1 - np.cos(np.pi * t[rise] / tp))
    flow[fall] = np.cos(np.pi * (t[fall] - tp) / (2 * tn))
    return flow


def _resonator(freq: float, bandwidth: float, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Second-order all-pole resonator with unit gain at DC (Klatt)."""
    r = np.exp(-np.pi * bandwidth / rate)
    c = -(r**2)
    b = 2 * r * np.cos(2 * np.pi * freq / rate)
    a = 1 - b - c
    return np.array([a]), np.array([1.0, -b, -c])


def synthesize_utterance(
    speaker: Speaker, emotion: EmotionParams, rng: np.random.Generator, *, sample_rate: int = 16000
) -> tuple[np.ndarray, dict[str, float]]:
    """One utterance as float samples at ``sample_rate`` plus measured facts (mean F0, duration).
    The steps draw from ``rng`` in a fixed order: the same seed gives the same bytes."""
    rate = sample_rate * _INTERNAL_RATE_FACTOR
    plan = _segment_plan(emotion, rng)
    lengths = [int(round(seconds * rate)) for _, seconds, _ in plan]
    segments = list(zip(plan, np.cumsum([0] + lengths)[:-1], np.cumsum(lengths), strict=True))
    total = sum(lengths)
    f0 = _f0_contour(speaker, emotion, segments, total, rate, rng)
    voiced = np.zeros(total, dtype=bool)
    for (kind, _, _), start, stop in segments:
        voiced[start:stop] = kind == "vowel"
    source = _glottal_source(emotion, f0, voiced, rate, rng)
    speech = _formants(speaker, emotion, source, segments, rate)
    # Smooth each vowel's on- and offset (10 ms ramps) so segment edges do not click.
    ramp = int(0.01 * rate)
    envelope = voiced.astype(float)
    envelope = signal.oaconvolve(envelope, np.hanning(2 * ramp) / np.hanning(2 * ramp).sum(), mode="same")
    speech *= envelope
    _add_consonants(speech, segments, voiced, rate, rng)
    audio = signal.resample_poly(speech, 1, _INTERNAL_RATE_FACTOR)
    # Level: angry peaks near 0.7 full scale (at most 0.88), sad ~14 dB lower; +-1 dB per speaker and utterance.
    level_db = emotion.gain_db - 8.0 + speaker.level_db + rng.uniform(-1.0, 1.0)
    audio *= 0.7 * 10 ** (level_db / 20.0) / np.max(np.abs(audio))
    audio += 1e-4 * rng.standard_normal(audio.size)  # a faint noise floor, as in any recording
    facts = dict(
        duration_s=audio.size / sample_rate,
        mean_f0_hz=float(np.mean(f0[voiced])),
        mean_f0_st=float(np.mean(12 * np.log2(f0[voiced] / 27.5))),
        voiced_share=float(voiced.mean()),
        peak=float(np.max(np.abs(audio))),
    )
    return audio, facts


def _segment_plan(emotion: EmotionParams, rng: np.random.Generator) -> list[tuple[str, float, int]]:
    """(kind, seconds, vowel index) of each segment: consonant-vowel syllables, a pause after
    every 2-3 of them."""
    n_syllables = int(rng.integers(6, 11))
    plan: list[tuple[str, float, int]] = [("pause", 0.12, -1)]
    until_pause = int(rng.integers(2, 4))
    for index in range(n_syllables):
        plan.append(("consonant", rng.uniform(0.045, 0.075) / emotion.rate, -1))
        plan.append(("vowel", rng.uniform(0.13, 0.2) / emotion.rate, int(rng.integers(0, 5))))
        until_pause -= 1
        if until_pause == 0 and index < n_syllables - 1:
            plan.append(("pause", rng.uniform(0.06, 0.12) / emotion.rate, -1))
            until_pause = int(rng.integers(2, 4))
    plan.append(("pause", 0.12, -1))
    return plan


def _f0_contour(speaker: Speaker, emotion: EmotionParams, segments, total: int, rate: float, rng) -> np.ndarray:
    """F0 in Hz per sample: declination plus one accent target per vowel, smoothed, in semitones
    around the speaker's F0 shifted and stretched by the emotion."""
    accents = np.zeros(total)
    for (kind, _, _), start, stop in segments:
        if kind == "vowel":
            accents[start:stop] = rng.uniform(-1.0, 2.5)
    window = int(0.06 * rate)
    accents = signal.oaconvolve(accents, np.ones(window) / window, mode="same")
    declination = np.linspace(1.0, -1.5, total)
    contour_st = emotion.f0_shift_st + emotion.f0_range * (declination + accents)
    return speaker.f0_hz * 2.0 ** (contour_st / 12.0)


def _glottal_source(emotion: EmotionParams, f0: np.ndarray, voiced: np.ndarray, rate: float, rng) -> np.ndarray:
    """The excitation: Rosenberg pulses period by period (jitter on lengths, shimmer on
    amplitudes), lip radiation, spectral tilt, and aspiration noise in the open phase."""
    total = len(f0)
    flow = np.zeros(total)
    position = 0.0
    while position < total - 1:
        index = int(position)
        period = rate / f0[index] * (1.0 + emotion.jitter * rng.standard_normal())
        n = int(round(period))
        if voiced[index]:
            amplitude = max(1.0 + emotion.shimmer * rng.standard_normal(), 0.05)
            pulse = amplitude * _rosenberg(n, emotion.open_quotient)
            stop = min(index + n, total)
            flow[index:stop] += pulse[: stop - index]
        position += period
    source = np.diff(flow, prepend=0.0)  # lip radiation: the derivative of the flow
    # The tilt coefficient is defined at the output rate; the same corner frequency at the
    # internal rate needs the pole raised to 1/factor.
    pole = emotion.tilt ** (1.0 / _INTERNAL_RATE_FACTOR)
    source = signal.lfilter([1.0 - pole], [1.0, -pole], source)
    voiced_rms = np.sqrt(np.mean(source[voiced] ** 2)) if voiced.any() else 1.0
    # Aspiration: noise in voiced segments, stronger in the open phase.
    open_phase = flow / (flow.max() or 1.0)
    source += emotion.aspiration * voiced_rms * rng.standard_normal(total) * (0.4 + 0.6 * open_phase) * voiced
    return source


def _formants(speaker: Speaker, emotion: EmotionParams, source: np.ndarray, segments, rate: float) -> np.ndarray:
    """The source through four cascaded resonators, one vowel's formants per segment, the filter
    states carried over."""
    speech = np.zeros(len(source))
    states = [np.zeros(2) for _ in _BANDWIDTHS]
    last_vowel = _VOWELS[0]
    scale = speaker.formant_scale
    for (kind, _, vowel), start, stop in segments:
        if kind == "vowel":
            last_vowel = _VOWELS[vowel]
        formants = (
            last_vowel[0] * scale * emotion.f1_scale,
            last_vowel[1] * scale * emotion.f23_scale,
            last_vowel[2] * scale * emotion.f23_scale,
            _F4 * scale,
        )
        chunk = source[start:stop]
        for k, (freq, bandwidth) in enumerate(zip(formants, _BANDWIDTHS, strict=True)):
            b, a = _resonator(freq, bandwidth, rate)
            chunk, states[k] = signal.lfilter(b, a, chunk, zi=states[k])
        speech[start:stop] = chunk
    return speech


def _add_consonants(speech: np.ndarray, segments, voiced: np.ndarray, rate: float, rng) -> None:
    """Consonants into ``speech``: high-passed noise bursts, tilt-independent, at a fixed share of
    the vowel level."""
    speech_rms = np.sqrt(np.mean(speech[voiced] ** 2)) if voiced.any() else 1.0
    hp_b, hp_a = signal.butter(4, 2500.0, btype="highpass", fs=rate)
    for (kind, _, _), start, stop in segments:
        if kind == "consonant":
            noise = signal.lfilter(hp_b, hp_a, rng.standard_normal(stop - start))
            noise *= np.hanning(stop - start)
            speech[start:stop] += 0.25 * speech_rms * noise / (np.sqrt(np.mean(noise**2)) or 1.0)


def generate_corpus(
    out_dir: str | Path,
    *,
    seed: int = 0,
    female_speakers: int = 4,
    male_speakers: int = 4,
    utterances_per_class: int = 8,
    test_speakers_per_gender: int = 1,
    dev_speakers_per_gender: int = 0,
    sample_rate: int = 16000,
) -> pd.DataFrame:
    """Write wav/<utt_id>.wav under ``out_dir`` and return the ground-truth table (also written as
    ground_truth.csv beside wav/ by the caller)."""
    out_dir = Path(out_dir)
    (out_dir / "wav").mkdir(parents=True, exist_ok=True)
    speakers = make_speakers(female_speakers, male_speakers)
    splits = assign_splits(speakers, test_per_gender=test_speakers_per_gender, dev_per_gender=dev_speakers_per_gender)
    rows = []
    for s_index, speaker in enumerate(speakers):
        number = 0
        for u_index in range(utterances_per_class):
            for c_index, label in enumerate(CLASSES):
                rng = np.random.default_rng([seed, s_index, c_index, u_index])
                emotion = EMOTIONS[label]
                audio, facts = synthesize_utterance(speaker, emotion, rng, sample_rate=sample_rate)
                number += 1
                utt_id = f"{speaker.speaker}_{number:03d}"
                relative = f"wav/{utt_id}.wav"
                sf.write(out_dir / relative, audio, sample_rate, subtype="PCM_16")
                rows.append(
                    dict(
                        utt_id=utt_id,
                        path=relative,
                        label=label,
                        speaker=speaker.speaker,
                        gender=speaker.gender,
                        split=splits[speaker.speaker],
                        speaker_f0_hz=speaker.f0_hz,
                        formant_scale=speaker.formant_scale,
                        **asdict(emotion),
                        **facts,
                    )
                )
        log.info("synthetic corpus: speaker %s done (%d/%d)", speaker.speaker, s_index + 1, len(speakers))
    return pd.DataFrame.from_records(rows)
