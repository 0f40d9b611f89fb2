import pandas as pd
import torch

from cuealign.backends.loader import load_backend
from cuealign.cache import AnswerStore
from cuealign.inference import predict_shard
from cuealign.runlog import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    manifest = pd.read_parquet(snakemake.input.manifest)
    labels = sorted(manifest.loc[manifest["status"] == "ok", "label"].unique())
    predictions = predict_shard(
        pd.read_parquet(snakemake.input.prompts),
        load_backend(snakemake.params.spec),
        labels=labels,
        spec=snakemake.params.spec,
        # one answer file per inference job (corpus, model, shard); every job reads them all
        cache=AnswerStore(
            snakemake.params.cache_dir,
            "predictions",
            writer="-".join(snakemake.wildcards[w] for w in ("corpus", "model", "shard")),
        ),
    )
    predictions.to_parquet(snakemake.output.predictions, index=False)
