"""Prompts: one row per utterance x condition, the text a backend receives with the audio.

The template has an ``{audio}`` slot and a ``{cues}`` slot after it: everything up to the cues
(system, audio, instruction) is the same for all conditions of an utterance, so a backend encodes
it once and reuses its KV cache; only the cue block (the suffix) differs between conditions.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from cuealign.interventions import CONDITION_COLUMNS, Condition, condition_tokens
from cuealign.shards import evaluated_shards
from cuealign.tokens import TOKEN_PREFIX, TokensMeta

AUDIO_SLOT, CUES_SLOT, LABELS_SLOT, TOKENS_SLOT = "audio", "cues", "labels", "tokens"
AUDIO_MARKER = "<audio>"  # where the audio sits, in the human-readable text column

_SENTINEL = "\x00"  # where the tokens go in the cue block
MAIN_VARIANT = "main"  # prompt.template and prompt.cues; prompt.variants adds others by name

PROMPT_COLUMNS = [
    "utt_id",
    *CONDITION_COLUMNS,
    "variant",
    "audio",
    "token_string",
    "prefix_text",
    "suffix_text",
    "text",
    "label",
    "split",
    "speaker",
    "path",
    "sha256",
    "duration_s",
]


def _fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


@dataclass(frozen=True)
class PromptTemplate:
    """config: prompt. ``template`` starts with {audio} and holds {cues} later; {labels} may appear."""

    template: str
    cues: str
    labels: tuple[str, ...]
    label_separator: str = ", "

    def __post_init__(self) -> None:
        fields = _fields(self.template)
        if fields.count(AUDIO_SLOT) != 1:
            raise ValueError(
                "config: prompt.template needs exactly one {audio} slot (where the audio goes); "
                f"it has {fields.count(AUDIO_SLOT)}: {self.template!r}"
            )
        if fields.count(CUES_SLOT) != 1 or fields.index(CUES_SLOT) < fields.index(AUDIO_SLOT):
            raise ValueError(
                "config: prompt.template needs one {cues} slot after {audio} (the token block comes "
                f"after the audio and the instruction): {self.template!r}"
            )
        if stray := sorted(set(fields) - {AUDIO_SLOT, CUES_SLOT, LABELS_SLOT}):
            raise ValueError(f"config: prompt.template has unknown slots {stray}; use {{audio}}, {{labels}}, {{cues}}")
        if _fields(self.cues) != [TOKENS_SLOT]:
            raise ValueError(f"config: prompt.cues needs exactly one {{tokens}} slot: {self.cues!r}")
        if not self.template.startswith("{audio}"):
            raise ValueError(
                "config: prompt.template must start with {audio}: backends put the audio first in the "
                f"user turn (a system prompt belongs to the model's chat template): {self.template!r}"
            )

    def parts(self, token_string: str) -> tuple[str, str]:
        """(prefix_text, suffix_text): the text between the audio and the cues (shared by all
        conditions of an utterance) and from the cues on (this condition's own; no cue block
        when there are no tokens)."""
        labels = self.label_separator.join(self.labels)
        middle, tail = self.template.removeprefix("{audio}").split("{cues}", 1)
        cue_block = self.cues.format(tokens=token_string) if token_string else ""
        return middle.format(labels=labels), cue_block + tail.format(labels=labels)


def prompt_variants(prompt: dict) -> dict[str, tuple[str, str]]:
    """config: prompt as {variant: (template, cues)}: 'main' (prompt.template and prompt.cues) first,
    then each of prompt.variants, a wording of the instruction and/or a format of the token block
    (what a variant leaves out is main's)."""
    out = {MAIN_VARIANT: (prompt["template"], prompt["cues"])}
    for name, variant in (prompt.get("variants") or {}).items():
        out[name] = (variant.get("template", prompt["template"]), variant.get("cues", prompt["cues"]))
    return out


def build_prompts(
    conditions: pd.DataFrame, manifest: pd.DataFrame, template: PromptTemplate, variant: str = MAIN_VARIANT
) -> pd.DataFrame:
    """Join condition token strings with the manifest and fill the template (one variant's)."""
    rows = conditions.merge(
        manifest[["utt_id", "label", "split", "speaker", "path", "sha256", "duration_s"]],
        on="utt_id",
        how="left",
        validate="m:1",
    )
    if rows["path"].isna().any():
        raise ValueError(
            f"conditions for utterances not in the manifest: {rows.loc[rows['path'].isna(), 'utt_id'].unique()[:5]}"
        )
    # template.parts for every row at once, as column operations (one prefix per wording; a
    # per-row Python loop made ~1 KB of objects per prompt row)
    prefix, empty_suffix = template.parts("")
    before, after = template.cues.format(tokens=_SENTINEL).split(_SENTINEL)
    tokens = rows["token_string"].fillna("").astype("str")
    cue_block = (before + tokens + after).where(tokens != "", "")
    # the text before the cue block is one per wording: held once (a categorical), not per row
    rows["prefix_text"] = pd.Categorical.from_codes(np.zeros(len(rows), dtype=np.int8), categories=[prefix])
    rows["suffix_text"] = cue_block + empty_suffix
    rows["text"] = AUDIO_MARKER + prefix + rows["suffix_text"]
    rows["variant"] = variant
    return rows[PROMPT_COLUMNS + [c for c in conditions.columns if c.startswith(TOKEN_PREFIX)]]


def prompt_table(
    tokens: pd.DataFrame,
    manifest: pd.DataFrame,
    meta: TokensMeta | dict,
    *,
    conditions: list[Condition],
    prompt: dict,
    split: str,
    corrupt_draw: str = "vocabulary",
    conflict_voice_quality: bool = False,
    shard: int | None = None,
    shards: int | None = None,
) -> pd.DataFrame:
    """Every utterance of ``split`` under each of ``conditions``, as prompts: the condition as
    data, each concept's token in its own column, and the texts. With ``shard`` (of ``shards``):
    that shard's rows only (cuealign.shards.split_by_shard of the whole table, the same rows),
    memory bounded by the shard."""
    meta = TokensMeta.of(meta)
    usable = manifest[manifest["status"] == "ok"]
    evaluated = usable if split == "all" else usable[usable["split"] == split]
    if evaluated.empty:
        raise ValueError(
            f"evaluate_split is {split!r} but the corpus has no usable utterance in it; "
            f"its splits: {sorted(usable['split'].unique())}"
        )
    absent = sorted(set(usable["label"]) - set(evaluated["label"]))
    if absent:
        elsewhere = usable[usable["label"].isin(absent)].groupby("label")["split"].unique()
        raise ValueError(
            f"class(es) {absent} have no usable utterance in the evaluated split {split!r} "
            f"(they are in: {', '.join(f'{label}: {sorted(where)}' for label, where in elsewhere.items())}); "
            "UAR averages recall over every class, so it would be undefined. Choose a split that holds every "
            "class (the corpus' test_sessions / test_speakers / evaluate_split), or drop the class on purpose "
            "(label_map: <raw label>: null); bad_files.csv lists utterances lost to the audio checks"
        )
    tokens = tokens[tokens["utt_id"].isin(evaluated["utt_id"])]
    only = None
    if shard is not None:
        of = evaluated_shards(manifest, tokens["utt_id"], shards)
        only = {u for u, k in of.items() if k == shard}
    per_condition = condition_tokens(
        tokens,
        conditions,
        vocabularies=meta.vocabularies(),
        serialise=meta.serialise,
        corrupt_draw=corrupt_draw,
        conflict_voice_quality=conflict_voice_quality,
        only=only,
    )
    labels = tuple(sorted(usable["label"].unique()))
    tables = [
        build_prompts(per_condition, manifest, PromptTemplate(template, cues, labels), variant)
        for variant, (template, cues) in prompt_variants(prompt).items()
    ]
    if len(tables) == 1:
        return tables[0]
    prefixes = union_categoricals([t["prefix_text"] for t in tables])  # still one entry per wording
    return pd.concat(tables, ignore_index=True).assign(prefix_text=prefixes)
