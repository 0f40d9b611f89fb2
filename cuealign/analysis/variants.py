"""Prompt variants: every statistic per wording of the prompt, and across wordings.

Each variant (prompt.variants) is analysed on its own, exactly as the main prompt is (same
speakers, resamples, families and Holm adjustment within each variant). Across variants, for each
condition's UAR and each comparison's difference: the mean, the SD (ddof 1) and the range over
the variants. Whether a token effect holds in every wording is an intersection-union test
(Berger 1982): H0 "in at least one wording there is no effect in the main wording's direction" is
rejected at level alpha when every wording's own (Holm-adjusted) test rejects at alpha with the
same sign; its p-value is the largest of them (no further correction is needed, and it is valid
however the wordings' answers depend on each other, as they do: the same utterances and model).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cuealign.prompts import MAIN_VARIANT

# the token effects the main table reports across wordings
ROBUST_COMPARISONS = ("aligned - none", "aligned - conflict")
VARIANT_COLUMNS = ["variant", "statistic", "name", "family", "estimate", "ci_low", "ci_high", "p_value", "p_holm"]
SUMMARY_COLUMNS = [
    "statistic", "name", "family", "n_variants", "main", "mean", "sd", "min", "max", "holds_in", "p_all", "robust",
]  # fmt: skip


def per_variant(results: dict[str, dict]) -> pd.DataFrame:
    """Every variant's UARs and comparisons in one long table (variants.csv)."""
    parts = []
    for variant, result in results.items():
        uar = result["uar"].rename(columns={"condition": "name", "uar": "estimate"})
        parts.append(uar.assign(variant=variant, statistic="uar", family="", p_value=np.nan, p_holm=np.nan))
        comparisons = result["comparisons"].rename(columns={"comparison": "name", "delta_uar": "estimate"})
        parts.append(comparisons.assign(variant=variant, statistic="delta_uar"))
    return pd.concat([part[VARIANT_COLUMNS] for part in parts], ignore_index=True)


def summary(table: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Across variants (variants_summary.csv): per UAR and per comparison the main wording's value,
    the mean, SD and range over all wordings; per comparison, in how many wordings the effect holds
    (Holm-adjusted p < alpha, same sign as in the main wording), the intersection-union p-value
    (p_all: the largest Holm-adjusted p where every sign agrees, else 1) and whether it holds in all."""
    rows = []
    for (statistic, name), group in table.groupby(["statistic", "name"], sort=False):
        estimates = group["estimate"].to_numpy(dtype=float)
        main = group.loc[group["variant"] == MAIN_VARIANT, "estimate"]
        main_value = float(main.iloc[0]) if len(main) else np.nan
        entry = dict(
            statistic=statistic,
            name=name,
            family=group["family"].iloc[0],
            n_variants=len(group),
            main=main_value,
            mean=float(estimates.mean()),
            sd=float(estimates.std(ddof=1)) if len(group) > 1 else np.nan,
            min=float(estimates.min()),
            max=float(estimates.max()),
            holds_in=np.nan,
            p_all=np.nan,
            robust=None,
        )
        if statistic == "delta_uar":
            direction = np.sign(main_value)
            agrees = (np.sign(estimates) == direction) & (direction != 0)
            p = group["p_holm"].to_numpy(dtype=float)
            entry["holds_in"] = int(np.sum(agrees & (p < alpha)))
            if np.isnan(p).any():  # not testable about speakers (too few): no verdict either way
                entry["p_all"], entry["robust"] = np.nan, None
            else:
                entry["p_all"] = float(p.max()) if agrees.all() else 1.0
                entry["robust"] = bool(entry["p_all"] < alpha)
        rows.append(entry)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def robust_cell(summary_table: pd.DataFrame, comparison: str = "aligned - none") -> str:
    """The main table's cell: in how many wordings the token effect holds, and the IUT p-value."""
    row = summary_table[(summary_table["statistic"] == "delta_uar") & (summary_table["name"] == comparison)]
    if row.empty:
        return ""
    row = row.iloc[0]
    if pd.isna(row["p_all"]):
        return "not testable about speakers (too few test speakers)"
    verdict = "yes" if row["robust"] else "no"
    return f"{verdict}: holds in {int(row['holds_in'])} of {int(row['n_variants'])} (p_all {row['p_all']:.3g})"


NOTE = (
    "Every wording of the prompt (prompt.variants; main is prompt.template and prompt.cues) analysed as the "
    "main one is, then across wordings: the main wording's value, the mean, SD and range over all. For each "
    "comparison, holds_in counts the wordings where the effect is significant after Holm (alpha 0.05) with the "
    "main wording's sign; p_all is the intersection-union test that it holds in every wording (the largest "
    "Holm-adjusted p when every sign agrees, else 1); robust is p_all < 0.05."
)
