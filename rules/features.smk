rule extract_lld:
    input:
        manifest="results/{corpus}/manifest.parquet",
    output:
        lld="results/{corpus}/lld/{shard}.parquet",
    log:
        "logs/{corpus}/extract_lld/{shard}.log",
    benchmark:
        "results/{corpus}/benchmarks/extract_lld/{shard}.tsv"
    conda:
        "../envs/cuealign.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=get_extract_lld_runtime,
    params:
        shard=lambda wildcards: int(wildcards.shard),
        shards=lambda wildcards: shard_count(wildcards.corpus),
        cache_dir=config["cache_dir"],
    script:
        "../workflow_scripts/extract_lld.py"
