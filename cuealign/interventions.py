"""Token interventions: the audio stays fixed, only the concept-token block changes.

Conditions (their names are the ``condition`` column everywhere downstream):
  none              no token block (audio only)
  aligned           the utterance's own tokens
  conflict          every ordinal bin inverted (VERY_LOW<->VERY_HIGH, LOW<->HIGH, MID stays), as
                    the paper; VOICE_QUALITY stays unless conditions.conflict_voice_quality, then
                    through CONFLICT_VOICE_QUALITY; UNVOICED stays
  shuffle_s{seed}   token strings permuted across the utterances of the evaluated split, none kept
  corrupt_p{p}_s{seed}  each token, with probability p, replaced by a token drawn uniformly from
                    its concept's whole vocabulary (the paper's; it may stay the same), or with
                    conditions.corrupt_draw: other from the other tokens (p is then the share changed)
  swap_{CONCEPT}    only that concept inverted as in conflict (attributes effects per concept)
  tokens_only       aligned tokens with silence of the same length instead of the audio

Every random draw comes from a Generator seeded by the condition's own numbers and visits
utterances in utt_id order, so a condition is the same whatever else is configured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from cuealign.tokens import token_column

VOICE_QUALITY = "VOICE_QUALITY"
# Opposites on the phonation continuum (lax <-> tense, regular <-> irregular). CREAKY has no
# opposite in the vocabulary and stays, as UNVOICED does; the map is its own inverse.
CONFLICT_VOICE_QUALITY = {
    "BREATHY": "PRESSED",
    "PRESSED": "BREATHY",
    "MODAL": "ROUGH",
    "ROUGH": "MODAL",
    "CREAKY": "CREAKY",
    "UNVOICED": "UNVOICED",
}
SILENCE = "silence"
ORIGINAL = "original"


Kind = Literal["none", "aligned", "conflict", "shuffle", "corrupt", "swap", "tokens_only"]
# How prompts, predictions and tables carry a condition: its name (for reading) and its parts
# (for computing); nothing downstream parses the name.
CONDITION_COLUMNS = ["condition", "kind", "p", "seed", "concept"]


@dataclass(frozen=True)
class Condition:
    """One intervention; ``name`` is what tables call it, the fields are what code reads."""

    kind: Kind
    seed: int | None = None
    p: float | None = None
    concept: str | None = None

    @property
    def name(self) -> str:
        if self.kind == "shuffle":
            return f"shuffle_s{self.seed}"
        if self.kind == "corrupt":
            return f"corrupt_p{self.p:g}_s{self.seed}"
        if self.kind == "swap":
            return f"swap_{self.concept}"
        return self.kind

    def as_row(self) -> dict:
        """The CONDITION_COLUMNS of this condition (p a float, seed an int, or null)."""
        return {
            "condition": self.name,
            "kind": self.kind,
            "p": float(self.p) if self.p is not None else None,
            "seed": self.seed,
            "concept": self.concept,
        }

    @property
    def audio(self) -> str:
        return SILENCE if self.kind == "tokens_only" else ORIGINAL

    @property
    def has_tokens(self) -> bool:
        return self.kind != "none"


def seeds_mean_name(kind: str, p: float | None) -> str:
    """What the analysis calls the mean over the seeds of a shuffle or of one corruption level
    (its row in the tables and its name in analysis.families)."""
    return f"{kind}_mean" if p is None or p != p else f"{kind}_p{p:g}_mean"


def tested_names(conditions: list[Condition]) -> list[str]:
    """The names a comparison can use: each condition without seeds, and each mean over seeds
    (a single seed is tested through its mean)."""
    out = [c.name for c in conditions if c.seed is None]
    out += list(dict.fromkeys(seeds_mean_name(c.kind, c.p) for c in conditions if c.seed is not None))
    return out


# The paper's comparisons (Section 4): the token gain; aligned against each full perturbation;
# each full perturbation against audio only (the "format prior", Holm-corrected there). Seeded
# conditions enter as the mean over their seeds.
PAPER_FAMILIES = {
    "gain": ["aligned - none"],
    "aligned vs perturbed": ["aligned - conflict", "aligned - shuffle_mean", "aligned - corrupt_p1_mean"],
    "perturbed vs audio only": ["conflict - none", "shuffle_mean - none", "corrupt_p1_mean - none"],
}
EXPLORATORY = "exploratory"


def parse_comparison(text: str) -> tuple[str, str]:
    """'a - b' -> (a, b)."""
    parts = [part.strip() for part in text.split(" - ")]
    if len(parts) != 2 or not all(parts):
        raise ValueError(
            f"config: analysis.families: a comparison is written 'a - b' (two condition names), not {text!r}"
        )
    return parts[0], parts[1]


def check_families(families: dict[str, list[str]], conditions: list[Condition]) -> None:
    """Declared comparison families name conditions of the run, never compare a condition with
    itself (corruption at p = 0 asks what aligned asks) and never repeat a test."""
    names = tested_names(conditions)
    aligned_too = {seeds_mean_name(c.kind, c.p) for c in conditions if c.kind == "corrupt" and c.p == 0}
    seen: dict[tuple[str, str], str] = {}
    for family, texts in families.items():
        where = f"config: analysis.families.{family}"
        if family == EXPLORATORY:
            raise ValueError(
                f"{where}: {EXPLORATORY!r} is the family of every undeclared comparison; choose another name"
            )
        for text in texts:
            a, b = parse_comparison(text)
            for x in (a, b):
                if x not in names:
                    raise ValueError(
                        f"{where}: {text!r} names {x!r}, which this run does not have; the names are {names}"
                    )
            key = tuple("aligned" if x in aligned_too else x for x in (a, b))
            if key[0] == key[1]:
                raise ValueError(f"{where}: {text!r} compares a condition with itself (corruption at p = 0 is aligned)")
            for other in (key, key[::-1]):
                if other in seen:
                    raise ValueError(
                        f"{where}: {text!r} repeats the test {seen[other]!r}; declare each comparison once"
                    )
            seen[key] = f"{family}: {text}"


def conditions_from_config(spec: dict, concepts: list[str]) -> list[Condition]:
    """The configured conditions in a fixed order (config: conditions)."""
    out = [Condition("none"), Condition("aligned")]
    if spec["conflict"]:
        out.append(Condition("conflict"))
    out += [Condition("shuffle", seed=s) for s in spec["shuffle_seeds"]]
    for p in spec["corrupt_p"]:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"config: conditions.corrupt_p holds {p}, outside [0, 1]")
        out += [Condition("corrupt", seed=s, p=float(p)) for s in spec["corrupt_seeds"]]
    for concept in spec["swap"]:
        if concept not in concepts:
            raise ValueError(f"config: conditions.swap names {concept!r}; the concepts are {concepts}")
        out.append(Condition("swap", concept=concept))
    if spec["tokens_only"]:
        out.append(Condition("tokens_only"))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"config: conditions repeat: {sorted({n for n in names if names.count(n) > 1})}")
    return out


def invert(token: str, labels: list[str]) -> str:
    """The opposite bin of an ordinal token (the middle bin and UNVOICED stay)."""
    if token not in labels:
        return token
    return labels[len(labels) - 1 - labels.index(token)]


def conflict_tokens(tokens: pd.DataFrame, vocabularies: dict[str, list[str]], concepts: list[str]) -> pd.DataFrame:
    """``tokens`` with the given concepts inverted (VOICE_QUALITY, which has no order, through
    CONFLICT_VOICE_QUALITY)."""
    out = tokens.copy()
    for concept in concepts:
        if concept == VOICE_QUALITY:
            out[concept] = out[concept].map(CONFLICT_VOICE_QUALITY)
        else:
            out[concept] = out[concept].map(lambda t, labels=vocabularies[concept]: invert(t, labels))
    return out


def corrupt_tokens(
    tokens: pd.DataFrame,
    vocabularies: dict[str, list[str]],
    *,
    p: float,
    seed: int,
    draw: Literal["vocabulary", "other"] = "vocabulary",
) -> pd.DataFrame:
    """Each token, with probability ``p``, replaced by a token drawn uniformly from its concept's
    vocabulary: the whole vocabulary (``vocabulary``, the paper's definition: the draw may give the
    same token back, so p = 1 changes a share (k - 1) / k of a k-token vocabulary), or the other
    tokens only (``other``: p is then the share that changes)."""
    out = tokens.copy()
    rng = np.random.default_rng([seed, int(round(p * 1_000_000))])
    for concept, vocabulary in vocabularies.items():  # dict order: the config's concept order
        vocabulary = np.asarray(vocabulary)
        change = rng.random(len(out)) < p
        draws = rng.random(len(out))
        current = out[concept].to_numpy()
        if draw == "vocabulary":
            replaced = vocabulary[(draws * len(vocabulary)).astype(int)]
        else:
            replaced = []
            for token, u in zip(current, draws, strict=True):
                others = vocabulary[vocabulary != token]  # UNVOICED is in no vocabulary: all are others
                replaced.append(others[int(u * len(others))])
        out[concept] = np.where(change, replaced, current)
    return out


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of range(n) that moves every element (where n > 1), uniform over all such:
    random permutations drawn until one has no fixed point (about e = 2.7 draws on average)."""
    while True:
        order = rng.permutation(n)
        if n < 2 or not (order == np.arange(n)).any():
            return order


def shuffle_rows(tokens: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """The utterances' token sets permuted across utterances (marginals kept, alignment broken):
    a derangement, so that every utterance gets another utterance's tokens, as the paper's
    shuffle does (a plain permutation gave 0-2 of 192 utterances their own back)."""
    rng = np.random.default_rng([seed, 0x5EED])
    shuffled = tokens.iloc[derangement(len(tokens), rng)].reset_index(drop=True)
    shuffled["utt_id"] = tokens["utt_id"].to_numpy()
    return shuffled


def condition_tokens(
    tokens: pd.DataFrame,
    conditions: list[Condition],
    *,
    vocabularies: dict[str, list[str]],
    serialise: Callable[[pd.DataFrame], list[str]],
    corrupt_draw: Literal["vocabulary", "other"] = "vocabulary",
    conflict_voice_quality: bool = False,
    only: set[str] | None = None,
) -> pd.DataFrame:
    """One row per utterance x condition: utt_id, the condition as data (CONDITION_COLUMNS), audio,
    one token_<CONCEPT> column per concept (null under none) and token_string.

    ``tokens`` holds the evaluated split only (shuffles permute within it); ``vocabularies`` are
    the concepts in prompt order; ``serialise`` turns a token table into strings
    (TokensMeta.serialise). ``only``: the rows of these utterances (one shard's), drawn as for
    all (every shuffle and corruption is drawn over the whole split, then these rows are kept).
    """
    tokens = tokens.sort_values("utt_id").reset_index(drop=True)
    kept = slice(None) if only is None else tokens["utt_id"].isin(only).to_numpy()
    concepts = list(vocabularies)
    # the paper's conflict inverts the ordinal concepts; VOICE_QUALITY has no order to invert
    inverted = [c for c in concepts if c != VOICE_QUALITY or conflict_voice_quality]
    frames = []
    for condition in conditions:
        if condition.kind in ("none", "aligned", "tokens_only"):
            changed = tokens
        elif condition.kind == "conflict":
            changed = conflict_tokens(tokens, vocabularies, inverted)
        elif condition.kind == "swap":
            changed = conflict_tokens(tokens, vocabularies, [condition.concept])
        elif condition.kind == "shuffle":
            changed = shuffle_rows(tokens, seed=condition.seed)
        elif condition.kind == "corrupt":
            changed = corrupt_tokens(tokens, vocabularies, p=condition.p, seed=condition.seed, draw=corrupt_draw)
        else:  # pragma: no cover - Condition kinds are closed
            raise ValueError(condition.kind)
        changed = changed[kept]
        frame = pd.DataFrame(
            {"utt_id": tokens["utt_id"].to_numpy()[kept], **condition.as_row(), "audio": condition.audio}
        )
        for concept in concepts:
            frame[token_column(concept)] = changed[concept].to_numpy() if condition.has_tokens else None
        frame["token_string"] = serialise(changed) if condition.has_tokens else ""
        frames.append(frame)
    return pd.concat(frames, ignore_index=True).astype({"p": "float64", "seed": "Int64", "concept": "object"})
