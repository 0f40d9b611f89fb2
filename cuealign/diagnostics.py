"""Do the tokens carry information? Per-class token distributions, inter-concept correlation,
and each concept's association with the label."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from cuealign.render import to_html  # noqa: E402
from cuealign.tokens import TokensMeta  # noqa: E402


def concept_correlations(tokens: pd.DataFrame, concepts: list[str]) -> pd.DataFrame:
    """Spearman correlation between the concepts' scores (DYNAMICS vs ENERGY is expected to be high:
    openSMILE's spectral flux grows with amplitude)."""
    return tokens[[f"{c}_score" for c in concepts]].rename(columns=lambda c: c.removesuffix("_score")).corr("spearman")


def label_association(tokens: pd.DataFrame, labels: pd.Series, names: list[str]) -> pd.DataFrame:
    """Per token: Cramér's V, mutual information (bits) with the label, and the chi-square p-value."""
    rows = []
    for name in names:
        table = pd.crosstab(tokens[name], labels).to_numpy()
        if min(table.shape) < 2:
            rows.append(dict(token=name, cramers_v=0.0, mutual_information_bits=0.0, chi2_p=1.0, n=int(table.sum())))
            continue
        chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
        joint = table / table.sum()
        outer = joint.sum(axis=1, keepdims=True) @ joint.sum(axis=0, keepdims=True)
        nonzero = joint > 0
        mi = float(np.sum(joint[nonzero] * np.log2(joint[nonzero] / outer[nonzero])))
        rows.append(
            dict(
                token=name,
                cramers_v=float(stats.contingency.association(table, method="cramer", correction=False)),
                mutual_information_bits=mi,
                chi2_p=float(p),
                n=int(table.sum()),
            )
        )
    return pd.DataFrame(rows)


def plot_token_distributions(
    tokens: pd.DataFrame, labels: pd.Series, vocabularies: dict[str, list[str]], *, title: str = ""
) -> plt.Figure:
    """The paper's Figure 1: for each token, the share of each class's utterances in each bin."""
    names = list(vocabularies)
    columns = 3
    rows = int(np.ceil(len(names) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.6 * rows), squeeze=False)
    classes = sorted(labels.unique())
    for ax, name in zip(axes.flat, names, strict=False):  # the grid's spare axes are hidden below
        vocabulary = [v for v in vocabularies[name] if (tokens[name] == v).any()] or vocabularies[name]
        share = pd.crosstab(labels, tokens[name], normalize="index").reindex(
            index=classes, columns=vocabulary, fill_value=0
        )
        colours = plt.get_cmap("RdYlBu_r" if name != "VOICE_QUALITY" else "tab10")(
            np.linspace(0.05, 0.95, len(vocabulary))
        )
        left = np.zeros(len(classes))
        for value, colour in zip(vocabulary, colours, strict=True):
            ax.barh(
                classes, share[value].to_numpy(), left=left, color=colour, label=value, edgecolor="white", linewidth=0.5
            )
            left += share[value].to_numpy()
        ax.set_title(name, fontsize=11, fontweight="bold")
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of the class's utterances")
        ax.invert_yaxis()
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=3, frameon=False)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


def write_diagnostics(
    tokens: pd.DataFrame,
    manifest: pd.DataFrame,
    meta: TokensMeta | dict,
    *,
    figure_png: str | Path,
    figure_svg: str | Path,
    correlations_csv: str | Path,
    association_csv: str | Path,
    correlations_html: str | Path | None = None,
    association_html: str | Path | None = None,
    corpus: str = "",
) -> None:
    """All token diagnostics of one corpus, over all its tokenised utterances."""
    labels = tokens[["utt_id"]].merge(manifest[["utt_id", "label"]], on="utt_id", how="left")["label"]
    meta = TokensMeta.of(meta)
    vocabularies = meta.vocabularies(unvoiced=True)
    concepts = meta.names[:-1]  # the scalar concepts (VOICE_QUALITY has no score)
    correlations = concept_correlations(tokens, concepts).round(4)
    association = label_association(tokens, labels, list(vocabularies)).round(6)
    correlations.to_csv(correlations_csv)
    association.to_csv(association_csv, index=False)
    pages = [
        (correlations_html, correlations.reset_index(names="concept"), "Spearman correlation of the concept scores"),
        (association_html, association, "Association of each token with the label"),
    ]
    for path, table, title in pages:
        if path is not None:
            Path(path).write_text(to_html(table, title=f"{corpus}: {title}"))
    fig = plot_token_distributions(
        tokens, labels, vocabularies, title=f"{corpus}: concept tokens per class (n = {len(tokens)})"
    )
    fig.savefig(figure_png, dpi=150)
    fig.savefig(figure_svg)
    plt.close(fig)
