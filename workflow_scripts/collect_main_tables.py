import pandas as pd

from cuealign.analysis.provenance import COLUMNS
from cuealign.analysis.tables import MAIN_NOTE, entered_rows
from cuealign.render import to_html, to_latex, to_markdown
from cuealign.runlog import log_to

with log_to(snakemake.log[0]):
    table = pd.concat([pd.read_csv(path, dtype=str, keep_default_na=False) for path in snakemake.input.tables])
    # results entered from publications (config: reference_results), marked as not computed here
    table = pd.concat([table, entered_rows(snakemake.params.entered, list(table.columns))])
    # by corpus, then model name whatever its case (Pengi between paraclap and qwen2-audio)
    table = table.sort_values(["corpus", "model"], key=lambda names: names.str.lower(), kind="stable").fillna("")
    table.to_csv(snakemake.output.csv, index=False)  # with its provenance columns
    table = table.drop(columns=COLUMNS)  # the printed tables stay the paper's layout
    with open(snakemake.output.md, "w") as stream:
        stream.write(to_markdown(table))
    with open(snakemake.output.tex, "w") as stream:
        stream.write(to_latex(table))
    with open(snakemake.output.html, "w") as stream:
        stream.write(to_html(table, title="Every corpus and model", note=MAIN_NOTE))
