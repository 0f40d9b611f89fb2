"""From predictions to the study's tables: UAR per condition with speaker-clustered CIs, paired
comparisons with exact McNemar and Holm, the corruption curve with Spearman, confusion shifts."""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd

from cuealign.stats import Bootstrap, holm, mcnemar_exact, percentile_ci, spearman, uar

log = logging.getLogger(__name__)

_CORRUPT = re.compile(r"^corrupt_p(?P<p>[0-9.]+)_s(?P<seed>\d+)$")
_SHUFFLE = re.compile(r"^shuffle_s(?P<seed>\d+)$")
NEUTRAL = "neutral"


def check_complete(predictions: pd.DataFrame, expected_conditions: list[str]) -> None:
    """Every utterance under every expected condition, exactly once; else an error naming the gap."""
    present = set(predictions["condition"])
    if missing := [c for c in expected_conditions if c not in present]:
        raise ValueError(f"conditions missing from the predictions: {missing}; rerun run_inference for them")
    doubled = predictions.duplicated(["utt_id", "condition"])
    if doubled.any():
        raise ValueError(
            f"{int(doubled.sum())} utterance x condition rows appear twice, "
            f"e.g. {predictions.loc[doubled, ['utt_id', 'condition']].head(3).values.tolist()}"
        )
    counts = predictions.groupby("condition")["utt_id"].nunique()
    utterances = predictions["utt_id"].nunique()
    if short := {c: int(n) for c, n in counts.items() if n != utterances}:
        raise ValueError(f"conditions without a prediction for every one of the {utterances} utterances: {short}")


def family_of(condition: str) -> tuple[str, float | None, int | None]:
    """(family, p, seed) of a condition name."""
    if match := _CORRUPT.match(condition):
        return "corrupt", float(match["p"]), int(match["seed"])
    if match := _SHUFFLE.match(condition):
        return "shuffle", None, int(match["seed"])
    return condition, None, None


def analyse(
    predictions: pd.DataFrame,
    *,
    labels: list[str],
    expected_conditions: list[str],
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, pd.DataFrame | dict]:
    """All tables of one corpus x model x split."""
    check_complete(predictions, expected_conditions)
    wide_pred = predictions.pivot(index="utt_id", columns="condition", values="pred")
    truth_of = predictions.drop_duplicates("utt_id").set_index("utt_id")
    truth = truth_of.loc[wide_pred.index, "label"].to_numpy()
    speakers = truth_of.loc[wide_pred.index, "speaker"].to_numpy()
    boot = Bootstrap.draw(speakers, resamples=resamples, seed=seed)
    conditions = list(expected_conditions)
    resampled = {c: boot.uar(truth, wide_pred[c].to_numpy(), labels) for c in conditions}

    rows = []
    for condition in conditions:
        pred = wide_pred[condition].to_numpy()
        family, p, s = family_of(condition)
        low, high = percentile_ci(resampled[condition], level)
        rows.append(
            dict(
                condition=condition,
                family=family,
                p=p,
                seed=s,
                n=len(pred),
                uar=uar(truth, pred, labels),
                ci_low=low,
                ci_high=high,
                accuracy=float(np.mean(pred == truth)),
                unparsed_rate=float(np.mean(pred == "unparsed")),
            )
        )
    uar_table = pd.DataFrame(rows)
    # Seed families as their mean (the per-seed rows stay above); CIs from the mean of the resamples.
    for family, grouper in (("shuffle", None), ("corrupt", "p")):
        members = uar_table[uar_table["family"] == family]
        for key, group in members.groupby(grouper) if grouper else [(None, members)]:
            if group.empty:
                continue
            mean_resampled = np.mean([resampled[c] for c in group["condition"]], axis=0)
            low, high = percentile_ci(mean_resampled, level)
            name = f"{family}_mean" if key is None else f"corrupt_p{key:g}_mean"
            resampled[name] = mean_resampled
            uar_table.loc[len(uar_table)] = dict(
                condition=name,
                family=family,
                p=key,
                seed=None,
                n=int(group["n"].iloc[0]),
                uar=float(group["uar"].mean()),
                ci_low=low,
                ci_high=high,
                accuracy=float(group["accuracy"].mean()),
                unparsed_rate=float(group["unparsed_rate"].mean()),
            )

    correct = {c: wide_pred[c].to_numpy() == truth for c in conditions}
    comparisons = []
    perturbations = [c for c in conditions if c not in ("none", "aligned")]
    pairs = [("aligned", "none")] + [("aligned", c) for c in perturbations] + [(c, "none") for c in perturbations]
    for a, b in pairs:
        if a not in correct or b not in correct:
            continue
        a_only, b_only, pvalue = mcnemar_exact(correct[a], correct[b])
        low, high = percentile_ci(resampled[a] - resampled[b], level)
        comparisons.append(
            dict(
                comparison=f"{a} - {b}",
                a=a,
                b=b,
                delta_uar=uar(truth, wide_pred[a].to_numpy(), labels) - uar(truth, wide_pred[b].to_numpy(), labels),
                ci_low=low,
                ci_high=high,
                a_right_b_wrong=a_only,
                a_wrong_b_right=b_only,
                p_mcnemar=pvalue,
            )
        )
    comparisons = pd.DataFrame(comparisons)
    if len(comparisons):
        comparisons["p_holm"] = holm(comparisons["p_mcnemar"].tolist())

    curve_points = uar_table[(uar_table["family"] == "corrupt") & uar_table["seed"].notna()]
    curve = uar_table[uar_table["condition"].str.match(r"^corrupt_p[0-9.]+_mean$")].sort_values("p")
    if len(curve_points) >= 3 and curve_points["p"].nunique() > 1 and curve_points["uar"].nunique() > 1:
        rho, rho_p = spearman(curve_points["p"].to_numpy(), curve_points["uar"].to_numpy())
    else:
        rho, rho_p = float("nan"), float("nan")
    # None (JSON null) where rho is undefined: fewer than 3 points, or a flat curve
    spearman_result = {
        "rho": None if np.isnan(rho) else rho,
        "p_value": None if np.isnan(rho_p) else rho_p,
        "points": int(len(curve_points)),
        "audio_only_uar": float(uar_table.loc[uar_table["condition"] == "none", "uar"].iloc[0]),
    }

    confusion = predictions.groupby(["condition", "label", "pred"]).size().rename("count").reset_index()
    confusion["share"] = confusion["count"] / confusion.groupby(["condition", "label"])["count"].transform("sum")
    aligned_pred = wide_pred["aligned"].to_numpy()
    shifts = pd.DataFrame(
        [
            dict(
                condition=c,
                predicted_neutral=float(np.mean(wide_pred[c].to_numpy() == NEUTRAL)),
                neutral_shift=float(np.mean(wide_pred[c].to_numpy() == NEUTRAL) - np.mean(aligned_pred == NEUTRAL)),
                flip_rate_vs_aligned=float(np.mean(wide_pred[c].to_numpy() != aligned_pred)),
            )
            for c in conditions
        ]
    )
    if predictions.filter(like="logprob_").notna().all().all() and predictions.filter(like="logprob_").shape[1]:
        shifts["mean_js_vs_aligned"] = [_mean_js(predictions, c, labels) for c in conditions]
    return {
        "uar": uar_table,
        "comparisons": comparisons,
        "curve": curve,
        "spearman": spearman_result,
        "confusion": confusion,
        "shifts": shifts,
    }


def _distributions(predictions: pd.DataFrame, condition: str, labels: list[str]) -> np.ndarray:
    rows = predictions[predictions["condition"] == condition].sort_values("utt_id")
    logp = rows[[f"logprob_{label}" for label in labels]].to_numpy()
    logp = logp - logp.max(axis=1, keepdims=True)
    probs = np.exp(logp)
    return probs / probs.sum(axis=1, keepdims=True)


def _mean_js(predictions: pd.DataFrame, condition: str, labels: list[str]) -> float:
    """Mean Jensen-Shannon divergence (bits) of the label distributions against aligned."""
    p, q = _distributions(predictions, condition, labels), _distributions(predictions, "aligned", labels)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = lambda a, b: np.nansum(np.where(a > 0, a * np.log2(a / b), 0.0), axis=1)  # noqa: E731
    return float(np.mean((kl(p, m) + kl(q, m)) / 2))


def _fmt(value: float, digits: int = 3) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def _p(value: float) -> str:
    return "" if value is None or np.isnan(value) else (f"{value:.2e}" if value < 1e-3 else f"{value:.3f}")


def main_table(result: dict, *, model: str, corpus: str) -> pd.DataFrame:
    """The paper's Table II/III row: UAR without and with tokens, the gain, its CI and p-values."""
    table = result["uar"].set_index("condition")
    gain = result["comparisons"].set_index("comparison").loc["aligned - none"]
    return pd.DataFrame(
        [
            {
                "corpus": corpus,
                "model": model,
                "UAR without tokens": _fmt(table.loc["none", "uar"]),
                "UAR with tokens": _fmt(table.loc["aligned", "uar"]),
                "delta": _fmt(gain["delta_uar"]),
                "95% CI of delta": f"[{_fmt(gain['ci_low'])}, {_fmt(gain['ci_high'])}]",
                "p (McNemar)": _p(gain["p_mcnemar"]),
                "p (Holm)": _p(gain["p_holm"]),
                "unparsed (none / aligned)": (
                    f"{_fmt(table.loc['none', 'unparsed_rate'])} / {_fmt(table.loc['aligned', 'unparsed_rate'])}"
                ),
            }
        ]
    )


def intervention_table(result: dict) -> pd.DataFrame:
    """Each condition: UAR [CI], its difference from aligned [CI] with p-values, and the shifts."""
    uar_rows = result["uar"].set_index("condition")
    versus = result["comparisons"].set_index("comparison")
    shifts = result["shifts"].set_index("condition")
    rows = []
    for condition, row in uar_rows.iterrows():
        entry = {
            "condition": condition,
            "UAR": _fmt(row["uar"]),
            "95% CI": f"[{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]",
        }
        key = f"aligned - {condition}"
        if key in versus.index:
            v = versus.loc[key]
            entry |= {
                "aligned - condition": _fmt(v["delta_uar"]),
                "CI": f"[{_fmt(v['ci_low'])}, {_fmt(v['ci_high'])}]",
                "p (McNemar)": _p(v["p_mcnemar"]),
                "p (Holm)": _p(v["p_holm"]),
            }
        if condition in shifts.index:
            entry |= {
                "neutral shift": _fmt(shifts.loc[condition, "neutral_shift"]),
                "flip rate": _fmt(shifts.loc[condition, "flip_rate_vs_aligned"]),
            }
        rows.append(entry)
    return pd.DataFrame(rows).fillna("")


def to_markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def to_latex(table: pd.DataFrame) -> str:
    escape = lambda text: str(text).replace("_", r"\_").replace("%", r"\%")  # noqa: E731
    lines = [
        r"\begin{tabular}{" + "l" * len(table.columns) + "}",
        r"\toprule",
        " & ".join(map(escape, table.columns)) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(map(escape, row)) + r" \\" for row in table.itertuples(index=False)]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"


def parse_token_string(text: str, *, template: str, separator: str) -> dict[str, str]:
    """Invert cuealign.tokens.serialise: 'ENERGY=HIGH; PITCH=LOW' -> {'ENERGY': 'HIGH', ...}."""
    pattern = re.compile(
        "^"
        + re.escape(template)
        .replace(r"\{concept\}", "(?P<concept>[A-Z_]+)")
        .replace(r"\{token\}", "(?P<token>[A-Z_]+)")
        + "$"
    )
    parsed = {}
    for part in filter(None, text.split(separator)):
        match = pattern.match(part.strip(" ."))
        if match is None:
            raise ValueError(f"token string part {part!r} does not match the template {template!r}")
        parsed[match["concept"]] = match["token"]
    return parsed


def class_given_token(tokens: pd.DataFrame, labels_of: pd.Series, concepts: list[str], labels: list[str]) -> dict:
    """log P(class | concept = value) on the fitted utterances, add-one smoothed."""
    table = {}
    for concept in concepts:
        counts = pd.crosstab(tokens[concept], labels_of).reindex(columns=labels, fill_value=0) + 1
        table[concept] = np.log(counts.div(counts.sum(axis=1), axis=0))
    return table


def cue_following(
    predictions: pd.DataFrame,
    prompts: pd.DataFrame,
    association: dict,
    *,
    labels: list[str],
    template: str,
    separator: str,
) -> pd.DataFrame:
    """Per conflict/swap condition: does the model's probability move toward the classes the
    changed tokens point to? ``cue_alignment`` is the mean cosine (over utterances whose tokens
    changed) between the per-class change of log-probability against aligned and the per-class
    pull of the changed tokens (both centred over classes); ``toward_pointed_class`` the share of
    those utterances where the class the change points to most gains relative to the others."""
    logp_columns = [f"logprob_{label}" for label in labels]
    if predictions[logp_columns].isna().any().any():
        return pd.DataFrame(columns=["condition", "utterances", "cue_alignment", "toward_pointed_class"])
    strings = prompts.set_index(["condition", "utt_id"])["token_string"]
    logp = predictions.set_index(["condition", "utt_id"])[logp_columns]
    rows = []
    for condition in sorted(c for c in predictions["condition"].unique() if c == "conflict" or c.startswith("swap_")):
        cosines, toward = [], []
        for utt_id in logp.loc[condition].index:
            old = parse_token_string(strings.loc[("aligned", utt_id)], template=template, separator=separator)
            new = parse_token_string(strings.loc[(condition, utt_id)], template=template, separator=separator)
            pull = np.zeros(len(labels))
            for concept, value in new.items():
                if concept in association and value != old.get(concept):
                    table = association[concept]
                    if value in table.index and old.get(concept) in table.index:
                        pull += (table.loc[value] - table.loc[old[concept]]).to_numpy()
            if not np.any(pull):
                continue
            change = logp.loc[(condition, utt_id)].to_numpy() - logp.loc[("aligned", utt_id)].to_numpy()
            pull, change = pull - pull.mean(), change - change.mean()
            norm = np.linalg.norm(pull) * np.linalg.norm(change)
            cosines.append(float(pull @ change / norm) if norm > 0 else 0.0)
            toward.append(bool(change[np.argmax(pull)] > 0))
        rows.append(
            dict(
                condition=condition,
                utterances=len(cosines),
                cue_alignment=float(np.mean(cosines)) if cosines else float("nan"),
                toward_pointed_class=float(np.mean(toward)) if toward else float("nan"),
            )
        )
    return pd.DataFrame(rows)


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
        ("prompts", len(prompts), f"{evaluated} utterances x {len(conditions)} conditions"),
        (
            "predictions",
            len(predictions),
            f"{int((predictions['pred'] == 'unparsed').sum())} unparsed, kept and scored as wrong",
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
    if len(prompts) != evaluated * len(conditions):
        problems.append(f"prompts {len(prompts)} != {evaluated} x {len(conditions)}")
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
        f"{count['evaluated']} evaluated x {count['conditions']} conditions = {count['prompts']} prompts -> "
        f"{count['predictions']} predictions -> {count['per condition in uar.csv']} per condition in uar.csv"
    )
