"""Every utterance from the manifest to the final table: the accounting chain that says where
each one went (failed a check, not evaluated, unparsed), and fails if the counts do not add up."""

from __future__ import annotations

import pandas as pd


def accounting(
    manifest: pd.DataFrame, prompts: pd.DataFrame, predictions: pd.DataFrame, uar_table: pd.DataFrame
) -> pd.DataFrame:
    """Every utterance from the manifest to the final table, one step per row (step, count, note).

    Raises if a step loses or adds rows that the step before does not explain.
    """
    usable = manifest[manifest["status"] == "ok"]
    failed = manifest.loc[manifest["status"] != "ok", "status"].value_counts().sort_index()
    evaluated = prompts["utt_id"].nunique()
    conditions = list(dict.fromkeys(prompts["condition"]))
    # prompt wordings (prompt.variants): uar.csv is the main wording's, every wording is predicted
    variants = prompts["variant"].nunique() if "variant" in prompts.columns else 1
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
        ("evaluated", evaluated, f"split {', '.join(sorted(prompts['split'].unique()))}"),
        ("conditions", len(conditions), ""),
        *([("wordings", variants, "prompt variants; uar.csv and the tables are the main wording's")] if times else []),
        ("prompts", len(prompts), f"{evaluated} utterances x {len(conditions)} conditions{times}"),
        (
            "predictions",
            len(predictions),
            f"{int((predictions['pred'] == 'unparsed').sum())} unparsed, "
            f"{int((predictions['pred'] == 'invalid').sum())} invalid (non-finite scores), kept and scored as wrong",
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
    if not set(prompts["utt_id"]) <= set(usable["utt_id"]):
        problems.append("prompts name utterances that are not usable")
    if len(prompts) != evaluated * len(conditions) * variants:
        problems.append(f"prompts {len(prompts)} != {evaluated} x {len(conditions)}{times}")
    if len(predictions) != len(prompts):
        problems.append(f"predictions {len(predictions)} != prompts {len(prompts)}")
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
