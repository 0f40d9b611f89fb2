import pandas as pd

from cuealign.cache import AnswerStore
from cuealign.models.inference import check_device_memory, predict_shard
from cuealign.models.loader import load_backend
from cuealign.models.numerics import setup_numerics
from cuealign.runlog import log_to
from cuealign.workflow.config import model_entries

with log_to(snakemake.log[0]):
    spec = snakemake.params.spec
    # before any tensor operation: portable numerics choose PyTorch's kernels for the whole process
    setup_numerics(spec["numerics"], spec["device"], threads=snakemake.threads)
    manifest = pd.read_parquet(snakemake.input.manifest)
    labels = sorted(manifest.loc[manifest["status"] == "ok", "label"].unique())
    # prefix_batch is read here, not a param: changing it reruns no inference job. From the model's
    # entry as the workflow made it (schema defaults filled; a fine-tuned model's too)
    spec = spec | {"prefix_batch": model_entries(snakemake.config)[snakemake.wildcards.model]["prefix_batch"]}
    prompts = pd.read_parquet(snakemake.input.prompts)
    backend = load_backend(spec)
    # on a GPU: the longest clip's forward must fit beside the weights, said before any utterance
    durations = dict(zip(manifest["utt_id"], manifest["duration_s"], strict=True))
    check_device_memory(backend, spec, prompts, durations, model=snakemake.wildcards.model)
    predictions = predict_shard(
        prompts,
        backend,
        labels=labels,
        spec=spec,
        # one answer file per inference job (corpus, model, shard); every job reads them all
        cache=AnswerStore(
            snakemake.params.cache_dir,
            "predictions",
            writer="-".join(snakemake.wildcards[w] for w in ("corpus", "model", "shard")),
        ),
    )
    predictions.to_parquet(snakemake.output.predictions, index=False)
