"""The protocol card of one corpus x model: what was evaluated and how, and what the model is
known to have seen, in RUN.json and as a page of the report.

A reader of a result needs, next to the numbers: how raw labels became classes (merges and
drops, with counts), the split protocol with its speaker counts, what was evaluated, and whether
the model may have been trained on this very corpus (the paper left MSP-Podcast out for that).
"""

from __future__ import annotations

import re

import pandas as pd

from cuealign.analysis.accounting import PromptCounts

# What the publishers of each family's released checkpoints state about emotion corpora, read in
# their own files (docs/statistics.md, "Training data stated by the publishers", gives the same, with
# sources). A family not listed here has nothing recorded. Kept to what is written there: none of
# the Qwen publications at hand lists its training corpora, so nothing is inferred for them.
PUBLISHED = {
    "qwen2-audio": {
        "source": "QwenLM/Qwen2-Audio README.md and eval_audio/EVALUATION.md (595360e, 2025-04-21)",
        "training": "no training corpora listed",
        "mentions": {
            "MELD": "evaluation: speech emotion recognition on the MELD test set",
            "IEMOCAP": "evaluation: AIR-Bench's speech chat benchmark, which includes IEMOCAP",
        },
    },
    "qwen2.5-omni": {
        "source": "QwenLM/Qwen2.5-Omni README.md (f8bf58c, 2025-03-29)",
        "training": "no training corpora listed",
        "mentions": {"MELD": "evaluation: speech emotion recognition on MELD"},
    },
    "audio-flamingo-3": {
        "source": (
            "NVIDIA/audio-flamingo, branch audio_flamingo_3: modelcard.md (d60c40d, 2025-07-11) and "
            "llava/data/registry/mixtures.yaml"
        ),
        "training": (
            "model card, training (speech): MSP-Podcast, JL-Corpus, MELD, TESS, OMGEmotion, EmoV-DB; "
            "testing: IEMOCAP; the repository's data mixture audio_speech_all also names IEMOCAP, CREMA-D, "
            "RAVDESS, MSP-Podcast 1.9 and MELD emotion classification sets (its published registry defines "
            "the IEMOCAP one only as a test set)"
        ),
        "mentions": {
            "MSP-Podcast": "training (model card; mixture audio_speech_all: MSP-PODCAST-Publish-1.9)",
            "MELD": "training (model card; mixture audio_speech_all)",
            "IEMOCAP": "testing (model card); named in the data mixture audio_speech_all (repository)",
            "CREMA-D": "named in the data mixture audio_speech_all (repository)",
            "RAVDESS": "named in the data mixture audio_speech_all (repository)",
            "TESS": "training (model card)",
            "JL-Corpus": "training (model card)",
            "EmoV-DB": "training (model card)",
            "OMGEmotion": "training (model card)",
        },
    },
}


# Other spellings of the corpora the publishers name, as a corpus or a known_training_overlap entry
# may write them (compared after corpus_key's normalisation).
ALIASES = {
    "msppodcast": ("msp", "msppod", "msppodcastpublish"),
    "cremad": ("crema",),
    "jlcorpus": ("jl",),
    "emovdb": ("emov",),
    "omgemotion": ("omg", "omgemotionchallenge"),
    "aibo": ("fauaibo", "fauaiboemotioncorpus"),
    "ravdess": ("ravdessspeech",),
}
_CANONICAL = {alias: name for name, aliases in ALIASES.items() for alias in aliases}
_REMARK = re.compile(r"\s*[(\[][^)\]]*[)\]]")  # "IEMOCAP (emotion SFT)"
_VERSION = re.compile(r"(?:[\s_.-]*(?:v(?:ersion)?)?[\s_.-]*\d+(?:[._-]\d+)*)+$", re.IGNORECASE)


def corpus_key(name: str) -> str:
    """A corpus name as the notes compare it: case, punctuation and a version suffix dropped
    (MSP-Podcast, msp_podcast, MSP-Podcast-1.11 and msp_podcast_v1.11 are one corpus), a remark in
    brackets dropped, a documented other spelling mapped to its name (ALIASES)."""
    bare = _VERSION.sub("", _REMARK.sub("", name).strip())
    key = "".join(ch for ch in bare.casefold() if ch.isalnum())
    return _CANONICAL.get(key, key)


def _same_corpus(entry: str, corpus: str, corpus_type: str) -> bool:
    """Whether ``entry`` names this corpus (by its name or its type): the whole normalised names
    must agree, so a short corpus name (a, me) matches nothing it is only part of."""
    wanted = corpus_key(entry)
    return bool(wanted) and wanted in {corpus_key(corpus), corpus_key(corpus_type)}


def published_mentions(family: str | None, corpus: str, corpus_type: str) -> dict[str, str]:
    """What the family's publishers say about this corpus (by its name or type), e.g.
    ``{"IEMOCAP": "testing (model card); ..."}``; empty when they say nothing of it."""
    mentions = PUBLISHED.get(family or "", {}).get("mentions", {})
    return {k: v for k, v in mentions.items() if _same_corpus(k, corpus, corpus_type)}


def published_note(family: str, corpus: str, mentions: dict[str, str]) -> str:
    """The note for a corpus the publishers mention (``mentions``, from published_mentions) that
    known_training_overlap does not name."""
    said = "; ".join(f"{k}: {v}" for k, v in mentions.items())
    return (
        f"models.<name>.known_training_overlap does not name {corpus}, but the publishers of {family} "
        f"mention it ({said}; {PUBLISHED[family]['source']}): check, and set it if the model saw this corpus"
    )


def overlap_warning(corpus: str, corpus_type: str, overlap: list[str]) -> str | None:
    """A warning when the model's known training data names this corpus (its name or type)."""
    hits = [entry for entry in overlap if _same_corpus(entry, corpus, corpus_type)]
    if not hits:
        return None
    return (
        f"the model is known to have been trained on {', '.join(hits)} (models.<name>.known_training_overlap): "
        f"its results on {corpus} may measure memory rather than cue use"
    )


def protocol_card(
    *,
    corpus: str,
    spec: dict,
    manifest: pd.DataFrame,
    prompts: PromptCounts | pd.DataFrame,
    dropped: dict[str, int],
    model: str,
    model_spec: dict,
    folds: list[str] | None = None,
    from_scratch: bool = False,
) -> dict:
    """The card as a dict (JSON-ready). ``manifest`` is the (pooled) manifest the analysis used,
    ``prompts`` every prompt it analysed, ``dropped`` the raw labels the label map dropped.
    ``from_scratch``: the model was trained by this workflow from a random initialisation (a
    finetune entry without base), so no publisher's statement about training data applies."""
    usable = manifest[manifest["status"] == "ok"]
    label_map = spec.get("label_map") or {label: label for label in sorted(usable["label"].unique())}
    classes: dict[str, list[str]] = {}
    for raw, label in label_map.items():
        if label is not None:
            classes.setdefault(label, []).append(raw)
    kept = usable.groupby("orig_label").size().to_dict() if "orig_label" in usable else {}
    if isinstance(prompts, pd.DataFrame):
        prompts = PromptCounts.of(prompts)
    evaluated = prompts.utterances
    overlap = list(model_spec.get("known_training_overlap") or [])
    family = None if from_scratch else model_spec.get("family")
    warning = overlap_warning(corpus, spec["type"], overlap)
    mentions = published_mentions(family, corpus, spec["type"])
    return {
        "corpus": corpus,
        "corpus_type": spec["type"],
        "classes": {label: sorted(raws) for label, raws in sorted(classes.items())},
        "merged": {label: sorted(raws) for label, raws in sorted(classes.items()) if len(raws) > 1},
        "raw_labels_kept": {raw: int(n) for raw, n in sorted(kept.items())},
        "raw_labels_dropped": {raw: int(n) for raw, n in sorted(dropped.items())},
        "protocol": (
            f"leave one session out, pooled over {len(folds)} folds ({', '.join(folds)})"
            if folds
            else f"one split: evaluated split {', '.join(sorted(evaluated['split'].unique()))}"
        ),
        "splits": {
            split: {"utterances": int(len(rows)), "speakers": int(rows["speaker"].nunique())}
            for split, rows in sorted(usable.groupby("split"))
        },
        "failed_audio_checks": int((manifest["status"] != "ok").sum()),
        "evaluated": {
            "utterances": int(len(evaluated)),
            "speakers": int(evaluated["speaker"].nunique()),
            "per_class": {k: int(v) for k, v in sorted(evaluated["label"].value_counts().items())},
            "conditions": len(prompts.conditions),
        },
        "model": model,
        "model_path": model_spec.get("path"),
        "model_origin": "trained by this workflow from a random initialisation" if from_scratch else None,
        "known_training_overlap": overlap,
        "overlap_warning": warning,
        "published": (
            {
                "family": family,
                **{k: v for k, v in PUBLISHED[family].items() if k != "mentions"},
                "this_corpus": mentions,
            }
            if family in PUBLISHED
            else None
        ),
        "published_note": published_note(family, corpus, mentions) if mentions and not warning else None,
    }


def card_table(card: dict) -> pd.DataFrame:
    """The card as two columns for the report page."""
    rows = [
        ("corpus", f"{card['corpus']} ({card['corpus_type']})"),
        ("protocol", card["protocol"]),
        ("classes (raw labels)", "; ".join(f"{k} <- {', '.join(v)}" for k, v in card["classes"].items())),
        ("merged", "; ".join(f"{k} <- {' + '.join(v)}" for k, v in card["merged"].items()) or "none"),
        ("raw labels dropped", ", ".join(f"{k} {v}" for k, v in card["raw_labels_dropped"].items()) or "none"),
        ("failed audio checks", str(card["failed_audio_checks"])),
    ]
    rows += [
        (f"split {split}", f"{v['utterances']} utterances, {v['speakers']} speakers")
        for split, v in card["splits"].items()
    ]
    evaluated = card["evaluated"]
    rows += [
        ("evaluated", f"{evaluated['utterances']} utterances of {evaluated['speakers']} speakers"),
        ("evaluated per class", ", ".join(f"{k} {v}" for k, v in evaluated["per_class"].items())),
        ("conditions", str(evaluated["conditions"])),
        *([("intervals and tests", card["inference"])] if card.get("inference") else []),
        ("model", f"{card['model']} ({card['model_path']})"),
        *([("model origin", card["model_origin"])] if card.get("model_origin") else []),
        ("known training overlap", ", ".join(card["known_training_overlap"]) or "none recorded"),
    ]
    published = card.get("published")
    if published:
        rows.append(
            (
                f"released {published['family']} checkpoints: stated by their publishers (for this model if "
                "it is one of them or made from one)",
                f"{published['training']} ({published['source']})",
            )
        )
    if card.get("published_note"):
        rows.insert(0, ("NOTE", card["published_note"]))
    if card["overlap_warning"]:
        rows.insert(0, ("WARNING", card["overlap_warning"]))
    return pd.DataFrame(rows, columns=["", "protocol card"])
