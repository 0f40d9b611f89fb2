from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cuealign.corpora.audio import OK, AudioChecks, check_audio, sha256_of
from tests.fakes import write_tone


def _write(path: Path, data, rate=16000, subtype="PCM_16") -> Path:
    sf.write(path, data, rate, subtype=subtype)
    return path


def make_truncated_header(tmp: Path) -> Path:
    good = write_tone(tmp / "good.wav")
    (tmp / "bad.wav").write_bytes(good.read_bytes()[:20])
    return tmp / "bad.wav"


def make_truncated_data(tmp: Path) -> Path:
    good = write_tone(tmp / "good.wav", seconds=1.0)
    data = good.read_bytes()
    (tmp / "bad.wav").write_bytes(data[: len(data) // 2])
    return tmp / "bad.wav"


def make_empty(tmp: Path) -> Path:
    (tmp / "bad.wav").write_bytes(b"")
    return tmp / "bad.wav"


def make_header_only(tmp: Path) -> Path:
    return _write(tmp / "bad.wav", np.zeros(0))


def make_silent(tmp: Path) -> Path:
    return _write(tmp / "bad.wav", np.zeros(16000))


def make_nan(tmp: Path) -> Path:
    x = 0.1 * np.sin(np.arange(16000) / 10.0)
    x[500:510] = np.nan
    return _write(tmp / "bad.wav", x, subtype="FLOAT")


def make_text(tmp: Path) -> Path:
    (tmp / "bad.wav").write_text("this is not audio\n" * 20)
    return tmp / "bad.wav"


def make_short(tmp: Path) -> Path:
    return write_tone(tmp / "bad.wav", seconds=0.1)


def make_clipped(tmp: Path) -> Path:
    return _write(tmp / "bad.wav", np.sign(np.sin(np.arange(16000) / 5.0)))


@pytest.mark.parametrize(
    "make, status",
    [
        (make_truncated_header, "unreadable:"),
        (make_truncated_data, "truncated: the WAV header promises"),
        (make_empty, "empty file: 0 bytes"),
        (make_header_only, "no samples"),
        (make_silent, "silent: peak 0"),
        (make_nan, "non-finite samples: 10 NaN"),
        (make_text, "unreadable:"),
        (make_short, "too short: 0.100 s"),
        (make_clipped, "clipped:"),
        (lambda tmp: tmp / "nowhere.wav", "missing: no such file"),
    ],
)
def test_bad_files_get_a_status_that_says_why(tmp_path, make, status):
    info = check_audio(make(tmp_path))
    assert info.status.startswith(status), info.status


@pytest.mark.parametrize(
    "channels, rate, subtype", [(2, 44100, "PCM_16"), (1, 16000, "PCM_U8"), (1, 8000, "PCM_24"), (1, 48000, "FLOAT")]
)
def test_any_rate_channels_and_depth_are_accepted_and_recorded(tmp_path, channels, rate, subtype):
    path = write_tone(tmp_path / "x.wav", seconds=0.5, rate=rate, channels=channels, subtype=subtype)
    before = path.read_bytes()
    info = check_audio(path)
    assert info.status == OK
    assert (info.channels, info.sample_rate, info.subtype) == (channels, rate, subtype)
    assert info.duration_s == pytest.approx(0.5, abs=1e-3)
    assert info.peak == pytest.approx(0.3, abs=0.02)
    assert info.sha256 == sha256_of(path)
    assert path.read_bytes() == before  # never rewritten


def test_thresholds_come_from_the_checks(tmp_path):
    path = write_tone(tmp_path / "x.wav", seconds=0.5, level=0.001)
    assert check_audio(path).status == OK
    assert check_audio(path, AudioChecks(silence_peak=0.01)).status.startswith("silent")
    assert check_audio(path, AudioChecks(min_duration_s=1.0)).status.startswith("too short")


def test_sha256_is_the_content_hash(tmp_path):
    a = write_tone(tmp_path / "a.wav")
    b = write_tone(tmp_path / "b.wav")
    c = write_tone(tmp_path / "c.wav", freq=330.0)
    assert sha256_of(a) == sha256_of(b) != sha256_of(c)
    import hashlib

    assert sha256_of(a) == hashlib.sha256(a.read_bytes()).hexdigest()


def _voice(seconds=2.0, rate=16000):
    """A synthetic utterance of the demo corpus' generator (voiced, with pauses and consonants)."""
    from cuealign.corpora.synthesis import EMOTIONS, make_speakers, synthesize_utterance

    speaker = make_speakers(1, 0)[0]
    samples, _ = synthesize_utterance(speaker, EMOTIONS["neutral"], np.random.default_rng(0), sample_rate=rate)
    return samples


@pytest.mark.parametrize(
    "name, make, status",
    [
        ("phase-inverted stereo", lambda v, t, rng: np.stack([v, -v], axis=1), "cancels in mono"),
        ("white noise", lambda v, t, rng: 0.1 * rng.standard_normal(t.size), "no speech"),
        ("50 Hz hum", lambda v, t, rng: 0.2 * np.sin(2 * np.pi * 50 * t), "no speech"),
        (
            "one click",
            lambda v, t, rng: np.where(np.arange(t.size) == t.size // 2, 0.9, 0.0) + 1e-4 * rng.standard_normal(t.size),
            "no speech",
        ),
        ("DC offset", lambda v, t, rng: 0.3 + 1e-3 * rng.standard_normal(t.size), "no speech"),
        ("the voice", lambda v, t, rng: v, OK),
        ("the voice over a DC offset", lambda v, t, rng: v + 0.2, OK),
        ("the voice in two equal channels", lambda v, t, rng: np.stack([v, v], axis=1), OK),
    ],
)
def test_files_without_speech_in_the_mono_downmix_are_marked(tmp_path, name, make, status):
    voice = 0.5 * _voice() / np.abs(_voice()).max()
    t = np.arange(voice.size) / 16000
    data = make(voice, t, np.random.default_rng(1))
    info = check_audio(_write(tmp_path / "x.wav", data, subtype="FLOAT"))
    assert info.status.startswith(status), (name, info.status)


def test_a_header_that_claims_more_than_the_file_is_truncated_without_reading(tmp_path):
    import struct

    claimed = 0xFFFFFF00  # 4 GB: reading what the header claims would allocate 16 GiB
    header = b"RIFF" + struct.pack("<I", claimed + 36) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16) + b"data" + struct.pack("<I", claimed)
    path = tmp_path / "claims.wav"
    path.write_bytes(header + bytes(4096))
    assert check_audio(path).status.startswith("truncated: the WAV header promises")


def test_blocks_do_not_change_what_is_measured(tmp_path):
    voice = 0.5 * _voice() / np.abs(_voice()).max()
    path = _write(tmp_path / "v.wav", np.stack([voice, 0.5 * voice], axis=1), subtype="FLOAT")
    whole, blocks = check_audio(path, block_s=100.0), check_audio(path, block_s=0.013)
    assert whole == blocks and whole.status == OK


def test_a_folder_or_a_pipe_named_like_audio_is_not_called_missing(tmp_path):
    import os

    (tmp_path / "x.wav").mkdir()
    assert check_audio(tmp_path / "x.wav").status == "not a file: the path is a folder"
    os.mkfifo(tmp_path / "y.wav")
    assert check_audio(tmp_path / "y.wav").status.startswith("not a file: the path is not a regular file")


def test_the_model_reads_only_its_window_and_gets_the_whole_files_samples(tmp_path):
    """A long many-channel file: the model's audio is read up to its window (plus the resampling
    filter's margin) and mixed down block by block, so memory does not grow with the file; its
    samples are exactly those of reading, mixing and resampling the whole file."""
    import tracemalloc

    from scipy import signal

    from cuealign.corpora.audio import load_model_audio, read_mono

    rate, channels, seconds = 48000, 6, 60
    path = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    sf.write(path, (0.2 * rng.standard_normal((rate * seconds, channels))).astype(np.float32), rate, subtype="PCM_16")
    whole = sf.read(path, dtype="float32", always_2d=True)[0]  # 69 MB of float32
    reference = signal.resample_poly(whole.mean(axis=1), 1, 3).astype(np.float32)[: 16000 * 4]
    del whole
    tracemalloc.start()
    audio, policy = load_model_audio(str(path), rate=16000, window_s=4, silence=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(audio, reference) and policy == "truncated to 4 s"
    assert peak < 30e6, f"{peak / 1e6:.0f} MB for 4 s of a 60 s file"  # a 10 s block of 6 channels is 11.5 MB
    # the LLDs read the whole file, mixed down a block at a time: the mono signal and one block
    tracemalloc.start()
    mono, _ = read_mono(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert mono.size == rate * seconds and peak < 11.5e6 + mono.nbytes + 5e6, f"{peak / 1e6:.0f} MB"  # not 69 MB
