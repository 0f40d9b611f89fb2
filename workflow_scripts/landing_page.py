"""The report's landing page: report/workflow.rst with the headline numbers of every corpus x model
(cuealign.analysis.tables.landing_rst)."""

from pathlib import Path

import pandas as pd

from cuealign.analysis.tables import landing_rst
from cuealign.runlog import log_to

with log_to(snakemake.log[0]):
    mains = [pd.read_csv(path, dtype=str) for path in snakemake.input.mains]
    text = landing_rst(Path(snakemake.input.text).read_text(encoding="utf-8"), mains)
    Path(snakemake.output.page).write_text(text, encoding="utf-8")
