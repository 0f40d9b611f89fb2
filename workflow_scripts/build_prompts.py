import pandas as pd

from cuealign.interventions import conditions_from_config
from cuealign.prompts import prompt_table
from cuealign.runlog import log_to
from cuealign.tokens import TokensMeta

with log_to(snakemake.log[0]) as log:
    manifest = pd.read_parquet(snakemake.input.manifest)
    meta = TokensMeta.read(snakemake.input.meta)
    shard, shards = int(snakemake.wildcards.shard), snakemake.params.shards
    # one shard's prompts: every shuffle and corruption drawn over the whole split, this shard's rows kept
    prompts = prompt_table(
        pd.read_parquet(snakemake.input.tokens),
        manifest,
        meta,
        conditions=conditions_from_config(snakemake.params.conditions, meta.names),
        prompt=snakemake.params.prompt,
        split=snakemake.params.split,
        corrupt_draw=snakemake.params.conditions["corrupt_draw"],
        conflict_voice_quality=snakemake.params.conditions["conflict_voice_quality"],
        shard=shard,
        shards=shards,
    )
    log.info(
        "shard %d of %d: %d prompts, %d utterances of split %s x %d conditions (%s)",
        shard,
        shards,
        len(prompts),
        prompts["utt_id"].nunique(),
        snakemake.params.split,
        prompts["condition"].nunique(),
        ", ".join(prompts["condition"].unique()),
    )
    prompts.to_parquet(snakemake.output.prompts, index=False)
