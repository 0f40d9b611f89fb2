import pandas as pd

from cuealign.runlog import log_to
from cuealign.tokens import TokenOptions, fit_tokens

with log_to(snakemake.log[0]):
    manifest = pd.read_parquet(snakemake.input.manifest)
    lld = pd.concat([pd.read_parquet(path) for path in snakemake.input.lld], ignore_index=True)
    tokens, meta = fit_tokens(lld, manifest, TokenOptions.from_config(snakemake.params.options))
    tokens.to_parquet(snakemake.output.tokens, index=False)
    meta.write(snakemake.output.meta)
