rule analyse_predictions:
    input:
        manifest="results/{corpus}/manifest.parquet",
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
        main_md="results/{corpus}/{model}/analysis/table_main.md",
        main_tex="results/{corpus}/{model}/analysis/table_main.tex",
        interventions_md="results/{corpus}/{model}/analysis/table_interventions.md",
        interventions_tex="results/{corpus}/{model}/analysis/table_interventions.tex",
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
    script:
        "../workflow_scripts/analyse_predictions.py"
