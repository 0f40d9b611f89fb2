"""openSMILE LLD extraction: voiced-frame means, what the harmonic-relation LLDs measure, the cache."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from cuealign import features
from cuealign.corpora.audio import sha256_of
from cuealign.features import VOICED_SPECTRAL, LLDCache, extract_file, extract_lld_means, summarise_llds

RATE = 16000


def harmonic_complex(f0: float, seconds: float = 1.5, gains_db: dict[int, float] | None = None) -> np.ndarray:
    """Harmonics of f0 up to 7.5 kHz falling 6 dB per octave, with optional per-harmonic gains."""
    gains_db = gains_db or {}
    t = np.arange(int(seconds * RATE)) / RATE
    x = np.zeros_like(t)
    for k in range(1, int(7500 // f0) + 1):
        gain = -6 * np.log2(k) + gains_db.get(k, 0.0)
        x += 10 ** (gain / 20) * np.sin(2 * np.pi * k * f0 * t + 0.3 * k)
    return 0.3 * x / np.abs(x).max()


def _write(path, x, rate=RATE):
    sf.write(path, x, rate, subtype="FLOAT")
    return path


def test_summary_averages_sma3nz_over_voiced_frames_only():
    frames = pd.DataFrame(
        {
            "F0semitoneFrom27.5Hz_sma3nz": [30.0, 0.0, 32.0, 0.0],
            "jitterLocal_sma3nz": [0.01, 0.0, 0.03, 0.0],
            "Loudness_sma3": [1.0, 0.2, 1.0, 0.2],
            **{name: [1.0, 5.0, 3.0, 5.0] for name in VOICED_SPECTRAL},
        }
    )
    row = summarise_llds(frames)
    assert row["F0semitoneFrom27.5Hz_sma3nz"] == pytest.approx(31.0)
    assert row["jitterLocal_sma3nz"] == pytest.approx(0.02)
    assert row["Loudness_sma3"] == pytest.approx(0.6)  # all frames
    assert row["alphaRatio_sma3"] == pytest.approx(3.5) and row["alphaRatioV_sma3nz"] == pytest.approx(2.0)
    assert row["voiced_fraction"] == 0.5 and row["n_frames"] == 4


def test_half_unvoiced_file_keeps_its_pitch(tmp_path):
    tone = harmonic_complex(150.0, seconds=1.0)
    full = extract_file(_write(tmp_path / "full.wav", tone))
    half = extract_file(_write(tmp_path / "half.wav", np.concatenate([tone, np.zeros(RATE)])))
    assert half["voiced_fraction"] == pytest.approx(full["voiced_fraction"] / 2, abs=0.08)
    # voiced-only means: unchanged by the silent half; a plain mean would halve them
    for name in ("F0semitoneFrom27.5Hz_sma3nz", "F1frequency_sma3nz", "HNRdBACF_sma3nz"):
        assert half[name] == pytest.approx(full[name], rel=0.05), name
    expected_st = 12 * np.log2(150 / 27.5)
    assert half["F0semitoneFrom27.5Hz_sma3nz"] == pytest.approx(expected_st, abs=0.3)


def test_silent_file_has_no_voiced_frames_and_nan_pitch(tmp_path):
    row = extract_file(_write(tmp_path / "quiet.wav", 1e-5 * np.random.default_rng(0).standard_normal(RATE)))
    assert row["voiced_fraction"] == 0.0
    assert np.isnan(row["F0semitoneFrom27.5Hz_sma3nz"]) and np.isnan(row["alphaRatioV_sma3nz"])


def test_stereo_and_other_rates_are_converted_on_the_fly(tmp_path):
    mono = extract_file(_write(tmp_path / "m.wav", harmonic_complex(200.0)))
    t = np.arange(int(1.5 * 44100)) / 44100
    x = 0.3 * np.sin(2 * np.pi * 200 * t) + 0.1 * np.sin(2 * np.pi * 400 * t)
    stereo = extract_file(_write(tmp_path / "s.wav", np.stack([x, x], axis=1), rate=44100))
    assert stereo["F0semitoneFrom27.5Hz_sma3nz"] == pytest.approx(mono["F0semitoneFrom27.5Hz_sma3nz"], abs=0.3)


@pytest.mark.parametrize("f0", [120.0, 200.0])
def test_harmonic_relation_llds_follow_the_second_harmonic(tmp_path, f0):
    """Why VOICE_QUALITY does not read logRelF0-H1-H2 as H1-H2 (see cuealign/tokens.py)."""

    def measure(gains):
        row = extract_file(_write(tmp_path / "x.wav", harmonic_complex(f0, gains_db=gains)))
        return row["logRelF0-H1-H2_sma3nz"], row["logRelF0-H1-A3_sma3nz"]

    base_h12, base_a3 = measure({})
    h1_up_h12, _ = measure({1: 12.0})
    h2_down_h12, h2_down_a3 = measure({2: -12.0})
    h3_down_h12, _ = measure({3: -12.0})
    # boosting the real H1 by 12 dB barely moves "H1-H2" ...
    assert abs(h1_up_h12 - base_h12) < 1.5
    # ... while cutting H2 lowers it and cutting H3 raises it by about the cut: it is H2 - H3
    assert h2_down_h12 - base_h12 == pytest.approx(-12.0, abs=1.5)
    assert h3_down_h12 - base_h12 == pytest.approx(12.0, abs=1.5)
    # "H1-A3" moves with H2 too
    assert h2_down_a3 - base_a3 < -10.0


def test_cache_means_a_second_run_extracts_nothing(tmp_path, monkeypatch):
    paths = [_write(tmp_path / f"{i}.wav", harmonic_complex(110.0 + 20 * i)) for i in range(3)]
    manifest = pd.DataFrame(
        {"utt_id": [f"u{i}" for i in range(3)], "path": list(map(str, paths)), "sha256": [sha256_of(p) for p in paths]}
    )
    cache = LLDCache(tmp_path / "cache")
    first = extract_lld_means(manifest, cache=cache, threads=2, progress=False)

    calls = []
    monkeypatch.setattr(features, "extract_file", lambda path: calls.append(path) or pytest.fail("extracted again"))
    second = extract_lld_means(manifest, cache=cache, progress=False)
    pd.testing.assert_frame_equal(first, second)
    # another corpus holding the same audio under other ids and paths also hits the cache
    other = manifest.assign(utt_id=["a", "b", "c"], path=["/elsewhere/a.wav"] * 3)
    third = extract_lld_means(other, cache=cache, progress=False)
    assert calls == [] and third["utt_id"].tolist() == ["a", "b", "c"]
    assert np.allclose(third.drop(columns="utt_id"), first.drop(columns="utt_id"), equal_nan=True)
    # the key holds the content hash, the openSMILE version and the summary version
    entry = cache.path(manifest["sha256"][0])
    assert entry.is_file() and features.SUMMARY_VERSION in str(entry) and "opensmile-" in str(entry)


def test_processes_threads_and_one_worker_give_the_same_table(tmp_path, caplog, monkeypatch):
    """LLDs extracted in spawned processes, in threads (the default) and in one worker are the same
    numbers, in the manifest's order."""
    import logging

    monkeypatch.setattr(features, "PROCESSES_FROM", 4)  # processes for a few files (200 per worker by default)
    n = 2 * features.PROCESSES_FROM
    paths = [_write(tmp_path / f"{i}.wav", harmonic_complex(100.0 + 7 * i)) for i in range(n)]
    manifest = pd.DataFrame(
        {"utt_id": [f"u{i}" for i in range(n)], "path": list(map(str, paths)), "sha256": [sha256_of(p) for p in paths]}
    )
    with caplog.at_level(logging.INFO, logger="cuealign.features"):
        spawned = extract_lld_means(manifest, threads=2, progress=False, pool="processes")
    assert f"{n} to extract (2 processes)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cuealign.features"):  # auto: processes from PROCESSES_FROM per worker
        assert extract_lld_means(manifest, threads=2, progress=False).equals(spawned)
        extract_lld_means(manifest.iloc[:-1], threads=2, progress=False)
    assert f"{n} to extract (2 processes)" in caplog.text and f"{n - 1} to extract (2 threads)" in caplog.text
    with pytest.raises(ValueError, match="pool 'forks'"):
        extract_lld_means(manifest, pool="forks")
    threaded = extract_lld_means(manifest, threads=2, progress=False, pool="threads")
    single = extract_lld_means(manifest, threads=1, progress=False)
    pd.testing.assert_frame_equal(spawned, single)
    pd.testing.assert_frame_equal(threaded, single)
    assert single["utt_id"].tolist() == manifest["utt_id"].tolist()


@pytest.mark.parametrize("entry", ["{not json", "{}", '{"Loudness_sma3": 1.0}', "\udcff garbage"])
def test_cache_ignores_a_corrupt_or_partial_entry(tmp_path, entry):
    # a '{}' entry once made the utterance UNVOICED (every mean missing); now it is extracted again
    path = _write(tmp_path / "x.wav", harmonic_complex(150.0))
    manifest = pd.DataFrame({"utt_id": ["x"], "path": [str(path)], "sha256": [sha256_of(path)]})
    cache = LLDCache(tmp_path / "cache")
    cache.path(manifest["sha256"][0]).parent.mkdir(parents=True)
    cache.path(manifest["sha256"][0]).write_bytes(entry.encode("utf-8", "surrogateescape"))
    table = extract_lld_means(manifest, cache=cache, progress=False)
    assert table["F0semitoneFrom27.5Hz_sma3nz"].iloc[0] == pytest.approx(12 * np.log2(150 / 27.5), abs=0.3)


def test_file_means_match_opensmiles_own_functionals(tmp_path):
    """Each file-level mean against openSMILE's eGeMAPSv02 ``*_amean`` functional of the same file:
    within 1 % where the same frames are averaged, within the measured framing tolerance elsewhere."""
    import opensmile

    from cuealign.corpora.audio import read_mono
    from cuealign.corpora.synthesis import generate_corpus

    truth = generate_corpus(
        tmp_path, female_speakers=2, male_speakers=2, utterances_per_class=2, test_speakers_per_gender=1
    )
    functionals = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.Functionals,
        sampling_rate=RATE,
        resample=True,
    )
    by_lower = {name.lower(): name for name in functionals.feature_names}
    ours, theirs = [], []
    for utt_id in truth["utt_id"]:
        path = tmp_path / "wav" / f"{utt_id}.wav"
        ours.append(extract_file(path))
        theirs.append(functionals.process_signal(*read_mono(path)).iloc[0])
    ours, theirs = pd.DataFrame(ours), pd.DataFrame(theirs).reset_index(drop=True)
    compared = list(features.EXACT_FUNCTIONALS) + list(features.FRAMED_FUNCTIONALS)
    assert len(set(compared)) == 22 and set(compared) <= set(features.summary_columns())
    for name in features.EXACT_FUNCTIONALS:
        np.testing.assert_allclose(ours[name], theirs[by_lower[f"{name}_amean".lower()]], rtol=0.01, err_msg=name)
    for name, tolerance in features.FRAMED_FUNCTIONALS.items():
        reference = theirs[by_lower[f"{name}_amean".lower()]]
        deviation = (ours[name] - reference).abs().max() / reference.std()
        assert deviation <= tolerance, (name, deviation)
    # the bias this fixes: averaging the zero frames inside voiced stretches in puts jitter low
    assert (theirs["jitterLocal_sma3nz_amean"] > 0).all()
