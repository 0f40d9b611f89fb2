"""The protocol card: its counts are the accounting chain's; a known training overlap is shown."""

import pandas as pd

from cuealign.accounting import accounting
from cuealign.card import card_table, overlap_warning, protocol_card
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


def _card(manifest, prompts, *, dropped, overlap):
    return protocol_card(
        corpus="iemocap",
        spec={"type": "iemocap", "label_map": IEMOCAP_MAP},
        manifest=manifest,
        prompts=prompts,
        dropped=dropped,
        model="af3",
        model_spec={"path": "nvidia/audio-flamingo-3-hf", "known_training_overlap": overlap},
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
    assert card_table(card).iloc[0, 0] == "corpus"


def test_a_known_training_overlap_with_this_corpus_is_a_warning_on_top():
    assert overlap_warning("msp", "manifest", ["MSP-Podcast", "IEMOCAP"]) is not None  # named by the corpus
    assert "IEMOCAP" in overlap_warning("iemocap", "iemocap", ["IEMOCAP (emotion SFT)"])
    assert overlap_warning("aibo", "aibo", ["IEMOCAP", "MELD"]) is None
    table = card_table(_card(*_study(), dropped={}, overlap=["IEMOCAP"]))
    assert table.iloc[0, 0] == "WARNING" and "trained on IEMOCAP" in table.iloc[0, 1]
