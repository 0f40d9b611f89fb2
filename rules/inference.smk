rule run_inference:
    input:
        prompts="results/{corpus}/prompts/{shard}.parquet",
        manifest="results/{corpus}/manifest.parquet",
        model=get_run_inference_model,
    output:
        predictions="results/{corpus}/{model}/predictions/{shard}.parquet",
    log:
        "logs/{corpus}/{model}/run_inference/{shard}.log",
    benchmark:
        "results/{corpus}/benchmarks/{model}/run_inference/{shard}.tsv"
    conda:
        "../envs/cuealign.yaml"
    threads: get_run_inference_threads
    resources:
        mem_mb=get_run_inference_mem_mb,
        gpu=get_run_inference_resources_gpu,
    params:
        spec=get_run_inference_spec,
        # changes when the model does (a new hub snapshot, weights replaced): inference reruns
        model_state=get_run_inference_model_state,
        cache_dir=config["cache_dir"],
    script:
        "../workflow_scripts/run_inference.py"
