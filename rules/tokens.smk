rule bin_tokens:
    input:
        manifest="results/{corpus}/manifest.parquet",
        lld=get_shards("results/{corpus}/lld/{shard}.parquet"),
    output:
        tokens="results/{corpus}/tokens.parquet",
        meta="results/{corpus}/tokens_meta.json",
    log:
        "logs/{corpus}/bin_tokens.log",
    conda:
        "../envs/cuealign.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        options=get_bin_tokens_options,
    script:
        "../workflow_scripts/bin_tokens.py"


rule plot_token_diagnostics:
    input:
        manifest="results/{corpus}/manifest.parquet",
        tokens="results/{corpus}/tokens.parquet",
        meta="results/{corpus}/tokens_meta.json",
    output:
        png=report(
            "results/{corpus}/tokens/token_distributions.png",
            caption="../report/token_distributions.rst",
            category="Concept tokens",
            subcategory="{corpus}",
        ),
        svg="results/{corpus}/tokens/token_distributions.svg",
        correlations=report(
            "results/{corpus}/tokens/token_correlations.csv",
            caption="../report/token_correlations.rst",
            category="Concept tokens",
            subcategory="{corpus}",
        ),
        association=report(
            "results/{corpus}/tokens/token_association.csv",
            caption="../report/token_association.rst",
            category="Concept tokens",
            subcategory="{corpus}",
        ),
    log:
        "logs/{corpus}/plot_token_diagnostics.log",
    conda:
        "../envs/cuealign.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        corpus=lambda wildcards: wildcards.corpus,
    script:
        "../workflow_scripts/plot_token_diagnostics.py"
