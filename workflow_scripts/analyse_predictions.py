from cuealign.analysis.job import run_analysis
from cuealign.runlog import log_to

with log_to(snakemake.log[0]):
    run_analysis(
        corpus=snakemake.wildcards.corpus,
        model=snakemake.wildcards.model,
        inputs=snakemake.input,
        outputs=snakemake.output,
        params=snakemake.params,
        config=snakemake.config,
    )
