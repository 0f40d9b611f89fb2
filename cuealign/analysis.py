"""From predictions to the study's statistics: UAR per condition with speaker-clustered CIs,
paired comparisons with exact McNemar and Holm, the corruption curve with Spearman, confusion
and shifts. Conditions are read from their columns (kind, p, seed, concept), never from names.

Formatting is cuealign.tables, cue following cuealign.cue_following, the utterance accounting
cuealign.accounting."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon

from cuealign.stats import (
    Bootstrap,
    holm,
    label_distribution,
    mcnemar_exact,
    percentile_ci,
    spearman_permutation,
    uar,
)
from cuealign.tokens import TOKEN_PREFIX

log = logging.getLogger(__name__)

NEUTRAL = "neutral"
UNPARSED = "unparsed"


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

    what_of = predictions.drop_duplicates("condition").set_index("condition")
    changed_share = realised_changes(predictions)
    kinds = what_of.loc[conditions, ["kind", "p", "seed", "concept"]]
    rows = []
    for condition in conditions:
        pred = wide_pred[condition].to_numpy()
        what = kinds.loc[condition]
        low, high = percentile_ci(resampled[condition], level)
        rows.append(
            dict(
                condition=condition,
                kind=what["kind"],
                p=what["p"],
                seed=what["seed"],
                concept=what["concept"],
                n_seeds=1,
                n=len(pred),
                uar=uar(truth, pred, labels),
                ci_low=low,
                ci_high=high,
                accuracy=float(np.mean(pred == truth)),
                unparsed_rate=float(np.mean(pred == UNPARSED)),
            )
        )
    uar_table = pd.DataFrame(rows).astype({"p": "float64", "seed": "Int64"})
    uar_table["changed_share"] = [changed_share.get(c, np.nan) for c in uar_table["condition"]]
    # Conditions with seeds as their mean (the per-seed rows stay above): one row per shuffle and
    # per corruption level, its CI from the mean of the per-seed resamples.
    seeded = uar_table[uar_table["seed"].notna()]
    for (kind, p), group in seeded.groupby(["kind", "p"], dropna=False, sort=False):
        mean_resampled = np.mean([resampled[c] for c in group["condition"]], axis=0)
        low, high = percentile_ci(mean_resampled, level)
        name = f"{kind}_mean" if pd.isna(p) else f"{kind}_p{p:g}_mean"
        resampled[name] = mean_resampled
        uar_table.loc[len(uar_table)] = dict(
            condition=name,
            kind=kind,
            p=p,
            seed=pd.NA,
            concept=None,
            n_seeds=len(group),
            n=int(group["n"].iloc[0]),
            uar=float(group["uar"].mean()),
            ci_low=low,
            ci_high=high,
            accuracy=float(group["accuracy"].mean()),
            unparsed_rate=float(group["unparsed_rate"].mean()),
            changed_share=float(group["changed_share"].mean()),
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

    corrupt = uar_table[uar_table["kind"] == "corrupt"]
    curve = corrupt[corrupt["seed"].isna()].sort_values("p")  # one point per level: the mean over seeds
    rho = rho_p = None
    method = "undefined: fewer than 3 corruption levels, or a flat curve"
    if len(curve) >= 3 and curve["uar"].nunique() > 1:
        rho, rho_p, method = spearman_permutation(curve["p"].to_numpy(), curve["uar"].to_numpy())
    spearman_result = {
        "rho": rho,  # None (JSON null) where undefined
        "p_value": rho_p,
        "points": int(len(curve)),
        "over": "corruption levels, each the mean UAR over its seeds",
        "method": method,
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
    logp_columns = [f"logprob_{label}" for label in labels]
    if predictions[logp_columns].notna().all().all():
        aligned_probs = label_probabilities(predictions, "aligned", labels)
        # scipy gives the Jensen-Shannon distance; its square is the divergence (bits)
        distance = {
            c: jensenshannon(label_probabilities(predictions, c, labels), aligned_probs, base=2, axis=1)
            for c in conditions
        }
        shifts["mean_js_vs_aligned"] = [float(np.mean(distance[c] ** 2)) for c in conditions]
    return {
        "uar": uar_table,
        "comparisons": comparisons,
        "curve": curve,
        "spearman": spearman_result,
        "confusion": confusion,
        "shifts": shifts,
    }


def realised_changes(predictions: pd.DataFrame) -> dict[str, float]:
    """Per corruption condition, the share of its tokens (utterances x concepts) that differ from
    aligned: what corruption at p really did (with the paper's draw, less than p)."""
    columns = [c for c in predictions.columns if c.startswith(TOKEN_PREFIX)]
    if not columns:
        return {}
    aligned = predictions[predictions["condition"] == "aligned"].set_index("utt_id")[columns]
    out = {}
    for condition, rows in predictions[predictions["kind"] == "corrupt"].groupby("condition"):
        shown = rows.set_index("utt_id")[columns]
        out[condition] = float((shown != aligned.loc[shown.index]).to_numpy().mean())
    return out


def label_probabilities(predictions: pd.DataFrame, condition: str, labels: list[str]) -> np.ndarray:
    """Each utterance's distribution over the labels under ``condition`` (utt_id order): the
    label log-probs renormalised over the labels."""
    rows = predictions[predictions["condition"] == condition].sort_values("utt_id")
    return label_distribution(rows[[f"logprob_{label}" for label in labels]])
