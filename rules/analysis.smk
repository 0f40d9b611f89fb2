rule analyse_predictions:
    input:
        manifest="results/{corpus}/manifest.parquet",
        tokens="results/{corpus}/tokens.parquet",
        meta="results/{corpus}/tokens_meta.json",
        prompts=get_shards("results/{corpus}/prompts/{shard}.parquet"),
        predictions=get_shards("results/{corpus}/{model}/predictions/{shard}.parquet"),
    output:
        uar=report(
            "results/{corpus}/{model}/analysis/uar.csv",
            caption="../report/uar.rst",
            category="Results",
            subcategory="{corpus} / {model}",
        ),
        comparisons=report(
            "results/{corpus}/{model}/analysis/comparisons.csv",
            caption="../report/comparisons.rst",
            category="Results",
            subcategory="{corpus} / {model}",
        ),
        curve="results/{corpus}/{model}/analysis/corruption_curve.csv",
        spearman="results/{corpus}/{model}/analysis/spearman.json",
        confusion="results/{corpus}/{model}/analysis/confusion.csv",
        shifts="results/{corpus}/{model}/analysis/shifts.csv",
        cue_following="results/{corpus}/{model}/analysis/cue_following.csv",
        main_csv="results/{corpus}/{model}/analysis/table_main.csv",
        main_md="results/{corpus}/{model}/analysis/table_main.md",
        main_tex="results/{corpus}/{model}/analysis/table_main.tex",
        interventions_md="results/{corpus}/{model}/analysis/table_interventions.md",
        interventions_tex="results/{corpus}/{model}/analysis/table_interventions.tex",
        accounting="results/{corpus}/{model}/analysis/accounting.csv",
        run="results/{corpus}/{model}/RUN.json",
    log:
        "logs/{corpus}/{model}/analyse_predictions.log",
    benchmark:
        "results/{corpus}/benchmarks/{model}/analyse_predictions.tsv"
    conda:
        "../envs/cuealign.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        options=config["analysis"],
        # provenance: the whole config (its hash and seeds go into every table and RUN.json)
        config=config,
        spec=lambda wildcards: MODELS[wildcards.model],
    script:
        "../workflow_scripts/analyse_predictions.py"


rule collect_main_tables:
    input:
        tables=get_collect_main_tables_input,
    output:
        csv="results/models_table.csv",
        md=report(
            "results/models_table.md",
            caption="../report/models_table.rst",
            category="Results",
        ),
        tex="results/models_table.tex",
    log:
        "logs/collect_main_tables.log",
    conda:
        "../envs/cuealign.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../workflow_scripts/collect_main_tables.py"
