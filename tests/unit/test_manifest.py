import shutil

import numpy as np
import pandas as pd
import pytest

from cuealign.corpora import read_corpus
from cuealign.corpora.audio import OK, AudioChecks
from cuealign.corpora.manifest import BAD_FILE_COLUMNS, MANIFEST_COLUMNS, BadAudioError, build_manifest
from tests.fakes import write_tone


@pytest.fixture
def mixed_corpus(tmp_path):
    root = tmp_path / "c"
    write_tone(root / "good1.wav")
    write_tone(root / "good2.wav", rate=44100, channels=2)
    (root / "text.wav").write_text("not audio")
    write_tone(root / "silent.wav", level=0.0)
    rows = ["good1.wav,neu,s1", "text.wav,neu,s1", "missing.wav,ang,s2", "good2.wav,ang,s2", "silent.wav,neu,s2"]
    (tmp_path / "t.csv").write_text("path,label,speaker\n" + "\n".join(rows) + "\n")
    return read_corpus(
        {
            "type": "manifest",
            "root": str(root),
            "table": str(tmp_path / "t.csv"),
            "label_map": {"neu": "neutral", "ang": "angry"},
            "default_split": "test",
        }
    )


def test_every_utterance_keeps_its_row_and_bad_ones_are_listed(mixed_corpus):
    manifest, bad = build_manifest(mixed_corpus, threads=2, progress=False)
    assert list(manifest.columns) == MANIFEST_COLUMNS and list(bad.columns) == BAD_FILE_COLUMNS
    # order and count are those of the corpus, whatever the thread count
    assert manifest["utt_id"].tolist() == ["good1", "text", "missing", "good2", "silent"]
    status = dict(zip(manifest["utt_id"], manifest["status"], strict=True))
    assert status["good1"] == OK and status["good2"] == OK
    assert status["text"].startswith("unreadable") and status["missing"].startswith("missing")
    assert status["silent"].startswith("silent")
    assert sorted(bad["utt_id"]) == ["missing", "silent", "text"]
    good2 = manifest.set_index("utt_id").loc["good2"]
    assert (good2.sample_rate, good2.channels) == (44100, 2)
    assert pd.isna(manifest.set_index("utt_id").loc["missing", "sample_rate"])


def test_fail_mode_stops_and_names_the_files(mixed_corpus):
    with pytest.raises(
        BadAudioError, match=r"(?s)3 of 5 audio files.*text.wav: unreadable: Format not recognised"
    ) as error:
        build_manifest(mixed_corpus, on_bad_audio="fail", progress=False)
    assert "on_bad_audio: skip" in str(error.value)


def test_a_corpus_with_no_usable_audio_is_an_error(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    (tmp_path / "t.csv").write_text("path,label,speaker\nnope.wav,neu,s1\n")
    corpus = read_corpus(
        {
            "type": "manifest",
            "root": str(root),
            "table": str(tmp_path / "t.csv"),
            "label_map": {"neu": "neutral"},
            "default_split": "test",
        }
    )
    with pytest.raises(BadAudioError, match="no audio file passed"):
        build_manifest(corpus, progress=False)


def test_manifest_round_trips_through_parquet(mixed_corpus, tmp_path):
    manifest, _ = build_manifest(mixed_corpus, AudioChecks(min_duration_s=0.1), progress=False)
    manifest.to_parquet(tmp_path / "m.parquet", index=False)
    back = pd.read_parquet(tmp_path / "m.parquet")
    pd.testing.assert_frame_equal(back, manifest, check_dtype=False)
    assert np.isclose(back["duration_s"].iloc[0], 0.6)


def test_leakage_between_splits_is_an_error_naming_the_rows():
    import pandas as pd

    from cuealign.corpora.manifest import LeakageError, check_leakage

    manifest = pd.DataFrame(
        {
            "utt_id": ["a1", "a2", "b1", "b2", "c1"],
            "speaker": ["A", "A", "B", "B", "C"],
            "split": ["train", "train", "test", "test", "test"],
            "path": [f"{u}.wav" for u in ["a1", "a2", "b1", "b2", "c1"]],
            "sha256": ["h1", "h2", "h3", "h4", "h1"],  # c1 is a1's recording under another id
            "status": "ok",
        }
    )
    with pytest.raises(
        LeakageError,
        match=r"1 pairs of utterance ids hold one recording \(1 across splits\): "
        r"a1 \(train, a1.wav\) = c1 \(test, c1.wav\): identical bytes",
    ):
        check_leakage(manifest)
    check_leakage(manifest, same_audio="allow")
    manifest.loc[4, "sha256"] = "h5"
    manifest.loc[2, "split"] = "train"  # speaker B in train and test
    with pytest.raises(LeakageError, match=r"1 speakers have utterances in two splits \(B: test 1, train 1\)"):
        check_leakage(manifest)
    check_leakage(manifest, speaker_in_two_splits="allow")
    # a failed file takes no part
    manifest.loc[2, "status"] = "truncated"
    check_leakage(manifest)


def _speech(seed: int) -> np.ndarray:
    """A voiced utterance of the synthetic corpus' kind (its own content for each seed)."""
    from cuealign.corpora.synthesis import EMOTIONS, make_speakers, synthesize_utterance

    audio, _ = synthesize_utterance(make_speakers(1, 0)[0], EMOTIONS["neutral"], np.random.default_rng(seed))
    return audio


def test_a_copy_whose_bytes_differ_is_found_across_splits_and_twice_in_the_evaluated_split(tmp_path):
    """The red team's cases: a train recording re-encoded as FLAC, at 24 bits, resampled, quieter
    or with 10 ms of silence before it, under a test id; one test recording under two test ids."""
    import soundfile as sf
    from scipy import signal

    from cuealign.corpora.manifest import LeakageError, check_leakage

    root = tmp_path / "c"
    root.mkdir()
    rows = []
    for k in range(6):  # six distinct train recordings, two distinct test ones
        sf.write(root / f"train{k}.wav", _speech(k), 16000, subtype="PCM_16")
        rows.append(f"train{k}.wav,neu,A,train")
    for k in (6, 7):
        sf.write(root / f"test{k}.wav", _speech(k), 16000, subtype="PCM_16")
        rows.append(f"test{k}.wav,neu,B,test")
    source = sf.read(root / "train0.wav")[0]
    copies = {
        "flac.flac": (source, 16000, "PCM_16"),
        "deep.wav": (source, 16000, "PCM_24"),
        "resampled.wav": (signal.resample_poly(source, 441, 160), 44100, "PCM_16"),
        "quiet.wav": (source * 0.25, 16000, "PCM_16"),
        "padded.wav": (np.concatenate([np.zeros(160), source]), 16000, "PCM_16"),
    }
    for name, (audio, rate, subtype) in copies.items():
        sf.write(root / name, audio, rate, subtype=subtype)
    table = tmp_path / "t.csv"

    def manifest(extra_rows):
        table.write_text("path,label,speaker,split\n" + "\n".join(rows + extra_rows) + "\n")
        spec = {"type": "manifest", "root": str(root), "table": str(table), "label_map": {"neu": "neutral"}}
        built, bad = build_manifest(read_corpus(spec), progress=False)
        assert bad.empty
        return built

    distinct = manifest([])
    check_leakage(distinct, evaluated="test")  # eight different recordings: nothing in common
    for name in copies:
        with pytest.raises(
            LeakageError,
            match=r"1 pairs .*\(1 across splits\): train0 \(train, .*train0.wav\) = "
            + name.split(".")[0]
            + r" \(test, .*"
            + name
            + r"\): the same sound, fingerprints correlated",
        ):
            check_leakage(manifest([f"{name},neu,B,test"]), evaluated="test")
    # one test recording under a second test id (a copy in the evaluated split counts twice)
    shutil.copy(root / "test6.wav", root / "again.wav")
    doubled = manifest(["again.wav,neu,B,test"])
    with pytest.raises(LeakageError, match=r"1 within the evaluated split 'test', where each would count twice"):
        check_leakage(doubled, evaluated="test")
    check_leakage(doubled, evaluated="dev")  # not the evaluated split: the same split twice is no leak
    check_leakage(doubled, same_audio="allow", evaluated="test")
