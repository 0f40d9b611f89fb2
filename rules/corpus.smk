rule synthesize_corpus:
    output:
        audio=directory(f"{SYNTHETIC_ROOT}/wav"),
        truth=f"{SYNTHETIC_ROOT}/ground_truth.csv",
    log:
        "logs/{corpus}/synthesize_corpus.log",
    benchmark:
        "results/{corpus}/benchmarks/synthesize_corpus.tsv"
    conda:
        "../envs/cuealign.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        options=get_synthesize_corpus_options,
    script:
        "../workflow_scripts/synthesize_corpus.py"


rule build_manifest:
    input:
        annotations=get_build_manifest_annotations,
        audio=get_build_manifest_audio,
    output:
        manifest="results/{corpus}/manifest.parquet",
        bad_files="results/{corpus}/bad_files.csv",
        dropped="results/{corpus}/dropped_labels.json",
    log:
        "logs/{corpus}/build_manifest.log",
    benchmark:
        "results/{corpus}/benchmarks/build_manifest.tsv"
    conda:
        "../envs/cuealign.yaml"
    threads: 2
    resources:
        mem_mb=2000,
    params:
        corpus=lambda wildcards: corpus_spec(wildcards.corpus),
        checks=config["audio_checks"],
        leakage=config["leakage"],
        evaluated=lambda wildcards: corpus_setting(
            config, wildcards.corpus, "evaluate_split"
        ),
        cache_dir=config["cache_dir"],
        audio_state=get_build_manifest_audio_state,
        fold_session=lambda wildcards: config["corpora"][wildcards.corpus].get(
            FOLD_SESSION
        ),
    script:
        "../workflow_scripts/build_manifest.py"
