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

from cuealign import intervals
from cuealign.interventions import EXPLORATORY, PAPER_FAMILIES, parse_comparison, seeds_mean_name
from cuealign.stats import holm, label_distribution, mcnemar_exact, spearman_permutation
from cuealign.tokens import TOKEN_PREFIX

log = logging.getLogger(__name__)

NEUTRAL = "neutral"
UNPARSED = "unparsed"
INVALID = "invalid"  # non-finite label scores (cuealign.inference)


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
    ci_method: str = intervals.DEFAULT_METHOD,
    min_speakers: int = intervals.MIN_SPEAKERS,
    families: dict[str, list[str]] | None = None,
) -> dict[str, pd.DataFrame | dict]:
    """All tables of one corpus x model x split."""
    check_complete(predictions, expected_conditions)
    # the paper's families in the paper's order (a config may come back with its keys sorted)
    families = PAPER_FAMILIES if families is None or families == PAPER_FAMILIES else families
    wide_pred = predictions.pivot(index="utt_id", columns="condition", values="pred")
    truth_of = predictions.drop_duplicates("utt_id").set_index("utt_id")
    truth = truth_of.loc[wide_pred.index, "label"].to_numpy()
    speakers = truth_of.loc[wide_pred.index, "speaker"].to_numpy()
    conditions = list(expected_conditions)
    correct = {c: wide_pred[c].to_numpy() == truth for c in conditions}
    # with fewer speakers than any clustered interval needs, describe these speakers only
    used = ci_method if len(set(speakers)) >= min_speakers else intervals.CONDITIONAL
    design = intervals.SpeakerDesign(
        truth,
        speakers,
        labels,
        resamples=resamples,
        seed=seed,
        studentize=used == "studentized",
        within=used == intervals.CONDITIONAL,
    )
    if used == intervals.CONDITIONAL:
        log.warning("%s", conditional_warning(design.n_speakers, min_speakers))
    replicates = {c: design.replicates(correct[c]) for c in conditions}

    def ci(rep: intervals.Replicates) -> dict:
        low, high = intervals.interval(rep, used, level)
        return dict(
            ci_low=low,
            ci_high=high,
            ci_level=level,
            ci_method=used,
            n_speakers=design.n_speakers,
            ci_zero_width=bool(high - low <= 1e-12),
        )

    what_of = predictions.drop_duplicates("condition").set_index("condition")
    changed_share = realised_changes(predictions)
    kinds = what_of.loc[conditions, ["kind", "p", "seed", "concept"]]
    rows = []
    for condition in conditions:
        pred = wide_pred[condition].to_numpy()
        what = kinds.loc[condition]
        rows.append(
            dict(
                condition=condition,
                kind=what["kind"],
                p=what["p"],
                seed=what["seed"],
                concept=what["concept"],
                n_seeds=1,
                n=len(pred),
                uar=replicates[condition].estimate,
                **ci(replicates[condition]),
                accuracy=float(np.mean(pred == truth)),
                unparsed_rate=float(np.mean(pred == UNPARSED)),
                invalid_rate=float(np.mean(pred == INVALID)),
            )
        )
    uar_table = pd.DataFrame(rows).astype({"p": "float64", "seed": "Int64"})
    uar_table["changed_share"] = [changed_share.get(c, np.nan) for c in uar_table["condition"]]
    # Conditions with seeds as their mean (the per-seed rows stay above): one row per shuffle and
    # per corruption level, its CI from the mean of the per-seed resamples.
    seeded = uar_table[uar_table["seed"].notna()]
    members = {}  # tested name -> the conditions it averages
    for (kind, p), group in seeded.groupby(["kind", "p"], dropna=False, sort=False):
        name = seeds_mean_name(kind, p)
        members[name] = list(group["condition"])
        replicates[name] = intervals.mean_of([replicates[c] for c in members[name]])
        correct[name] = np.mean([correct[c] for c in members[name]], axis=0)
        uar_table.loc[len(uar_table)] = dict(
            condition=name,
            kind=kind,
            p=p,
            seed=pd.NA,
            concept=None,
            n_seeds=len(group),
            n=int(group["n"].iloc[0]),
            uar=replicates[name].estimate,
            **ci(replicates[name]),
            accuracy=float(group["accuracy"].mean()),
            unparsed_rate=float(group["unparsed_rate"].mean()),
            invalid_rate=float(group["invalid_rate"].mean()),
            changed_share=float(group["changed_share"].mean()),
        )
    for condition in conditions:
        if pd.isna(kinds.loc[condition, "seed"]):
            members[condition] = [condition]
    if (uar_table["ci_zero_width"]).any():
        log.warning(
            "zero-width intervals (every resample gives the same UAR; the data cannot show uncertainty): %s",
            ", ".join(uar_table.loc[uar_table["ci_zero_width"], "condition"]),
        )

    same_as_aligned = {name for name, parts in members.items() if all(_asks_as_aligned(predictions, c) for c in parts)}
    pairs = comparison_plan(families, members, same_as_aligned)
    comparisons = []
    for family, a, b in pairs:
        single = len(members[a]) == 1 and len(members[b]) == 1
        difference = replicates[a] - replicates[b]
        row = dict(family=family, comparison=f"{a} - {b}", a=a, b=b, delta_uar=difference.estimate, **ci(difference))
        if single:  # one prediction per utterance on each side: the paper's exact McNemar
            a_only, b_only, pvalue = mcnemar_exact(correct[a].astype(bool), correct[b].astype(bool))
            row |= dict(test="exact McNemar", a_right_b_wrong=a_only, a_wrong_b_right=b_only, p_value=pvalue)
        else:  # every seed counts: speakers' UAR contributions, signs flipped
            pvalue, test = intervals.sign_flip_test(design, correct[a].astype(float) - correct[b].astype(float))
            row |= dict(test=test, a_right_b_wrong=np.nan, a_wrong_b_right=np.nan, p_value=pvalue)
        comparisons.append(row)
    columns = [
        "family", "comparison", "a", "b", "test", "delta_uar", "ci_low", "ci_high", "ci_level", "ci_method",
        "n_speakers", "ci_zero_width", "a_right_b_wrong", "a_wrong_b_right", "p_value",
    ]  # fmt: skip
    comparisons = pd.DataFrame(comparisons, columns=columns)
    comparisons["p_holm"] = np.nan
    for _, group in comparisons.groupby("family", sort=False):
        comparisons.loc[group.index, "p_holm"] = holm(group["p_value"].tolist())

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
    if predictions[logp_columns].notna().any().any():  # score mode
        aligned_probs = label_probabilities(predictions, "aligned", labels)
        # scipy gives the Jensen-Shannon distance; its square is the divergence (bits). An invalid
        # answer (non-finite scores) has none: the mean is over the utterances that have one.
        distance = {
            c: jensenshannon(label_probabilities(predictions, c, labels), aligned_probs, base=2, axis=1)
            for c in conditions
        }
        shifts["mean_js_vs_aligned"] = [
            float(np.nanmean(distance[c] ** 2)) if np.isfinite(distance[c]).any() else np.nan for c in conditions
        ]
    return {
        "intervals": {
            "method": used,
            "requested": ci_method,
            "n_speakers": design.n_speakers,
            "level": level,
            "resamples": resamples,
            "warning": conditional_warning(design.n_speakers, min_speakers) if used == intervals.CONDITIONAL else None,
        },
        "uar": uar_table,
        "comparisons": comparisons,
        "curve": curve,
        "spearman": spearman_result,
        "confusion": confusion,
        "shifts": shifts,
    }


def conditional_warning(n_speakers: int, min_speakers: int) -> str:
    return (
        f"only {n_speakers} test speakers, fewer than analysis.min_speakers = {min_speakers} (below 4, no "
        "speaker-clustered interval both held its coverage and said anything in benchmarks/ci_coverage.py): the "
        f"intervals are within-speaker, conditional on these {n_speakers} speakers, and say nothing about other "
        "speakers; pool more test speakers (IEMOCAP: leave one session out) for intervals about speakers"
    )


def comparison_plan(
    families: dict[str, list[str]], members: dict[str, list[str]], same_as_aligned: set[str]
) -> list[tuple[str, str, str]]:
    """(family, a, b) for every test: the declared families' comparisons whose conditions ran (a
    declared comparison with a condition that did not run is left out, logged), then an
    exploratory family of aligned - X and X - none for every other condition or seed mean X.
    A condition that asks what aligned asks (corruption at p = 0) is aligned: comparing it with
    aligned would compare a condition with itself, and with none would repeat aligned - none.
    No pair is tested twice."""
    plan, seen = [], set()

    def same(x):
        return "aligned" if x in same_as_aligned else x

    for family, texts in families.items():
        for text in texts:
            a, b = parse_comparison(text)
            if missing := [x for x in (a, b) if x not in members]:
                log.info("comparison %r (family %r) left out: %s did not run", text, family, missing[0])
                continue
            if same(a) == same(b):
                raise ValueError(f"analysis.families: {text!r} compares a condition with itself")
            if {(same(a), same(b)), (same(b), same(a))} & seen:
                raise ValueError(f"analysis.families: {text!r} repeats a test already in a family")
            seen.add((same(a), same(b)))
            plan.append((family, a, b))
    for x in members:
        if same(x) in ("none", "aligned"):
            continue
        for a, b in (("aligned", x), (x, "none")):
            if not {(a, b), (b, a)} & seen:
                seen.add((a, b))
                plan.append((EXPLORATORY, a, b))
    return plan


def _asks_as_aligned(predictions: pd.DataFrame, condition: str) -> bool:
    """Whether ``condition`` showed every utterance aligned's own tokens with the original audio
    (corruption at p = 0 by definition; any condition whose token columns equal aligned's)."""
    rows = predictions[predictions["condition"] == condition]
    kind, p = rows["kind"].iloc[0], rows["p"].iloc[0]
    if kind in ("none", "tokens_only"):
        return False
    if kind == "corrupt" and p == 0:
        return True
    columns = [c for c in predictions.columns if c.startswith(TOKEN_PREFIX)]
    if kind == "aligned" or not columns:
        return kind == "aligned"
    aligned = predictions[predictions["condition"] == "aligned"].set_index("utt_id")[columns]
    shown = rows.set_index("utt_id")[columns]
    return bool((shown == aligned.loc[shown.index]).all().all())


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
