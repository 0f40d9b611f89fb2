"""Every utterance from the manifest to the final table: the accounting chain that says where
each one went (failed a check, not evaluated, unparsed), and fails if the counts do not add up."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

UTTERANCE_COLUMNS = ["utt_id", "split", "speaker", "label"]


@dataclass
class PromptCounts:
    """What the accounting and the protocol card need of the prompts, without their texts: the
    evaluated utterances (one row each), the conditions in order, the wordings and the row count.
    Prompt shards are counted on their own and put together (``concat``)."""

    utterances: pd.DataFrame  # UTTERANCE_COLUMNS, one row per evaluated utterance
    conditions: list[str]
    variants: list[str]
    rows: int

    @classmethod
    def of(cls, prompts: pd.DataFrame) -> PromptCounts:
        columns = [c for c in UTTERANCE_COLUMNS if c in prompts.columns]
        return cls(
            utterances=prompts.drop_duplicates("utt_id")[columns].reset_index(drop=True),
            conditions=[str(c) for c in pd.unique(prompts["condition"])],
            # prompt wordings (prompt.variants): uar.csv is the main wording's, every wording is predicted
            variants=[str(v) for v in pd.unique(prompts["variant"])] if "variant" in prompts.columns else ["main"],
            rows=len(prompts),
        )

    @classmethod
    def concat(cls, parts: list[PromptCounts]) -> PromptCounts:
        return cls(
            utterances=pd.concat([p.utterances for p in parts], ignore_index=True).drop_duplicates("utt_id"),
            conditions=list(dict.fromkeys(c for p in parts for c in p.conditions)),
            variants=list(dict.fromkeys(v for p in parts for v in p.variants)),
            rows=sum(p.rows for p in parts),
        )


def accounting(
    manifest: pd.DataFrame, prompts: PromptCounts | pd.DataFrame, answered: pd.Series, uar_table: pd.DataFrame
) -> pd.DataFrame:
    """Every utterance from the manifest to the final table, one step per row (step, count, note).
    ``answered`` counts the predictions by answer (every wording).

    Raises if a step loses or adds rows that the step before does not explain.
    """
    if isinstance(prompts, pd.DataFrame):
        prompts = PromptCounts.of(prompts)
    usable = manifest[manifest["status"] == "ok"]
    failed = manifest.loc[manifest["status"] != "ok", "status"].value_counts().sort_index()
    evaluated = len(prompts.utterances)
    conditions = prompts.conditions
    variants = len(prompts.variants)
    times = f" x {variants} wordings" if variants > 1 else ""
    splits = ", ".join(f"{split} {n}" for split, n in usable["split"].value_counts().sort_index().items())
    per_condition = uar_table.loc[uar_table["condition"].isin(conditions), "n"]
    rows = [("manifest", len(manifest), "utterances the corpus lists (after the label map)")]
    rows += [
        (f"failed audio check: {status}", int(n), "kept in the manifest and listed in bad_files.csv")
        for status, n in failed.items()
    ]
    rows += [
        ("usable", len(usable), f"by split: {splits}"),
        ("evaluated", evaluated, f"split {', '.join(sorted(prompts.utterances['split'].unique()))}"),
        ("conditions", len(conditions), ""),
        *([("wordings", variants, "prompt variants; uar.csv and the tables are the main wording's")] if times else []),
        ("prompts", prompts.rows, f"{evaluated} utterances x {len(conditions)} conditions{times}"),
        (
            "predictions",
            int(answered.sum()),
            f"{int(answered.get('unparsed', 0))} unparsed, "
            f"{int(answered.get('invalid', 0))} invalid (non-finite scores), kept and scored as wrong",
        ),
        (
            "per condition in uar.csv",
            int(per_condition.min()) if len(per_condition) else 0,
            "every condition scores every evaluated utterance",
        ),
    ]
    problems = []
    if len(usable) + int(failed.sum()) != len(manifest):
        problems.append("usable + failed != manifest")
    if not set(prompts.utterances["utt_id"]) <= set(usable["utt_id"]):
        problems.append("prompts name utterances that are not usable")
    if prompts.rows != evaluated * len(conditions) * variants:
        problems.append(f"prompts {prompts.rows} != {evaluated} x {len(conditions)}{times}")
    if int(answered.sum()) != prompts.rows:
        problems.append(f"predictions {int(answered.sum())} != prompts {prompts.rows}")
    if len(per_condition) != len(conditions) or (per_condition != evaluated).any():
        problems.append(f"uar.csv n {sorted(set(per_condition))} != {evaluated} evaluated utterances")
    if problems:
        raise ValueError("utterances do not reconcile from the manifest to the tables: " + "; ".join(problems))
    return pd.DataFrame(rows, columns=["step", "count", "note"])


def accounting_line(table: pd.DataFrame) -> str:
    """The accounting on one line, as printed at the end of the analysis."""
    count = dict(zip(table["step"], table["count"], strict=True))
    failed = int(table.loc[table["step"].str.startswith("failed"), "count"].sum())
    return (
        f"{count['manifest']} in the manifest -> {failed} failed audio checks -> {count['usable']} usable -> "
        f"{count['evaluated']} evaluated x {count['conditions']} conditions"
        + (f" x {count['wordings']} wordings" if "wordings" in count else "")
        + f" = {count['prompts']} prompts -> "
        f"{count['predictions']} predictions -> {count['per condition in uar.csv']} per condition in uar.csv"
    )
