from pathlib import Path

from cuealign.corpora.synthesis import generate_corpus
from cuealign.runlog import log_to

with log_to(snakemake.log[0]):
    truth = generate_corpus(Path(snakemake.output.truth).parent, **snakemake.params.options)
    truth.to_csv(snakemake.output.truth, index=False)
