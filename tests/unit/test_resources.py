"""Job resources follow the data: the memory and runtime the rules ask for grow with the corpus,
and cover what benchmarks/scale.py measured."""

import pandas as pd
import pytest

from cuealign.workflow import resources
from cuealign.workflow.config import validate_config


def test_condition_count_is_the_configs():
    from cuealign.interventions import conditions_from_config

    spec = validate_config({"corpora": {"d": {"type": "synthetic"}}})["conditions"]
    concepts = ["ENERGY", "PITCH", "BRIGHTNESS", "DYNAMICS", "FORMANTS", "VOICE_QUALITY"]
    for changes in ({}, {"swap": concepts, "tokens_only": True}, {"conflict": False, "corrupt_p": [0.5]}):
        assert resources.condition_count(spec | changes) == len(conditions_from_config(spec | changes, concepts))


def test_memory_covers_what_the_benchmark_measured_and_grows_with_the_study():
    # benchmarks/scale.py (benchmarks/README.md): one prompts shard of 30,000 x 33 in 8 shards peaked
    # at 523 MB, the analysis of 30,000 x 33 (B = 10,000) at 521-529 MB
    assert resources.build_prompts_mem_mb(30_000, 8, 33, 1) >= 1.5 * 523
    assert resources.analysis_mem_mb(30_000, 8, 33, 1, resamples=10_000, method="jackknife-t") >= 1.5 * 529
    small = resources.build_prompts_mem_mb(1_241, 2, 26, 1)
    assert small == resources.MIN_MEM_MB < resources.build_prompts_mem_mb(100_000, 2, 33, 3)
    assert resources.build_prompts_mem_mb(100_000, 40, 33, 1) < resources.build_prompts_mem_mb(100_000, 4, 33, 1)
    plain = resources.analysis_mem_mb(100_000, 8, 33, 1, resamples=10_000, method="jackknife-t")
    assert resources.analysis_mem_mb(100_000, 8, 33, 1, resamples=10_000, method="studentized") > plain
    assert resources.build_prompts_mem_mb(None, 2, 33, 1) == resources.MIN_MEM_MB  # no manifest yet


def test_lld_runtime_follows_the_hours_of_audio_in_the_shard(tmp_path):
    path = tmp_path / "manifest.parquet"
    hours = 1000
    n = 400_000
    pd.DataFrame({"status": ["ok"] * n, "duration_s": [hours * 3600 / n] * n}).to_parquet(path)
    minutes = resources.lld_runtime_min(path, 0, 2, 2)
    # half the corpus on 2 cores at 0.04 s per second of audio: 500 h x 0.04 / 2 = 10 h, with margin
    assert 600 <= minutes <= 2 * 600 + 1
    assert resources.lld_runtime_min(path, 0, 40, 2) < minutes / 10
    assert resources.lld_runtime_min(tmp_path / "absent.parquet", 0, 2, 2) == 60


def test_evaluated_utterances_from_the_manifest(tmp_path):
    path = tmp_path / "manifest.parquet"
    pd.DataFrame({"split": ["test", "test", "train", "test"], "status": ["ok", "silent", "ok", "ok"]}).to_parquet(path)
    assert resources.evaluated_utterances(path, "test") == 2
    assert resources.evaluated_utterances(path, "all") == 3
    assert resources.evaluated_utterances(tmp_path / "none.parquet", "test") is None


def test_auto_shards_keep_each_shard_under_its_utterances():
    assert resources.auto_shards(384) == resources.MIN_SHARDS == 2  # the demo
    assert resources.auto_shards(5_531) == 2  # IEMOCAP
    assert resources.auto_shards(18_216) == 4  # FAU-Aibo
    assert resources.auto_shards(300_000) == 60
    # a GPU each (--resources gpu=N with a GPU model), each shard keeping 100 utterances
    assert resources.auto_shards(5_531, gpus=4) == 4 and resources.auto_shards(5_531, gpus=80) == 55
    assert resources.auto_shards(384, gpus=8) == 3 and resources.auto_shards(300_000, gpus=8) == 60
    for n in (1, 4_999, 5_001, 123_456):
        assert n / resources.auto_shards(n) <= resources.UTTERANCES_PER_SHARD


def _weights_folder(folder, dtype, sizes_gib):
    """A model folder whose weights files have the given sizes (sparse: no disk used)."""
    import json

    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_audio", "dtype": dtype}))
    for k, size in enumerate(sizes_gib):
        with open(folder / f"model-{k:05d}.safetensors", "wb") as handle:
            handle.truncate(int(size * 2**30))
    return folder


def test_a_model_job_asks_for_the_memory_its_weights_take(tmp_path):
    from cuealign.workflow.resources import MODEL_MEM_MB, RUNTIME_MB, model_mem_mb

    # a 7B model released in bfloat16: ~15 GiB in four files, the largest 4 GiB
    seven = str(_weights_folder(tmp_path / "seven", "bfloat16", [4, 4, 4, 3.2]))
    as_stored = 1.25 * 15.2 * 1024 + RUNTIME_MB
    assert model_mem_mb(seven, "auto", "cpu") == pytest.approx(as_stored, abs=1)
    assert model_mem_mb(seven, "bfloat16", "cpu") == model_mem_mb(seven, "auto", "cpu")
    # float32 on the host doubles the weights: the ~31 GB copy the issue measured, not 8,000 MB
    assert model_mem_mb(seven, "float32", "cpu") == pytest.approx(1.25 * 30.4 * 1024 + RUNTIME_MB, abs=1)
    # on a GPU the host holds one weights file at a time while loading
    assert model_mem_mb(seven, "auto", "cuda") == pytest.approx(1.25 * 4 * 1024 + RUNTIME_MB, abs=1)
    # full fine-tuning on CPU in float32: weights, gradients and Adam's two float32 moments
    params = 15.2 * 2**30 / 2
    full = 1.25 * (30.4 * 2**30 + params * (4 + 8)) / 2**20 + RUNTIME_MB
    assert model_mem_mb(seven, "float32", "cpu", train="full") == pytest.approx(full, abs=1)
    assert model_mem_mb(seven, "auto", "cpu", train="lora") == model_mem_mb(seven, "auto", "cpu")
    # small models keep the floor; a model not on disk yet (trained by the workflow) too
    tiny = str(_weights_folder(tmp_path / "tiny", "float32", [0.001]))
    assert model_mem_mb(tiny, "auto", "cpu") == MODEL_MEM_MB
    assert model_mem_mb(str(tmp_path / "not-yet"), "auto", "cpu") == MODEL_MEM_MB
    # a relative folder the workflow will make (a fine-tuned model) is no hub id either
    assert model_mem_mb("results/demo/demo-alm/finetune/model", "auto", "cpu") == MODEL_MEM_MB
