rule build_prompts:
    input:
        manifest="results/{corpus}/manifest.parquet",
        tokens="results/{corpus}/tokens.parquet",
        meta="results/{corpus}/tokens_meta.json",
    output:
        prompts="results/{corpus}/prompts/{shard}.parquet",
    log:
        "logs/{corpus}/build_prompts/{shard}.log",
    conda:
        "../envs/cuealign.yaml"
    threads: 1
    resources:
        mem_mb=get_build_prompts_mem_mb,
    params:
        conditions=config["conditions"],
        prompt=config["prompt"],
        split=lambda wildcards: corpus_setting(
            config, wildcards.corpus, "evaluate_split"
        ),
        shards=lambda wildcards: shard_count(wildcards.corpus),
    script:
        "../workflow_scripts/build_prompts.py"
