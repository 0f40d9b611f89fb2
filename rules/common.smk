import functools
import hashlib
import os
import re
import sys

from cuealign.workflow import resources
from cuealign.workflow.checks import corpus_setting, token_options, unprobed_note
from cuealign.workflow.config import FINETUNED_MODEL_DIR, model_entries
from cuealign.corpora import annotation_files, read_corpus
from cuealign.workflow.folds import FOLD_OF, FOLD_SESSION
from cuealign.models.numerics import job_threads
from cuealign.models.registry import finetune_dtype
from cuealign.prompts import prompt_variants
from cuealign.analysis.provenance import config_hash
from cuealign.models.identity import model_fingerprint
from cuealign.corpora.synthetic import synthetic_size

# Every model to probe: config models plus the ones the finetune rule trains.
MODELS = model_entries(config)


wildcard_constraints:
    corpus="|".join(re.escape(name) for name in config["corpora"]),
    shard=r"\d+",
    model="|".join(re.escape(name) for name in MODELS) or "(?!)",


onstart:
    # a corpus with tokens and prompts but no model gets no results: say so where the user looks
    if note := unprobed_note(config):
        print(note, file=sys.stderr)


SYNTHETIC_ROOT = "resources/synthetic/{corpus}"


def corpus_spec(corpus):
    """How to read a corpus: its config entry less the token options (so that changing those
    does not rebuild the manifest); a synthetic corpus' root is where it is generated.
    """
    workflow_keys = ("tokens", "evaluate_split", "folds", FOLD_OF, FOLD_SESSION)
    spec = {
        k: v for k, v in config["corpora"][corpus].items() if k not in workflow_keys
    }
    if spec["type"] == "synthetic":
        spec["root"] = SYNTHETIC_ROOT.format(corpus=corpus)
    return spec


def get_build_manifest_annotations(wildcards):
    """The label files a manifest is built from, so that editing one rebuilds it; a fold's
    manifest is its corpus' manifest with the split redrawn."""
    if parent := config["corpora"][wildcards.corpus].get(FOLD_OF):
        return [f"results/{parent}/manifest.parquet"]
    spec = corpus_spec(wildcards.corpus)
    if spec["type"] == "synthetic":
        return [f"{spec['root']}/ground_truth.csv"]
    return [str(path) for path in annotation_files(spec)]


def get_build_manifest_audio(wildcards):
    """The corpus' audio files that exist, so that a file fixed, replaced or added rebuilds the
    manifest (the audio-check cache re-reads only the changed ones; a missing file is a status in
    the manifest, not a missing input). A synthetic corpus' audio is this workflow's own output.
    """
    return list(_existing_audio(wildcards.corpus))


@functools.cache
def _existing_audio(corpus):
    """Read once per corpus and parse (the files and their state come from one reading)."""
    if FOLD_OF in config["corpora"][corpus]:
        return ()
    spec = corpus_spec(corpus)
    if spec["type"] == "synthetic":
        return ()
    return tuple(path for path in _corpus_table(corpus)["path"] if os.path.isfile(path))


def get_build_manifest_audio_state(wildcards):
    """A digest of the audio files' sizes, inodes and change times: a file replaced with its size
    and modification time kept (cp -p, rsync -a) is older than the manifest, yet changes this.
    """
    digest = hashlib.sha256()
    for path in get_build_manifest_audio(wildcards):
        stat = os.stat(path)
        digest.update(
            f"{path}:{stat.st_size}:{stat.st_ino}:{stat.st_ctime_ns}\n".encode()
        )
    return digest.hexdigest()[:16]


def get_synthesize_corpus_options(wildcards):
    """The generator's options only."""
    spec = config["corpora"][wildcards.corpus]
    return {k: v for k, v in spec.items() if k not in ("type", "tokens")}


def get_all_targets():
    results = [
        f"results/{corpus}/{model}/{target}"
        for corpus, model in model_runs()
        for target in ("analysis/table_main.md", "figures/confusion.png")
    ]
    if results:
        results += ["results/models_table.md", LANDING]
    results.append("results/config.html")
    # a corpus with folds is read once (its manifest) and studied through its folds
    studied = [corpus for corpus in config["corpora"] if corpus not in FOLDS]
    return (
        results
        + get_finetune_targets()
        + expand("results/{corpus}/manifest.parquet", corpus=list(FOLDS))
        + expand(
            [
                "results/{corpus}/manifest.parquet",
                "results/{corpus}/tokens.parquet",
                "results/{corpus}/tokens/token_distributions.png",
            ],
            corpus=studied,
        )
        # every shard's prompts (one job each), also for a corpus no model runs on
        + [
            f"results/{corpus}/prompts/{shard}.parquet"
            for corpus in studied
            for shard in shard_ids(corpus)
        ]
    )


def shard_ids(corpus):
    return list(range(shard_count(corpus)))


@functools.cache
def shard_count(corpus):
    """config: shards, or with shards: auto (the default) a count from the corpus' size: one
    shard per resources.UTTERANCES_PER_SHARD utterances, at least 2. A fold has its corpus'.
    """
    if config["shards"] != "auto":
        return config["shards"]
    return resources.auto_shards(corpus_size(corpus), gpus=run_gpus())


@functools.cache
def run_gpus():
    """The GPUs this run may use at once (--resources gpu=N) where a model computes on a GPU, else
    0: shards: auto then gives every GPU an inference job."""
    if all(spec["device"] == "cpu" for spec in MODELS.values()):
        return 0
    value = getattr(workflow.resource_settings.resources.get("gpu"), "value", None)
    return int(value) if isinstance(value, (int, float)) else 0


@functools.cache
def corpus_size(corpus):
    """Utterances a corpus lists, known when the DAG is built (a synthetic corpus' from its
    options, before it is generated)."""
    if parent := config["corpora"][corpus].get(FOLD_OF):
        return corpus_size(parent)
    spec = corpus_spec(corpus)
    if spec["type"] == "synthetic":
        return synthetic_size(spec)
    return len(_corpus_table(corpus))


@functools.cache
def _corpus_table(corpus):
    """A non-synthetic corpus' table, read once per DAG build."""
    return read_corpus(corpus_spec(corpus)).table


def get_bin_tokens_lld(wildcards):
    return expand(
        "results/{corpus}/lld/{shard}.parquet",
        corpus=wildcards.corpus,
        shard=shard_ids(wildcards.corpus),
    )


def get_bin_tokens_options(wildcards):
    """The top-level tokens block with the corpus' own overrides on top."""
    return token_options(config, wildcards.corpus)


def model_runs():
    """(corpus, model) pairs to analyse: a corpus with folds is analysed pooled, its folds are not
    analysed on their own."""
    return [
        (corpus, model)
        for model, spec in MODELS.items()
        for corpus in (
            spec.get("corpora")
            or [c for c in config["corpora"] if FOLD_OF not in config["corpora"][c]]
        )
    ]


def analysed_corpora(corpus):
    """The corpora whose predictions the analysis of ``corpus`` reads: its folds, or itself."""
    return FOLDS.get(corpus, [corpus])


def _evaluated(corpus, manifests):
    """Evaluated utterances over a corpus' manifests (its folds'), None before they exist."""
    counts = [
        resources.evaluated_utterances(
            path, corpus_setting(config, fold, "evaluate_split")
        )
        for fold, path in zip(analysed_corpora(corpus), manifests)
    ]
    return None if None in counts else sum(counts)


def _size(corpus, manifests):
    wordings = len(prompt_variants(config["prompt"]))
    conditions = resources.condition_count(config["conditions"])
    return _evaluated(corpus, manifests), conditions, wordings


def get_build_prompts_mem_mb(wildcards, input):
    evaluated = resources.evaluated_utterances(
        input.manifest, corpus_setting(config, wildcards.corpus, "evaluate_split")
    )
    _, conditions, wordings = _size(wildcards.corpus, [])
    return resources.build_prompts_mem_mb(
        evaluated, shard_count(wildcards.corpus), conditions, wordings
    )


def get_analysis_mem_mb(wildcards, input):
    evaluated, conditions, wordings = _size(wildcards.corpus, input.manifest)
    options = config["analysis"]
    return resources.analysis_mem_mb(
        evaluated,
        shard_count(wildcards.corpus),
        conditions,
        wordings,
        resamples=options["resamples"],
        method=options["ci_method"],
    )


def get_analysis_runtime(wildcards, input):
    return resources.analysis_runtime_min(*_size(wildcards.corpus, input.manifest))


def get_extract_lld_runtime(wildcards, input, threads):
    return resources.lld_runtime_min(
        input.manifest, int(wildcards.shard), shard_count(wildcards.corpus), threads
    )


def get_analysis_inputs(pattern):
    """An input function: ``pattern`` for every corpus the analysis pools (and every shard)."""

    def inputs(wildcards):
        return [
            path
            for corpus in analysed_corpora(wildcards.corpus)
            for path in expand(
                pattern, shard=shard_ids(corpus), corpus=corpus, model=wildcards.model
            )
        ]

    return inputs


def model_spec(model, corpus):
    """A model's entry as a job on ``corpus`` uses it: a fine-tuned model is the one trained on
    that corpus (each fold trains its own)."""
    spec = dict(MODELS[model])
    if model in config["finetune"]:
        folder = FINETUNED_MODEL_DIR.format(corpus=corpus, model=model)
        spec["adapter" if spec.get("adapter") else "path"] = folder
    return spec


def get_run_inference_spec(wildcards):
    """The model's entry as an inference job uses it, less prefix_batch: how a job
    batches its work is not what it computes, so changing it reruns no job."""
    spec = model_spec(wildcards.model, wildcards.corpus)
    spec.pop("prefix_batch", None)
    return spec


def get_run_inference_mem_mb(wildcards):
    """The model's weights as loaded, and the runtime (resources.model_mem_mb); a fine-tuned
    model from its base (its own folder is made later)."""
    spec = MODELS[wildcards.model]
    path = spec["path"]
    if wildcards.model in config["finetune"]:
        path = config["finetune"][wildcards.model]["base"] or path
    return resources.model_mem_mb(
        path, spec["dtype"], spec["device"], spec.get("revision")
    )


def get_finetune_mem_mb(wildcards):
    spec = config["finetune"][wildcards.model]
    if not spec["base"]:  # built from config: architecture (small)
        return resources.MODEL_MEM_MB
    return resources.model_mem_mb(
        spec["base"], finetune_dtype(spec), spec["device"], train=spec["method"]
    )


def get_run_inference_resources_gpu(wildcards):
    spec = MODELS[wildcards.model]
    return 0 if spec["device"] == "cpu" else spec["gpus"]


def get_run_inference_model(wildcards):
    """A fine-tuned model's folder (so that inference waits for, and reruns after, training)."""
    if wildcards.model in config["finetune"]:
        return FINETUNED_MODEL_DIR.format(**wildcards)
    return []


def get_run_inference_model_state(wildcards):
    """A cheap sign of the model's state (file names, sizes and times, or the hub snapshot the
    local cache resolves to); a fine-tuned model is an input of the job instead."""
    if wildcards.model in config["finetune"]:
        return "trained by this workflow"
    spec = model_spec(wildcards.model, wildcards.corpus)
    state = model_fingerprint(spec["path"], spec.get("revision"))
    if spec.get("adapter"):
        state += f"+{model_fingerprint(spec['adapter'])}"
    return state


def get_run_inference_threads(wildcards):
    spec = MODELS[wildcards.model]
    return job_threads(spec["numerics"], spec["device"], native=2)


def get_finetune_threads(wildcards):
    spec = config["finetune"][wildcards.model]
    return job_threads(spec["numerics"], spec["device"], native=2)


def get_finetune_resources_gpu(wildcards):
    return 0 if config["finetune"][wildcards.model]["device"] == "cpu" else 1


def get_finetune_targets():
    return [
        f"results/{corpus}/{name}/finetune/loss_curve.png"
        for name, spec in config["finetune"].items()
        for corpus in analysed_corpora(spec["corpus"])
    ]


def get_shards(pattern):
    """An input function: ``pattern`` for every shard of the job's corpus (and model)."""

    def inputs(wildcards):
        return expand(pattern, shard=shard_ids(wildcards.corpus), **wildcards)

    return inputs


def get_collect_main_tables_input(wildcards):
    return [
        f"results/{corpus}/{model}/analysis/table_main.csv"
        for corpus, model in model_runs()
    ]
