import pandas as pd

from cuealign.interventions import conditions_from_config
from cuealign.prompts import prompt_table
from cuealign.runlog import log_to
from cuealign.shards import split_by_shard
from cuealign.tokens import TokensMeta

with log_to(snakemake.log[0]) as log:
    manifest = pd.read_parquet(snakemake.input.manifest)
    meta = TokensMeta.read(snakemake.input.meta)
    prompts = prompt_table(
        pd.read_parquet(snakemake.input.tokens),
        manifest,
        meta,
        conditions=conditions_from_config(snakemake.params.conditions, meta.names),
        prompt=snakemake.params.prompt,
        split=snakemake.params.split,
        corrupt_draw=snakemake.params.conditions["corrupt_draw"],
        conflict_voice_quality=snakemake.params.conditions["conflict_voice_quality"],
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
