rule analyse_predictions:
    input:
        # one corpus, or every fold of a corpus with folds (pooled)
        manifest=get_analysis_inputs("results/{corpus}/manifest.parquet"),
        tokens=get_analysis_inputs("results/{corpus}/tokens.parquet"),
        meta=get_analysis_inputs("results/{corpus}/tokens_meta.json"),
        prompts=get_analysis_inputs("results/{corpus}/prompts/{shard}.parquet"),
        predictions=get_analysis_inputs(
            "results/{corpus}/{model}/predictions/{shard}.parquet"
        ),
        dropped=get_analysis_inputs("results/{corpus}/dropped_labels.json"),
    output:
        uar="results/{corpus}/{model}/analysis/uar.csv",
        comparisons="results/{corpus}/{model}/analysis/comparisons.csv",
        curve="results/{corpus}/{model}/analysis/corruption_curve.csv",
        spearman="results/{corpus}/{model}/analysis/spearman.json",
        intervals="results/{corpus}/{model}/analysis/intervals.json",
        confusion="results/{corpus}/{model}/analysis/confusion.csv",
        shifts="results/{corpus}/{model}/analysis/shifts.csv",
        cue_following="results/{corpus}/{model}/analysis/cue_following.csv",
        main_csv="results/{corpus}/{model}/analysis/table_main.csv",
        main_md="results/{corpus}/{model}/analysis/table_main.md",
        main_tex="results/{corpus}/{model}/analysis/table_main.tex",
        interventions_md="results/{corpus}/{model}/analysis/table_interventions.md",
        interventions_tex="results/{corpus}/{model}/analysis/table_interventions.tex",
        accounting="results/{corpus}/{model}/analysis/accounting.csv",
        variants="results/{corpus}/{model}/analysis/variants.csv",
        variants_summary="results/{corpus}/{model}/analysis/variants_summary.csv",
        run="results/{corpus}/{model}/RUN.json",
        card="results/{corpus}/{model}/analysis/protocol_card.json",
        card_html=report(
            "results/{corpus}/{model}/analysis/protocol_card.html",
            caption="../report/protocol_card.rst",
            category="1. Results",
            subcategory="{corpus} / {model}",
            labels={"table": "0 protocol card"},
        ),
        # the same tables as pages the report shows inline (CSV and Markdown only download there)
        main_html=report(
            "results/{corpus}/{model}/analysis/table_main.html",
            caption="../report/table_main.rst",
            category="1. Results",
            subcategory="{corpus} / {model}",
            labels={"table": "1 UAR without and with tokens"},
        ),
        interventions_html=report(
            "results/{corpus}/{model}/analysis/table_interventions.html",
            caption="../report/uar.rst",
            category="1. Results",
            subcategory="{corpus} / {model}",
            labels={"table": "2 every condition"},
        ),
        comparisons_html=report(
            "results/{corpus}/{model}/analysis/comparisons.html",
            caption="../report/comparisons.rst",
            category="1. Results",
            subcategory="{corpus} / {model}",
            labels={"table": "3 paired comparisons"},
        ),
        cue_following_html=report(
            "results/{corpus}/{model}/analysis/cue_following.html",
            caption="../report/cue_following.rst",
            category="1. Results",
            subcategory="{corpus} / {model}",
            labels={"table": "4 cue following"},
        ),
        accounting_html=report(
            "results/{corpus}/{model}/analysis/accounting.html",
            caption="../report/accounting.rst",
            category="1. Results",
            subcategory="{corpus} / {model}",
            labels={"table": "5 accounting"},
        ),
        variants_html=report(
            "results/{corpus}/{model}/analysis/variants.html",
            caption="../report/variants.rst",
            category="1. Results",
            subcategory="{corpus} / {model}",
            labels={"table": "6 across prompt wordings"},
        ),
    log:
        "logs/{corpus}/{model}/analyse_predictions.log",
    benchmark:
        "results/{corpus}/benchmarks/{model}/analyse_predictions.tsv"
    conda:
        "../envs/cuealign.yaml"
    threads: 1
    resources:
        mem_mb=get_analysis_mem_mb,
        runtime=get_analysis_runtime,
    params:
        options=config["analysis"],
        # the whole config is provenance (its hash and seeds go into every table and RUN.json): any
        # change reruns the analysis; the job reads it from snakemake.config, and the reason shows
        # this hash changing, not the whole config twice
        config_hash=config_hash(config),
        corpus_spec=lambda wildcards: config["corpora"][wildcards.corpus],
        specs=lambda wildcards: {
            corpus: model_spec(wildcards.model, corpus)
            for corpus in analysed_corpora(wildcards.corpus)
        },
    script:
        "../workflow_scripts/analyse_predictions.py"


rule collect_main_tables:
    input:
        tables=get_collect_main_tables_input,
    output:
        csv="results/models_table.csv",
        md="results/models_table.md",
        tex="results/models_table.tex",
        html=report(
            "results/models_table.html",
            caption="../report/models_table.rst",
            category="1. Results",
            subcategory="all corpora and models",
            labels={"table": "all models (Table II/III layout)"},
        ),
    log:
        "logs/collect_main_tables.log",
    conda:
        "../envs/cuealign.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        entered=config["reference_results"],
    script:
        "../workflow_scripts/collect_main_tables.py"
