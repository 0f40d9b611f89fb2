"""Token interventions: the audio stays fixed, only the concept-token block changes.

Conditions (their names are the ``condition`` column everywhere downstream):
  none              no token block (audio only)
  aligned           the utterance's own tokens
  conflict          every ordinal bin inverted (VERY_LOW<->VERY_HIGH, LOW<->HIGH, MID stays);
                    VOICE_QUALITY through CONFLICT_VOICE_QUALITY; UNVOICED stays
  shuffle_s{seed}   token strings permuted across the utterances of the evaluated split
  corrupt_p{p}_s{seed}  each token, with probability p, replaced by a different token drawn
                    uniformly from its concept's vocabulary (so p is the share that changes)
  swap_{CONCEPT}    only that concept inverted as in conflict (attributes effects per concept)
  tokens_only       aligned tokens with silence of the same length instead of the audio

Every random draw comes from a Generator seeded by the condition's own numbers and visits
utterances in utt_id order, so a condition is the same whatever else is configured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

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


@dataclass(frozen=True)
class Condition:
    """One intervention; ``name`` is what tables call it."""

    kind: str  # none, aligned, conflict, shuffle, corrupt, swap, tokens_only
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

    @property
    def audio(self) -> str:
        return SILENCE if self.kind == "tokens_only" else ORIGINAL

    @property
    def has_tokens(self) -> bool:
        return self.kind != "none"


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
    """``tokens`` with the given concepts inverted."""
    out = tokens.copy()
    for concept in concepts:
        if concept == VOICE_QUALITY:
            out[concept] = out[concept].map(CONFLICT_VOICE_QUALITY)
        else:
            out[concept] = out[concept].map(lambda t, labels=vocabularies[concept]: invert(t, labels))
    return out


def corrupt_tokens(tokens: pd.DataFrame, vocabularies: dict[str, list[str]], *, p: float, seed: int) -> pd.DataFrame:
    """Each token replaced with probability ``p`` by another token of its concept's vocabulary."""
    out = tokens.copy()
    rng = np.random.default_rng([seed, int(round(p * 1_000_000))])
    for concept, vocabulary in vocabularies.items():  # dict order: the config's concept order
        vocabulary = np.asarray(vocabulary)
        change = rng.random(len(out)) < p
        draws = rng.random(len(out))
        current = out[concept].to_numpy()
        replaced = []
        for token, draw in zip(current, draws, strict=True):
            others = vocabulary[vocabulary != token]  # UNVOICED is in no vocabulary: all are others
            replaced.append(others[int(draw * len(others))])
        out[concept] = np.where(change, replaced, current)
    return out


def shuffle_strings(strings: pd.Series, *, seed: int) -> pd.Series:
    """The token strings permuted across utterances (marginals kept, alignment broken)."""
    rng = np.random.default_rng([seed, 0x5EED])
    return pd.Series(strings.to_numpy()[rng.permutation(len(strings))], index=strings.index)


def condition_tokens(
    tokens: pd.DataFrame,
    conditions: list[Condition],
    *,
    vocabularies: dict[str, list[str]],
    serialise,
) -> pd.DataFrame:
    """One row per utterance x condition: utt_id, condition, audio, token_string.

    ``tokens`` holds the evaluated split only (shuffles permute within it); ``serialise`` turns a
    token table into strings (cuealign.tokens.serialise with the run's options).
    """
    tokens = tokens.sort_values("utt_id").reset_index(drop=True)
    concepts = list(vocabularies)
    aligned = pd.Series(serialise(tokens), index=tokens.index)
    frames = []
    for condition in conditions:
        if condition.kind == "none":
            strings = pd.Series("", index=tokens.index)
        elif condition.kind in ("aligned", "tokens_only"):
            strings = aligned
        elif condition.kind == "conflict":
            strings = pd.Series(serialise(conflict_tokens(tokens, vocabularies, concepts)), index=tokens.index)
        elif condition.kind == "swap":
            strings = pd.Series(
                serialise(conflict_tokens(tokens, vocabularies, [condition.concept])), index=tokens.index
            )
        elif condition.kind == "shuffle":
            strings = shuffle_strings(aligned, seed=condition.seed)
        elif condition.kind == "corrupt":
            corrupted = corrupt_tokens(tokens, vocabularies, p=condition.p, seed=condition.seed)
            strings = pd.Series(serialise(corrupted), index=tokens.index)
        else:  # pragma: no cover - Condition kinds are closed
            raise ValueError(condition.kind)
        frames.append(
            pd.DataFrame(
                {
                    "utt_id": tokens["utt_id"],
                    "condition": condition.name,
                    "audio": condition.audio,
                    "token_string": strings,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
