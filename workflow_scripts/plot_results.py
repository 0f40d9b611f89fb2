import pandas as pd

from cuealign.plots import confusion_grid, corruption_curve
from cuealign.runlog import log_to

with log_to(snakemake.log[0]):
    manifest = pd.read_parquet(snakemake.input.manifest)
    labels = sorted(manifest.loc[manifest["status"] == "ok", "label"].unique())
    uar = pd.read_csv(snakemake.input.uar)
    confusion = pd.read_csv(snakemake.input.confusion)
    present = list(dict.fromkeys(uar["condition"]))
    # aligned, conflict, the first shuffle, full corruption (first seed), audio only
    wanted = ["aligned", "conflict"]
    wanted += [c for c in present if c.startswith("shuffle_s")][:1]
    wanted += [c for c in present if c.startswith("corrupt_p1_s")][:1]
    wanted += ["none"]
    figure = confusion_grid(confusion, [c for c in wanted if c in present], labels, title=snakemake.params.title)
    figure.savefig(snakemake.output.confusion_png, dpi=150)
    figure.savefig(snakemake.output.confusion_svg)
    figure = corruption_curve(uar, chance=1 / len(labels), title=snakemake.params.title)
    figure.savefig(snakemake.output.curve_png, dpi=150)
    figure.savefig(snakemake.output.curve_svg)
