import json

import pandas as pd

from cuealign.prompts import prompt_table
from cuealign.runlog import log_to
from cuealign.shards import split_by_shard

with log_to(snakemake.log[0]) as log:
    manifest = pd.read_parquet(snakemake.input.manifest)
    with open(snakemake.input.meta) as stream:
        meta = json.load(stream)
    prompts = prompt_table(
        pd.read_parquet(snakemake.input.tokens),
        manifest,
        meta,
        conditions=snakemake.params.conditions,
        prompt=snakemake.params.prompt,
        split=snakemake.params.split,
    )
    log.info(
        "%d prompts: %d utterances of split %s x %d conditions (%s)",
        len(prompts),
        prompts["utt_id"].nunique(),
        snakemake.params.split,
        prompts["condition"].nunique(),
        ", ".join(prompts["condition"].unique()),
    )
    shards = split_by_shard(prompts, manifest, snakemake.params.shards)
    for path, shard in zip(snakemake.output.prompts, shards, strict=True):
        shard.to_parquet(path, index=False)
