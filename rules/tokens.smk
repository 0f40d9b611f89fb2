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
            category="3. Concept tokens",
            subcategory="{corpus}",
            labels={"figure": "1 token distributions per class"},
        ),
        svg="results/{corpus}/tokens/token_distributions.svg",
        correlations="results/{corpus}/tokens/token_correlations.csv",
        association="results/{corpus}/tokens/token_association.csv",
        correlations_html=report(
            "results/{corpus}/tokens/token_correlations.html",
            caption="../report/token_correlations.rst",
            category="3. Concept tokens",
            subcategory="{corpus}",
            labels={"table": "2 token correlations"},
        ),
        association_html=report(
            "results/{corpus}/tokens/token_association.html",
            caption="../report/token_association.rst",
            category="3. Concept tokens",
            subcategory="{corpus}",
            labels={"table": "3 token-label association"},
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
