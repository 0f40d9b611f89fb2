from pathlib import Path

import pandas as pd
import pytest

from cuealign.corpora import CorpusError, annotation_files, read_corpus
from cuealign.workflow.config import config_schema
from tests.fakes import make_aibo, make_iemocap, write_tone

IEMOCAP_MAP = config_schema()["$defs"]["iemocap"]["properties"]["label_map"]["default"]
AIBO_MAP = config_schema()["$defs"]["aibo"]["properties"]["label_map"]["default"]


def test_iemocap_rows_labels_speakers_genders_splits(iemocap_root):
    result = read_corpus(
        {
            "type": "iemocap",
            "root": str(iemocap_root),
            "label_map": IEMOCAP_MAP,
            "sessions": [1, 2, 3, 4, 5],
            "test_sessions": [5],
            "dev_sessions": [],
        }
    )
    table = result.table.set_index("utt_id")
    # 14 annotated (12 + one in each of sessions 3 and 4), 3 dropped by the map (fru, xxx, sur)
    assert len(table) == 11
    assert result.dropped == {"fru": 1, "sur": 1, "xxx": 1}
    # speaker = session + letter of the last field, not of the dialog
    row = table.loc["Ses01F_impro01_M000"]
    assert (row.speaker, row.gender, row.label, row.orig_label, row.split) == ("Ses01M", "M", "angry", "ang", "train")
    assert table.loc["Ses01M_script01_1_F000", "speaker"] == "Ses01F"
    # exc and hap merge into happy
    assert table.loc["Ses01F_impro01_F001", "label"] == "happy"
    assert table.loc["Ses01M_script01_1_M000", "label"] == "happy"
    assert set(table.loc[table["split"] == "test"].index) == {"Ses05M_impro03_M000", "Ses05M_impro03_F000"}
    assert sorted(table["label"].unique()) == ["angry", "happy", "neutral", "sad"]
    assert Path(table.loc["Ses02F_impro02_F000", "path"]).is_file()
    assert Path(table.loc["Ses02F_impro02_F000", "path"]).parent.name == "Ses02F_impro02"


def test_iemocap_leave_one_session_out(iemocap_root):
    result = read_corpus(
        {"type": "iemocap", "root": str(iemocap_root), "label_map": IEMOCAP_MAP}, test_sessions=[2], dev_sessions=[1]
    )
    splits = result.table.groupby("split")["speaker"].unique().map(sorted).to_dict()
    assert splits["test"] == ["Ses02F", "Ses02M"]
    assert splits["dev"] == ["Ses01F", "Ses01M"]
    assert set(splits["train"]) == {"Ses03M", "Ses04M", "Ses05F", "Ses05M"}


def test_iemocap_unknown_label_is_an_error(tmp_path):
    root = make_iemocap(tmp_path / "I", rows=[(1, "Ses01F_impro01", "F000", "bored")], write_audio=False)
    with pytest.raises(CorpusError, match=r"'bored' \(1 rows\).*label_map"):
        read_corpus({"type": "iemocap", "root": str(root), "label_map": IEMOCAP_MAP}, sessions=[1])


def test_an_iemocap_turn_line_that_does_not_parse_is_an_error_naming_file_and_line(iemocap_root):
    path = iemocap_root / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    lines = path.read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if "Ses01F_impro01_M000" in line)
    lines[number] = lines[number].replace("\t", "    ")  # an editor turned the tabs into spaces
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorpusError, match=rf"Ses01F_impro01.txt:{number + 1}: a turn line that does not parse"):
        read_corpus({"type": "iemocap", "root": str(iemocap_root), "label_map": IEMOCAP_MAP})


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig", "utf-32"])
def test_annotation_files_saved_by_an_editor_in_unicode_lose_no_utterance(iemocap_root, aibo_root, encoding):
    """An IEMOCAP or FAU-Aibo annotation file re-saved as UTF-16 (little or big endian), UTF-8 with
    a BOM or UTF-32 is read by its byte-order mark: every utterance is kept, not just the files that
    stayed ASCII (decoding with replacement used to garble its lines into silence)."""
    spec = {"type": "iemocap", "root": str(iemocap_root), "label_map": IEMOCAP_MAP}
    before = read_corpus(spec)
    path = iemocap_root / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    bom = {"utf-16": b"", "utf-16-be": b"\xfe\xff", "utf-8-sig": b"", "utf-32": b""}[encoding]
    path.write_bytes(bom + path.read_text().encode(encoding))
    after = read_corpus(spec)
    pd.testing.assert_frame_equal(after.table, before.table)
    assert after.dropped == before.dropped
    labels = aibo_root / "labels/IS2009EmotionChallenge/chunk_labels_5cl_corpus.txt"
    aibo = {"type": "aibo", "root": str(aibo_root), "labels": str(labels.relative_to(aibo_root)), "label_map": AIBO_MAP}
    aibo_before = read_corpus(aibo)
    labels.write_bytes(bom + labels.read_text().encode(encoding))
    pd.testing.assert_frame_equal(read_corpus(aibo).table, aibo_before.table)


@pytest.mark.parametrize(
    "data, message",
    [
        ("utf-16-le", "UTF-16 without a byte-order mark"),
        ("latin-1", r"not UTF-8 \(byte 0xe9 at offset \d+\); save it as UTF-8"),
    ],
)
def test_an_annotation_file_in_another_encoding_is_an_error_naming_it(iemocap_root, data, message):
    path = iemocap_root / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    text = path.read_text() + "% évaluateur\n"
    path.write_bytes(text.encode(data))
    with pytest.raises(CorpusError, match=rf"Ses01F_impro01.txt: {message}"):
        read_corpus({"type": "iemocap", "root": str(iemocap_root), "label_map": IEMOCAP_MAP})


def test_iemocap_missing_session_names_it(tmp_path):
    with pytest.raises(CorpusError, match="IEMOCAP session 1"):
        read_corpus({"type": "iemocap", "root": str(tmp_path), "label_map": IEMOCAP_MAP})


def test_aibo_split_speakers_and_dev_is_speaker_disjoint(aibo_root):
    result = read_corpus({"type": "aibo", "root": str(aibo_root), "label_map": AIBO_MAP}, dev_fraction=0.4, seed=1)
    table = result.table
    assert len(table) == 8 and result.dropped == {}
    assert table.set_index("utt_id").loc["Ohm_03_010_02", "speaker"] == "Ohm_03"
    assert set(table.loc[table["split"] == "test", "speaker"]) == {"Mont_01", "Mont_02"}
    dev = set(table.loc[table["split"] == "dev", "speaker"])
    train = set(table.loc[table["split"] == "train", "speaker"])
    assert len(dev) == 2 and dev.isdisjoint(train) and all(s.startswith("Ohm") for s in dev | train)
    assert table["gender"].isna().all()
    assert dict(zip(table["orig_label"], table["label"], strict=True))["E"] == "emphatic"
    # the same seed draws the same dev speakers
    again = read_corpus({"type": "aibo", "root": str(aibo_root), "label_map": AIBO_MAP}, dev_fraction=0.4, seed=1)
    assert again.table.equals(table)


def test_aibo_explicit_dev_speakers(aibo_root):
    table = read_corpus({"type": "aibo", "root": str(aibo_root), "label_map": AIBO_MAP}, dev_speakers=["Ohm_02"]).table
    assert set(table.loc[table["split"] == "dev", "utt_id"]) == {"Ohm_02_003_00"}
    with pytest.raises(CorpusError, match="Mont_01"):
        read_corpus({"type": "aibo", "root": str(aibo_root), "label_map": AIBO_MAP}, dev_speakers=["Mont_01"])


def test_aibo_unknown_school_names_the_line(tmp_path):
    root = make_aibo(tmp_path / "a", rows=[("Ohm_01_001_00", "A"), ("Bonn_01_001_00", "N")])
    with pytest.raises(CorpusError, match=r"chunk_labels_5cl_corpus.txt:2: chunk 'Bonn_01_001_00'"):
        read_corpus({"type": "aibo", "root": str(root), "label_map": AIBO_MAP})


def _table_corpus(tmp_path, text, *, name="meta.csv", label_map=None):
    root = tmp_path / "corpus"
    for k, rel in enumerate(("a/x.wav", "a/y.wav", "b/z.wav")):
        write_tone(root / rel, envelope=k)
    table = tmp_path / name
    table.write_text(text)
    spec = {
        "type": "manifest",
        "root": str(root),
        "table": str(table),
        "label_map": label_map or {"ang": "angry", "neu": "neutral", "oth": None},
        "default_split": "test",
    }
    return spec


def test_table_corpus_reads_csv_and_tsv(tmp_path):
    spec = _table_corpus(tmp_path, "path,label,speaker,gender\na/x.wav,ang,s1,F\na/y.wav,neu,s1,F\nb/z.wav,oth,s2,\n")
    result = read_corpus(spec)
    assert result.table["utt_id"].tolist() == ["a/x", "a/y"]
    assert result.dropped == {"oth": 1}
    assert (result.table["split"] == "test").all()
    tsv = _table_corpus(tmp_path, "utt_id\tpath\tlabel\tspeaker\tsplit\nu1\ta/x.wav\tang\ts1\ttrain\n", name="meta.tsv")
    row = read_corpus(tsv).table.iloc[0]
    assert (row.utt_id, row.split, row.gender) == ("u1", "train", None)


@pytest.mark.parametrize(
    "text, message",
    [
        ("path,label,speaker\n../outside.wav,ang,s1\n", "outside the corpus root"),
        ("path,label,speaker\n/etc/passwd,ang,s1\n", "outside the corpus root"),
        ("path,label,speaker\na/x.wav,happy,s1\n", r"'happy' \(1 rows\)"),
        ("utt_id,path,label,speaker\nu,a/x.wav,ang,s1\nu,a/y.wav,neu,s1\n", "duplicate utterance ids"),
        ("path,label\na/x.wav,ang\n", r"missing columns \['speaker'\]"),
        ("path,label,speaker,split\na/x.wav,ang,s1,val\n", "split must be one of"),
        ("path,label,speaker,gender\na/x.wav,ang,s1,female\n", "gender must be F, M or empty"),
    ],
)
def test_table_corpus_errors_name_the_problem(tmp_path, text, message):
    with pytest.raises(CorpusError, match=message):
        read_corpus(_table_corpus(tmp_path, text))


def test_annotation_files_are_the_label_sources(iemocap_root, aibo_root):
    iem = annotation_files({"type": "iemocap", "root": str(iemocap_root), "sessions": [1, 5]})
    assert [p.name for p in iem] == ["Ses01F_impro01.txt", "Ses01M_script01_1.txt", "Ses05M_impro03.txt"]
    (aibo,) = annotation_files(
        {"type": "aibo", "root": str(aibo_root), "labels": "labels/IS2009EmotionChallenge/chunk_labels_5cl_corpus.txt"}
    )
    assert aibo.name == "chunk_labels_5cl_corpus.txt"


def test_speaker_ids_lose_surrounding_spaces_and_case_clashes_are_errors(tmp_path):
    import pandas as pd

    from cuealign.corpora.common import CorpusError, CorpusTable

    def table(speakers):
        n = len(speakers)
        return pd.DataFrame(
            {
                "utt_id": [f"u{i}" for i in range(n)],
                "path": [f"/a/u{i}.wav" for i in range(n)],
                "label": "angry",
                "orig_label": "ang",
                "speaker": speakers,
                "gender": "F",
                "split": "test",
            }
        )

    assert CorpusTable(table(["F05", "F05 ", " F05", "M01"])).table["speaker"].tolist() == ["F05", "F05", "F05", "M01"]
    with pytest.raises(CorpusError, match=r"differ only in case: 'F05' \(2 utterances\) and 'f05' \(1 utterances\)"):
        CorpusTable(table(["F05", "F05", "f05"]))
    with pytest.raises(CorpusError, match="empty speaker id"):
        CorpusTable(table(["F05", "  "]))


def _table_spec(tmp_path, text, *, encoding="utf-8"):
    (tmp_path / "audio").mkdir(exist_ok=True)
    (tmp_path / "meta.csv").write_bytes(text.encode(encoding))
    return {"type": "manifest", "root": str(tmp_path / "audio"), "table": str(tmp_path / "meta.csv")}


@pytest.mark.parametrize(
    "text, encoding, message",
    [
        (
            "path,label,speaker,split\na.wav,wütend,s1,test\n",
            "latin-1",
            r"meta.csv: not UTF-8 text .* save the table as UTF-8",
        ),
        ("path,label,speaker,split\na.wav,ang,s1,test\n", "utf-16", r"meta.csv: not UTF-8 text"),
        ("path,label,speaker,split\n", "utf-8", r"meta.csv: a header and no rows"),
        ("", "utf-8", r"meta.csv: the table is empty"),
    ],
)
def test_an_unreadable_table_names_the_file_and_the_fix(tmp_path, text, encoding, message):
    spec = _table_spec(tmp_path, text, encoding=encoding)
    with pytest.raises(CorpusError, match=message):
        read_corpus(spec | {"label_map": {"ang": "angry", "wütend": "angry"}})


def test_an_empty_class_name_and_a_home_folder(tmp_path, monkeypatch):
    spec = _table_spec(tmp_path, "path,label,speaker,split\na.wav,ang,s1,test\n")
    with pytest.raises(CorpusError, match=r"label_map maps \['ang'\] to an empty class name"):
        read_corpus(spec | {"label_map": {"ang": " "}})
    monkeypatch.setenv("HOME", str(tmp_path))
    table = read_corpus(spec | {"root": "~/audio", "table": "~/meta.csv", "label_map": {"ang": "angry"}}).table
    assert table["path"].iloc[0] == str((tmp_path / "audio" / "a.wav").resolve())
