import json

import pandas as pd

from cuealign.analysis.plots import confusion_conditions, confusion_grid, corruption_curve, variant_effects
from cuealign.runlog import log_to

with log_to(snakemake.log[0]):
    manifest = pd.read_parquet(snakemake.input.manifest)
    labels = sorted(manifest.loc[manifest["status"] == "ok", "label"].unique())
    uar = pd.read_csv(snakemake.input.uar)
    confusion = pd.read_csv(snakemake.input.confusion)
    figure = confusion_grid(confusion, confusion_conditions(uar), labels, title=snakemake.params.title)
    figure.savefig(snakemake.output.confusion_png, dpi=150)
    figure.savefig(snakemake.output.confusion_svg)
    with open(snakemake.input.spearman) as stream:
        spearman = json.load(stream)
    figure = corruption_curve(uar, chance=1 / len(labels), title=snakemake.params.title, spearman=spearman)
    figure.savefig(snakemake.output.curve_png, dpi=150)
    figure.savefig(snakemake.output.curve_svg)
    figure = variant_effects(pd.read_csv(snakemake.input.variants), title=snakemake.params.title)
    figure.savefig(snakemake.output.variants_png, dpi=150)
    figure.savefig(snakemake.output.variants_svg)
