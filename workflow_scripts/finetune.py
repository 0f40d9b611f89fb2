from pathlib import Path

import pandas as pd

from cuealign.analysis.plots import loss_curve
from cuealign.models.finetune import finetune
from cuealign.models.numerics import setup_numerics
from cuealign.runlog import log_to
from cuealign.tokens import TokensMeta

with log_to(snakemake.log[0]):
    spec = snakemake.params.spec
    # before any tensor operation: portable numerics choose PyTorch's kernels for the whole process
    setup_numerics(spec["numerics"], spec["device"], threads=snakemake.threads)
    meta = TokensMeta.read(snakemake.input.meta)
    history, _ = finetune(
        spec,
        tokens=pd.read_parquet(snakemake.input.tokens),
        manifest=pd.read_parquet(snakemake.input.manifest),
        meta=meta,
        prompt=snakemake.params.prompt,
        out_dir=snakemake.output.model,
        # beside the rule's outputs, so that Snakemake keeps it when a killed job's outputs are removed
        checkpoint_dir=Path(snakemake.output.model).parent / "checkpoint",
    )
    history.to_csv(snakemake.output.history, index=False)
    loss_curve(history, title=f"{snakemake.wildcards.model} on {snakemake.wildcards.corpus}").savefig(
        snakemake.output.curve, dpi=150
    )
