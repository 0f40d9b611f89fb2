"""The study's tables as a reader sees them: the paper's Table II/III row, the interventions
table, and the cue-following table; cuealign.render writes them as Markdown, LaTeX and HTML."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cuealign.analysis.intervals import CONDITIONAL


def _fmt(value: float, digits: int = 3) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def _p(value: float) -> str:
    return "" if value is None or np.isnan(value) else (f"{value:.2e}" if value < 1e-3 else f"{value:.3f}")


def ci_label(method: str, n_speakers: int, cluster: str = "speaker", n_clusters: int | None = None) -> str:
    """How a table names its intervals' method (the conditional one says what it covers; one
    resampled by fold says how many)."""
    if method == CONDITIONAL:
        return f"within-speaker, conditional on these {n_speakers} speakers"
    if cluster == "fold":
        return f"{method}, {n_speakers} speakers in {n_clusters} folds"
    return f"{method}, {n_speakers} speakers"


def _about_short(result: dict) -> str:
    about = result["intervals"]
    return (
        "speakers like these" if about["target"] == "speakers" else f"these {about['n_speakers']} speakers' utterances"
    )


def _test_short(test: str, cluster: str = "speaker") -> str:
    """The gain's test in a few words: exact McNemar, or a sign-flip test over speakers (folds) or
    over utterances."""
    if test == "exact McNemar":
        return test
    if test.startswith("not testable"):
        return f"sign-flip over {cluster}s"
    return "sign-flip over " + test.rsplit(" over ", 1)[-1]


def _level(result: dict) -> str:
    return f"{round(100 * result['intervals']['level'])}%"


METHOD_WORDS = {
    "studentized": "speaker-clustered studentized bootstrap (bootstrap-t, delete-one-speaker jackknife SEs)",
    "jackknife-t": "delete-one-speaker jackknife standard error with t quantiles (Bell-McCaffrey degrees of freedom)",
    "bca": "speaker-clustered BCa bootstrap",
    "percentile": "speaker-clustered percentile bootstrap",
    CONDITIONAL: "within-speaker bootstrap (utterances resampled within each speaker)",
}


def method_words(about: dict) -> str:
    """The interval method in words, with its unit (a fold for a corpus pooled by fold) and the
    jackknife-t degrees of freedom."""
    words = METHOD_WORDS[about["method"]]
    if about.get("cluster") == "fold" and about["method"] != CONDITIONAL:
        words = words.replace("speaker", "fold")
    if about.get("df") is not None:
        words = words.replace("degrees of freedom)", f"degrees of freedom: {about['df']:.1f})")
    return words


def interval_note(result: dict) -> str:
    """What every interval and test of these tables is about and how it is made, and the warnings
    a reader must see."""
    about = result["intervals"]
    unit = about.get("cluster", "speaker")
    tests = (
        f"Tests: a sign-flip test over {unit}s for every comparison. "
        if about["target"] == "speakers"
        else "Tests: exact McNemar where each side is one condition, else a sign-flip test over utterances with "
        "every seed counted. "
    )
    text = (
        f"Every interval and test here is {about['about']} (analysis.target: {about['target_requested']}). "
        f"Intervals: {method_words(about)}, {_level(result)}, over {_over(about)}; "
        f"paired (every condition on the same resamples). {tests}"
    )
    if about["warning"]:
        text = f"WARNING: {about['warning']}. " + text
    if result["uar"]["ci_zero_width"].any() or result["comparisons"]["ci_zero_width"].any():
        text += "* marks an interval of zero width: every resample gave the same value, not certainty. "
    return text


def _over(about: dict) -> str:
    if about.get("cluster") == "fold" and about["target"] == "speakers":
        return f"{about['n_speakers']} test speakers in {about['n_clusters']} folds, each fold resampled whole"
    return f"{about['n_speakers']} test speakers"


def entered_rows(entries: list[dict], columns: list[str]) -> pd.DataFrame:
    """config: reference_results as rows of the models table: the UAR without tokens as entered,
    marked in the model's name and the CI method column as entered from its source, not computed;
    every other cell empty."""
    rows = [
        {column: "" for column in columns}
        | {
            "corpus": entry["corpus"],
            "model": f"{entry['model']} (entered)",
            "UAR without tokens": _fmt(float(entry["uar"])),
            "CI method": f"entered from {entry['source']}; not computed here",
        }
        for entry in entries
    ]
    return pd.DataFrame(rows, columns=columns)


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
                f"{_level(result)} CI of delta": f"[{_fmt(gain['ci_low'])}, {_fmt(gain['ci_high'])}]",
                "CI method": ci_label(gain["ci_method"], gain["n_speakers"], gain["cluster"], gain["n_clusters"]),
                "about": _about_short(result),
                "test": _test_short(gain["test"], gain["cluster"]),
                "p": _p(gain["p_value"]) if pd.notna(gain["p_value"]) else "not testable",
                "p (Holm in family)": _p(gain["p_holm"]),
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
            f"{_level(result)} CI": f"[{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
            + (" *" if row["ci_zero_width"] else ""),
        }
        if "changed_share" in row and pd.notna(row["changed_share"]):  # what corruption really changed
            entry["tokens changed"] = _fmt(row["changed_share"])
        key = f"aligned - {condition}"
        if key in versus.index:
            v = versus.loc[key]
            entry |= {
                "aligned - condition": _fmt(v["delta_uar"]),
                "CI": f"[{_fmt(v['ci_low'])}, {_fmt(v['ci_high'])}]",
                "test": v["test"],
                "p": _p(v["p_value"]),
                "family": v["family"],
                "p (Holm in family)": _p(v["p_holm"]),
            }
        if condition in shifts.index:
            entry |= {
                "neutral shift": _fmt(shifts.loc[condition, "neutral_shift"]),
                "flip rate": _fmt(shifts.loc[condition, "flip_rate_vs_aligned"]),
            }
        rows.append(entry)
    return pd.DataFrame(rows).fillna("")


def variants_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Across prompt wordings (variants.summary): each UAR and comparison, main wording, mean, SD,
    range; for comparisons, in how many wordings the effect holds and the test that it holds in all."""
    rows = []
    for row in summary.itertuples():
        entry = {
            "": "UAR" if row.statistic == "uar" else "difference",
            "condition or comparison": row.name,
            "wordings": row.n_variants,
            "main wording": _fmt(row.main),
            "mean": _fmt(row.mean),
            "SD": _fmt(row.sd) if pd.notna(row.sd) else "",
            "range": f"[{_fmt(row.min)}, {_fmt(row.max)}]",
        }
        if row.statistic == "delta_uar":
            entry |= {
                "holds in": f"{int(row.holds_in)} of {row.n_variants}",
                "p (all wordings)": _p(row.p_all),
                "in all": "yes" if row.robust else "no",
            }
        rows.append(entry)
    return pd.DataFrame(rows).fillna("")


def comparisons_table(result: dict) -> pd.DataFrame:
    """Every paired comparison: the UAR difference [CI], the discordant counts, raw and Holm p."""
    rows = [
        {
            "family": c["family"],
            "comparison": c["comparison"],
            "delta UAR": _fmt(c["delta_uar"]),
            f"{_level(result)} CI": f"[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]"
            + (" *" if c["ci_zero_width"] else ""),
            "a right, b wrong": "" if pd.isna(c["a_right_b_wrong"]) else str(int(c["a_right_b_wrong"])),
            "a wrong, b right": "" if pd.isna(c["a_wrong_b_right"]) else str(int(c["a_wrong_b_right"])),
            "test": c["test"],
            "p": _p(c["p_value"]),
            "p (Holm in family)": _p(c["p_holm"]),
        }
        for _, c in result["comparisons"].iterrows()
    ]
    return pd.DataFrame(rows)


def cue_following_table(cues: pd.DataFrame) -> pd.DataFrame:
    """cue_following.csv as a reader sees it."""
    return pd.DataFrame(
        {
            "condition": cues["condition"],
            "utterances": cues["utterances"],
            "direction (cosine)": cues["cue_alignment"].map(_fmt),
            "toward the pointed class": cues["toward_pointed_class"].map(_fmt),
            "probability moved": cues["probability_moved"].map(_fmt),
            "follows the tokens": cues["follows"].map({True: "yes", False: "no"}),
        }
    )


MAIN_NOTE = (
    "The paper's Table II/III row: UAR with audio only (none) and with aligned concept tokens, the gain "
    "with its paired CI, what the interval and the test are about (analysis.target: speakers like these, or "
    "these speakers' utterances), the gain's test (a sign-flip test over speakers, over folds for a corpus "
    "pooled over folds; about utterances the paper's exact McNemar), its p-value and Holm adjustment within "
    "its family (the paper's default: the gain is a family of its own), and the share of unparsed answers."
)
INTERVENTIONS_NOTE = (
    "UAR per condition with its CI; seeded conditions per seed and as the mean over seeds (rows ending in "
    "_mean, which carry the tests); for corruption, the share of tokens that really changed. Where aligned "
    "was compared with the condition: the difference, its CI, the test (about speakers, a sign-flip test over "
    "speakers, or folds for a pooled corpus; about these speakers' utterances, exact McNemar for one "
    "prediction per utterance on each side and a sign-flip test over utterances where a side is a mean over "
    "seeds), its p and the Holm adjustment within the comparison's family. Neutral shift: the change in the "
    "share of neutral answers against aligned; flip rate: the share of answers that differ from aligned."
)
COMPARISONS_NOTE = (
    "Every test of the run, once, by family: the declared families (analysis.families; the paper's by "
    "default: the gain; aligned against conflict, shuffle and full corruption; those against audio only) "
    "and an exploratory family for every other condition. The UAR difference with its paired CI, the "
    "discordant utterances (McNemar only), the test and its p, and the Holm-adjusted p within the family. "
    "A corruption at p = 0 asks what aligned asks and is not tested against it."
)
CUE_FOLLOWING_NOTE = (
    "Under conflict and swap: does the label distribution move where the changed tokens point (the "
    "classes the new token is more typical of than the old one in the fit split)? Direction: the mean "
    "cosine between the change of log-probability and the tokens' pull (-1 to 1); toward the pointed "
    "class: the share of utterances whose most-pulled class gained; probability moved: the mean "
    "probability moved to the pulled classes (the effect size). A model follows the tokens only with "
    "a positive direction, most utterances moving toward the pointed class and an effect of at least "
    "the configured minimum (analysis.cue_following_min_shift)."
)
ACCOUNTING_NOTE = (
    "Every utterance from the manifest to the tables: how many failed an audio check (listed in "
    "bad_files.csv), how many were usable and evaluated, the prompts (utterances x conditions), the "
    "predictions and the unparsed answers (kept and scored as wrong)."
)


def landing_rst(text: str, mains: list[pd.DataFrame]) -> str:
    """The report's landing page (``text``, reStructuredText) with the headline numbers of every
    corpus x model (their table_main.csv rows) before 'Where to look', so that the first page of the
    report answers the study's question: one line each, which wraps in the page's narrow text column
    (a table there ran under the workflow graph beside it)."""
    rows = [row for main in mains for _, row in main.iterrows()]
    if not rows:
        return text

    def line(row: pd.Series) -> str:
        ci = next(c for c in row.index if c.endswith("CI of delta"))
        held = f", Holm {row['p (Holm in family)']}" if row["p"] != "not testable" else ""  # p: a number or that
        return (
            f"- **{row['corpus']} / {row['model']}**: UAR {row['UAR without tokens']} without tokens, "
            f"{row['UAR with tokens']} with aligned tokens; delta {row['delta']}, {ci.replace(' of delta', '')} "
            f"{row[ci]}; {row['test']} p = {row['p']}{held}; about {row['about']}."
        )

    table = "\n".join(
        [
            "Headline numbers (the Results pages give each with its note, the tests' families and the accounting):",
            "",
            *(line(row) for row in rows),
            "",
            "",
        ]
    )
    anchor = "Where to look"
    return text.replace(anchor, table + anchor, 1) if anchor in text else text + "\n\n" + table
