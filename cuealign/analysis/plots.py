"""The study's figures: confusion matrices per condition and the corruption curve."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cuealign.analysis.tables import ci_label  # noqa: E402

PANELS_PER_ROW = 3  # the report's frame on a laptop screen is ~1,100 px: 3 panels keep the numbers legible


def confusion_grid(confusion: pd.DataFrame, conditions: list[str], labels: list[str], *, title: str = "") -> plt.Figure:
    """Row-normalised confusion matrices (the paper's Figure 2), at most PANELS_PER_ROW a row, so
    that each cell's share stays legible when the report fits the figure to its frame."""
    columns = labels + sorted(set(confusion["pred"]) - set(labels))  # 'unparsed' shown if present
    ncols = min(len(conditions), PANELS_PER_ROW)
    nrows = -(-len(conditions) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.9 * nrows), squeeze=False, layout="constrained")
    for ax, condition in zip(axes.flat, conditions, strict=False):
        rows = confusion[confusion["condition"] == condition]
        matrix = rows.pivot_table(index="label", columns="pred", values="share", fill_value=0.0)
        matrix = matrix.reindex(index=labels, columns=columns, fill_value=0.0)
        ax.imshow(matrix.to_numpy(), vmin=0, vmax=1, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix.to_numpy()):
            ax.text(
                j, i, f"{value:.2f}", ha="center", va="center", fontsize=11, color="white" if value > 0.55 else "black"
            )
        ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=10)
        ax.set_yticks(range(len(labels)), labels, fontsize=10)
        ax.set_title(condition, fontsize=12)
        ax.set_xlabel("predicted", fontsize=10)
        ax.set_ylabel("true", fontsize=10)
    for ax in list(axes.flat)[len(conditions) :]:
        ax.set_axis_off()  # the last row's empty places
    if title:
        fig.suptitle(title, fontsize=13)
    return fig


def corruption_curve(uar: pd.DataFrame, *, chance: float, title: str = "", spearman: dict | None = None) -> plt.Figure:
    """UAR against corruption probability: per-seed points, the seed mean with its CI band, and
    the aligned, audio-only and chance levels (the paper's Figure 3)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    corrupt = uar[uar["kind"] == "corrupt"]
    points = corrupt[corrupt["seed"].notna()]
    means = corrupt[corrupt["seed"].isna()].sort_values("p")
    band = "CI"
    if len(means) and "ci_method" in means:
        first = means.iloc[0]
        units = ci_label(first["ci_method"], int(first["n_speakers"]), first["cluster"], int(first["n_clusters"]))
        band = f"{100 * first['ci_level']:g}% CI ({units})"
    ax.fill_between(means["p"], means["ci_low"], means["ci_high"], alpha=0.25, label=band)
    ax.plot(means["p"], means["uar"], marker="o", label="corrupted tokens (mean over seeds)")
    ax.scatter(points["p"], points["uar"], s=12, color="black", alpha=0.5, label="single seeds")
    levels = uar.set_index("condition")["uar"]
    ax.axhline(levels["none"], color="tab:red", linestyle="--", label="audio only (none)")
    ax.axhline(levels["aligned"], color="tab:green", linestyle=":", label="aligned")
    ax.axhline(chance, color="grey", linestyle="-.", linewidth=0.8, label="chance")
    ax.set_xlabel("corruption probability p")
    ax.set_ylabel("UAR")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="best")
    if spearman is not None:
        if spearman.get("rho") is None:
            summary = f"Spearman's rho undefined ({spearman.get('points', 0)} levels or a flat curve)"
        else:
            rho, p, levels = spearman["rho"], spearman["p_value"], spearman["points"]
            summary = f"Spearman's rho {rho:.2f} over {levels} level means (permutation p = {p:.2g})"
        title = f"{title}\n{summary}" if title else summary
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def variant_effects(
    variants: pd.DataFrame, *, comparisons: tuple[str, ...] = ("aligned - none", "aligned - conflict"), title: str = ""
) -> plt.Figure:
    """Each token effect in each prompt wording with its CI (variants.csv); a star where it is
    significant after Holm in that wording."""
    shown = [c for c in comparisons if (variants["name"] == c).any()]
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(2.6 + 2.4 * len(shown), 3.4), layout="constrained")
    axes = np.atleast_1d(axes)
    for ax, comparison in zip(axes, shown, strict=False):
        rows = variants[(variants["statistic"] == "delta_uar") & (variants["name"] == comparison)]
        x = np.arange(len(rows))
        estimate = rows["estimate"].to_numpy()
        low, high = estimate - rows["ci_low"].to_numpy(), rows["ci_high"].to_numpy() - estimate
        ax.errorbar(x, estimate, yerr=[low, high], fmt="o", capsize=4)
        for i, p in enumerate(rows["p_holm"].to_numpy()):
            if p < 0.05:
                ax.annotate("*", (x[i], rows["ci_high"].iloc[i]), ha="center", va="bottom")
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xticks(x, rows["variant"], rotation=30, ha="right", fontsize=8)
        ax.set_title(comparison, fontsize=9)
        ax.set_ylabel("UAR difference")
    if title:
        fig.suptitle(f"{title}: token effects per prompt wording", fontsize=10)
    return fig


def loss_curve(history: pd.DataFrame, *, title: str = "") -> plt.Figure:
    """Training loss per step and per epoch, with the batch accuracy score mode would give."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    ax.plot(history["step"], history["loss"], color="tab:blue", alpha=0.35, linewidth=0.8, label="loss (step)")
    epochs = history.groupby("epoch").agg(step=("step", "max"), loss=("loss", "mean"), accuracy=("accuracy", "mean"))
    ax.plot(epochs["step"], epochs["loss"], color="tab:blue", marker="o", markersize=3, label="loss (epoch mean)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("cross-entropy of the label (nats/token)")
    ax.set_ylim(bottom=0)
    right = ax.twinx()
    right.plot(
        epochs["step"],
        epochs["accuracy"],
        color="tab:orange",
        marker="s",
        markersize=3,
        label="batch accuracy (epoch mean)",
    )
    right.set_ylim(0, 1)
    right.set_ylabel("train batch accuracy")
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="center right", fontsize=8)
    ax.set_title(title)
    return fig


def confusion_conditions(uar: pd.DataFrame) -> list[str]:
    """The conditions the confusion figure shows, as present: aligned, conflict, the first shuffle
    seed, full corruption (first seed) and audio only."""
    seeded = uar[uar["seed"].notna()]
    wanted = ["aligned", "conflict"]
    wanted += seeded.loc[seeded["kind"] == "shuffle", "condition"].head(1).tolist()
    wanted += seeded.loc[(seeded["kind"] == "corrupt") & (seeded["p"] == 1.0), "condition"].head(1).tolist()
    wanted += ["none"]
    return [c for c in wanted if c in set(uar["condition"])]
