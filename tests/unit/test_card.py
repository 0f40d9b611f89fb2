"""The protocol card: its counts are the accounting chain's; a known training overlap is shown."""

from pathlib import Path

import pandas as pd

from cuealign.analysis.accounting import accounting
from cuealign.analysis.card import PUBLISHED, card_table, overlap_warning, protocol_card, published_mentions
from cuealign.interventions import Condition

IEMOCAP_MAP = {"ang": "angry", "hap": "happy", "exc": "happy", "neu": "neutral", "sad": "sad", "fru": None}


def _study():
    rows = []
    for i in range(40):
        speaker = f"Ses0{i % 4 + 1}{'FM'[i // 4 % 2]}"
        raw = ["ang", "hap", "exc", "neu", "sad"][i % 5]
        rows.append(
            dict(
                utt_id=f"u{i:02d}",
                label=IEMOCAP_MAP[raw],
                orig_label=raw,
                speaker=speaker,
                split="test" if speaker.startswith("Ses04") else "train",
                status="ok" if i != 3 else "truncated: ...",
            )
        )
    manifest = pd.DataFrame(rows)
    usable = manifest[(manifest["status"] == "ok") & (manifest["split"] == "test")]
    conditions = [Condition("none"), Condition("aligned")]
    prompts = pd.DataFrame(
        [
            {"utt_id": r.utt_id, **c.as_row(), "label": r.label, "speaker": r.speaker, "split": r.split}
            for r in usable.itertuples()
            for c in conditions
        ]
    )
    return manifest, prompts


def _card(manifest, prompts, *, dropped, overlap, family="audio-flamingo-3", corpus="iemocap", corpus_type="iemocap"):
    return protocol_card(
        corpus=corpus,
        spec={"type": corpus_type, "label_map": IEMOCAP_MAP},
        manifest=manifest,
        prompts=prompts,
        dropped=dropped,
        model="af3",
        model_spec={"path": "nvidia/audio-flamingo-3-hf", "family": family, "known_training_overlap": overlap},
    )


def test_the_cards_counts_are_the_accounting_chains():
    manifest, prompts = _study()
    card = _card(manifest, prompts, dropped={"fru": 7, "xxx": 3}, overlap=[])
    predictions = prompts.assign(pred=prompts["label"])
    uar = pd.DataFrame({"condition": ["none", "aligned"], "n": [len(prompts) // 2] * 2})
    chain = accounting(manifest, prompts, predictions["pred"].value_counts(), uar).set_index("step")["count"]
    assert (
        card["evaluated"]["utterances"] == chain["evaluated"] and card["evaluated"]["conditions"] == chain["conditions"]
    )
    assert sum(v["utterances"] for v in card["splits"].values()) == chain["usable"]
    assert card["failed_audio_checks"] == len(manifest) - chain["usable"]
    assert card["merged"] == {"happy": ["exc", "hap"]} and card["raw_labels_dropped"] == {"fru": 7, "xxx": 3}
    assert card["splits"]["test"]["speakers"] == 2 and card["overlap_warning"] is None
    assert card_table(_card(manifest, prompts, dropped={}, overlap=[], family="clap")).iloc[0, 0] == "corpus"


def test_a_known_training_overlap_with_this_corpus_is_a_warning_on_top():
    assert overlap_warning("msp", "manifest", ["MSP-Podcast", "IEMOCAP"]) is not None  # named by the corpus
    assert "IEMOCAP" in overlap_warning("iemocap", "iemocap", ["IEMOCAP (emotion SFT)"])
    assert overlap_warning("aibo", "aibo", ["IEMOCAP", "MELD"]) is None
    # names compared normalised: case, punctuation, a version suffix, a remark, documented aliases
    for corpus in ("msp_podcast", "MSP-Podcast-1.11", "msp_podcast_v1.11", "MSPPodcast"):
        assert overlap_warning(corpus, "manifest", ["MSP-Podcast"]) is not None, corpus
    assert overlap_warning("crema_d", "manifest", ["CREMA-D"]) is not None
    assert overlap_warning("my_corpus", "manifest", ["MSP-PODCAST-Publish-1.9"]) is None
    # a short corpus name is no part of another's: no false warning
    for corpus in ("a", "me", "d", "pod"):
        assert overlap_warning(corpus, "manifest", ["MELD", "IEMOCAP", "CREMA-D", "MSP-Podcast"]) is None, corpus
    table = card_table(_card(*_study(), dropped={}, overlap=["IEMOCAP"]))
    assert table.iloc[0, 0] == "WARNING" and "trained on IEMOCAP" in table.iloc[0, 1]


def test_what_the_publishers_state_is_on_the_card_and_a_note_when_the_config_does_not_say_it():
    manifest, prompts = _study()
    # AF3's model card lists IEMOCAP as a test set and its training mixture names it: the user has
    # not set known_training_overlap, so the card opens with a note naming the source
    card = _card(manifest, prompts, dropped={}, overlap=[])
    assert card["overlap_warning"] is None and "IEMOCAP" in card["published"]["this_corpus"]
    assert "audio_speech_all" in card["published_note"] and "modelcard.md" in card["published_note"]
    table = card_table(card)
    assert table.iloc[0, 0] == "NOTE" and "does not name iemocap" in table.iloc[0, 1]
    row = (
        "released audio-flamingo-3 checkpoints: stated by their publishers "
        "(for this model if it is one of them or made from one)"
    )
    stated = table.set_index("").loc[row].iloc[0]
    assert "MSP-Podcast" in stated and "modelcard.md" in stated
    # set from the card: a warning, and no note
    card = _card(manifest, prompts, dropped={}, overlap=["IEMOCAP"])
    assert card["published_note"] is None and card_table(card).iloc[0, 0] == "WARNING"
    # set in another spelling, for a table corpus named its own way: the same warning, no note asking
    # the user to set what they set
    card = _card(manifest, prompts, dropped={}, overlap=["MSP-Podcast"], corpus="msp_podcast", corpus_type="manifest")
    assert card["overlap_warning"] is not None and card["published_note"] is None
    # a corpus the publishers do not mention: the statement is shown, no note
    card = _card(manifest, prompts, dropped={}, overlap=[], family="qwen2-audio", corpus="aibo", corpus_type="aibo")
    assert card["published_note"] is None and card["published"]["this_corpus"] == {}
    assert card["published"]["training"] == "no training corpora listed"
    # a table corpus named after MSP-Podcast is matched by its name; an unlisted family has nothing
    assert list(published_mentions("audio-flamingo-3", "msp_podcast_v1.11", "manifest")) == ["MSP-Podcast"]
    assert published_mentions("qwen2-audio", "msp_podcast", "manifest") == {}
    assert published_mentions("clap", "iemocap", "iemocap") == {}
    assert list(published_mentions("audio-flamingo-3", "crema_d", "manifest")) == ["CREMA-D"]
    assert published_mentions("audio-flamingo-3", "contessa", "manifest") == {}  # TESS is no part of it
    assert _card(manifest, prompts, dropped={}, overlap=[], family="clap")["published"] is None


def test_the_readme_lists_what_the_code_shows_for_each_family():
    readme = (Path(__file__).parents[2] / "docs/statistics.md").read_text()
    section = readme.split("### Training data stated by the publishers", 1)[1].split("\n## ", 1)[0]
    for family, stated in PUBLISHED.items():
        row = next(line for line in section.splitlines() if line.startswith(f"| `{family}`"))
        assert stated["training"] in row and stated["source"] in row, family
        for corpus in stated["mentions"]:
            assert corpus in row, (family, corpus)


def test_a_model_trained_here_from_scratch_gets_no_publishers_statement():
    """The demo ALM (a finetune entry without base) is no released checkpoint: no publisher's
    training-data row or note, and the card says where it came from."""
    manifest, prompts = _study()
    card = protocol_card(
        corpus="iemocap",
        spec={"type": "iemocap", "label_map": IEMOCAP_MAP},
        manifest=manifest,
        prompts=prompts,
        dropped={},
        model="demo-alm",
        model_spec={"path": "results/demo/demo-alm/finetune/model", "family": "audio-flamingo-3"},
        from_scratch=True,
    )
    assert card["published"] is None and card["published_note"] is None
    table = card_table(card).set_index("")
    assert table.loc["model origin"].iloc[0] == "trained by this workflow from a random initialisation"
    assert not any("stated by their publishers" in name for name in table.index)
