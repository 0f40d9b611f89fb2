rule plot_results:
    input:
        manifest="results/{corpus}/manifest.parquet",
        uar="results/{corpus}/{model}/analysis/uar.csv",
        confusion="results/{corpus}/{model}/analysis/confusion.csv",
        spearman="results/{corpus}/{model}/analysis/spearman.json",
        variants="results/{corpus}/{model}/analysis/variants.csv",
    output:
        confusion_png=report(
            "results/{corpus}/{model}/figures/confusion.png",
            caption="../report/confusion.rst",
            category="2. Figures",
            subcategory="{corpus} / {model}",
            labels={"figure": "1 confusion matrices"},
        ),
        confusion_svg="results/{corpus}/{model}/figures/confusion.svg",
        curve_png=report(
            "results/{corpus}/{model}/figures/corruption_curve.png",
            caption="../report/corruption_curve.rst",
            category="2. Figures",
            subcategory="{corpus} / {model}",
            labels={"figure": "2 corruption curve"},
        ),
        curve_svg="results/{corpus}/{model}/figures/corruption_curve.svg",
        variants_png=report(
            "results/{corpus}/{model}/figures/variants.png",
            caption="../report/variants_figure.rst",
            category="2. Figures",
            subcategory="{corpus} / {model}",
            labels={"figure": "3 across prompt wordings"},
        ),
        variants_svg="results/{corpus}/{model}/figures/variants.svg",
    log:
        "logs/{corpus}/{model}/plot_results.log",
    conda:
        "../envs/cuealign.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        title=lambda wildcards: f"{wildcards.model} on {wildcards.corpus}",
    script:
        "../workflow_scripts/plot_results.py"


rule write_config_page:
    output:
        page=report(
            "results/config.html",
            caption="../report/config.rst",
            category="5. Configuration",
            labels={"page": "configuration"},
        ),
    log:
        "logs/write_config_page.log",
    conda:
        "../envs/cuealign.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        config_hash=config_hash(config),  # reruns on any change; the page is made from snakemake.config
    script:
        "../workflow_scripts/write_config_page.py"


rule landing_page:
    input:
        text="report/workflow.rst",
        mains=lambda wildcards: [
            f"results/{corpus}/{model}/analysis/table_main.csv"
            for corpus, model in model_runs()
        ],
    output:
        page="results/report_landing.rst",
    log:
        "logs/landing_page.log",
    conda:
        "../envs/cuealign.yaml"
    threads: 1
    resources:
        mem_mb=500,
    script:
        "../workflow_scripts/landing_page.py"
