from pathlib import Path

from cuealign.analysis.provenance import config_page
from cuealign.runlog import log_to

with log_to(snakemake.log[0]):
    Path(snakemake.output.page).write_text(config_page(snakemake.config))
