"""The synthetic corpus: deterministic, and its classes differ the way they were generated."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy import signal

from cuealign.corpora.synthesis import CLASSES, EMOTIONS, assign_splits, generate_corpus, make_speakers

SMALL = dict(female_speakers=2, male_speakers=2, utterances_per_class=3, test_speakers_per_gender=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    truth = generate_corpus(root, seed=3, **SMALL)
    return root, truth


def _digest(root, truth):
    h = hashlib.sha256()
    for path in truth["path"]:
        h.update((root / path).read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_audio(corpus, tmp_path):
    root, truth = corpus
    again = generate_corpus(tmp_path / "again", seed=3, **SMALL)
    pd.testing.assert_frame_equal(again, truth)
    assert _digest(tmp_path / "again", again) == _digest(root, truth)
    other = generate_corpus(tmp_path / "other", seed=4, **SMALL)
    assert _digest(tmp_path / "other", other) != _digest(root, truth)


def test_same_bytes_under_another_hash_seed(corpus, tmp_path):
    root, truth = corpus
    code = (
        "import sys; from cuealign.corpora.synthesis import generate_corpus; "
        f"generate_corpus(sys.argv[1], seed=3, **{SMALL!r})"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "h")], check=True, env=env)
    assert _digest(tmp_path / "h", truth) == _digest(root, truth)


def test_table_layout_speakers_and_splits(corpus):
    root, truth = corpus
    assert len(truth) == 4 * 4 * 3 and truth["utt_id"].is_unique
    assert truth.groupby("speaker")["label"].value_counts().eq(3).all()
    assert dict(truth.groupby("speaker")["gender"].first()) == {"F01": "F", "F02": "F", "M01": "M", "M02": "M"}
    assert set(truth.loc[truth["split"] == "test", "speaker"]) == {"F02", "M02"}
    info = sf.info(str(root / truth["path"].iloc[0]))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert truth["duration_s"].between(1.2, 4.0).all()
    assert truth["peak"].between(0.02, 0.95).all()  # loud enough to stay voiced, never clipped
    # the generating parameters are recorded per file
    angry = truth[truth["label"] == "angry"].iloc[0]
    assert angry["gain_db"] == EMOTIONS["angry"].gain_db and angry["tilt"] == EMOTIONS["angry"].tilt
    # what the workflow computes at parse time, before the corpus exists (shards, resources)
    from cuealign.corpora.synthetic import synthetic_size, synthetic_split_size

    options = SMALL | {"dev_speakers_per_gender": 0}
    assert synthetic_size(options) == len(truth) == synthetic_split_size(options, "all")
    for split in ("train", "dev", "test"):
        assert synthetic_split_size(options, split) == (truth["split"] == split).sum(), split


def test_split_assignment_rejects_too_few_speakers():
    with pytest.raises(ValueError, match="add speakers"):
        assign_splits(make_speakers(1, 2), test_per_gender=1, dev_per_gender=0)


def _measure(path):
    """Independent simple measurements: RMS level, spectral centroid, autocorrelation F0."""
    x, rate = sf.read(path)
    rms = np.sqrt(np.mean(x**2))
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    centroid = np.sum(freqs * spectrum) / np.sum(spectrum)
    # F0 per 40 ms frame from the autocorrelation peak in 70-400 Hz, loud frames only
    frame = int(0.04 * rate)
    f0s = []
    energy = [np.sum(x[i : i + frame] ** 2) for i in range(0, x.size - frame, frame)]
    threshold = 0.2 * max(energy)
    for k, i in enumerate(range(0, x.size - frame, frame)):
        if energy[k] < threshold:
            continue
        seg = x[i : i + frame] - x[i : i + frame].mean()
        ac = signal.correlate(seg, seg, mode="full")[frame - 1 :]
        lo, hi = int(rate / 400), int(rate / 70)
        f0s.append(rate / (lo + np.argmax(ac[lo:hi])))
    return rms, centroid, np.median(f0s)


def test_class_directions_hold_on_simple_measurements(corpus):
    root, truth = corpus
    measured = pd.DataFrame([_measure(root / p) for p in truth["path"]], columns=["rms", "centroid", "f0"])
    table = pd.concat([truth[["label", "speaker", "duration_s"]], measured], axis=1)
    # compare within speaker so that gender does not mix into pitch
    per_speaker = table.groupby(["speaker", "label"])[["rms", "centroid", "f0", "duration_s"]].mean().unstack("label")
    for speaker in per_speaker.index:
        row = per_speaker.loc[speaker]
        assert row["rms"]["angry"] > row["rms"]["neutral"] > row["rms"]["sad"], speaker
        assert row["centroid"]["angry"] > row["centroid"]["neutral"] > row["centroid"]["sad"], speaker
        assert row["f0"]["happy"] > row["f0"]["neutral"] > row["f0"]["sad"], speaker
        assert row["f0"]["angry"] > row["f0"]["neutral"], speaker
        assert row["duration_s"]["sad"] > row["duration_s"]["angry"], speaker
    # measured F0 follows the generating contour
    corr = np.corrcoef(measured["f0"], truth["mean_f0_hz"])[0, 1]
    assert corr > 0.95
    assert list(CLASSES) == sorted(CLASSES)
