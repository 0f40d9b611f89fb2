import pandas as pd

from cuealign.diagnostics import write_diagnostics
from cuealign.runlog import log_to
from cuealign.tokens import TokensMeta

with log_to(snakemake.log[0]):
    meta = TokensMeta.read(snakemake.input.meta)
    write_diagnostics(
        pd.read_parquet(snakemake.input.tokens),
        pd.read_parquet(snakemake.input.manifest),
        meta,
        figure_png=snakemake.output.png,
        figure_svg=snakemake.output.svg,
        correlations_csv=snakemake.output.correlations,
        association_csv=snakemake.output.association,
        correlations_html=snakemake.output.correlations_html,
        association_html=snakemake.output.association_html,
        corpus=snakemake.params.corpus,
    )
