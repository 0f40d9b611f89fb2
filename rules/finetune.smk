rule finetune:
    input:
        manifest="results/{corpus}/manifest.parquet",
        tokens="results/{corpus}/tokens.parquet",
        meta="results/{corpus}/tokens_meta.json",
    output:
        model=directory(FINETUNED_MODEL_DIR),
        history="results/{corpus}/{model}/finetune/training_log.csv",
        curve=report(
            "results/{corpus}/{model}/finetune/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="4. Fine-tuning",
            subcategory="{corpus} / {model}",
            labels={"figure": "training loss"},
        ),
    log:
        "logs/{corpus}/{model}/finetune.log",
    benchmark:
        "results/{corpus}/benchmarks/{model}/finetune.tsv"
    wildcard_constraints:
        model="|".join(re.escape(name) for name in config["finetune"]) or "(?!)",
    conda:
        "../envs/cuealign.yaml"
    threads: get_finetune_threads
    resources:
        mem_mb=get_finetune_mem_mb,
        gpu=get_finetune_resources_gpu,
    params:
        spec=lambda wildcards: config["finetune"][wildcards.model],
        # trained on the main wording: adding a prompt variant does not retrain
        prompt={k: v for k, v in config["prompt"].items() if k != "variants"},
    script:
        "../workflow_scripts/finetune.py"
