import json

import pandas as pd

from cuealign.diagnostics import write_diagnostics
from cuealign.runlog import log_to

with log_to(snakemake.log[0]):
    with open(snakemake.input.meta) as stream:
        meta = json.load(stream)
    write_diagnostics(
        pd.read_parquet(snakemake.input.tokens),
        pd.read_parquet(snakemake.input.manifest),
        meta,
        figure_png=snakemake.output.png,
        figure_svg=snakemake.output.svg,
        correlations_csv=snakemake.output.correlations,
        association_csv=snakemake.output.association,
        corpus=snakemake.params.corpus,
    )
