"""The device-memory estimate of a score step: the bytes per token of the real configurations at
full size against their published values, and the check that stops a shard before it runs out."""

import pandas as pd
import pytest
import torch
from transformers import Qwen2AudioConfig

from cuealign.models import memory

GIB = 2**30


def qwen2_audio_7b() -> Qwen2AudioConfig:
    """Qwen/Qwen2-Audio-7B-Instruct's language model at full size (config.json as released: a
    Qwen-7B, no grouped key-value heads)."""
    return Qwen2AudioConfig(
        text_config={
            "model_type": "qwen2",
            "hidden_size": 4096,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "intermediate_size": 11008,
            "vocab_size": 156032,
        }
    )


def qwen25_7b_text() -> Qwen2AudioConfig:
    """The Qwen2.5-7B language model of Qwen2.5-Omni-7B and Audio Flamingo 3 (4 key-value heads)."""
    return Qwen2AudioConfig(
        text_config={
            "model_type": "qwen2",
            "hidden_size": 3584,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "intermediate_size": 18944,
            "vocab_size": 152064,
        }
    )


def test_bytes_per_token_of_the_released_language_models():
    assert memory.kv_bytes_per_token(qwen2_audio_7b(), 2) == 512 * 1024  # 2 x 32 x 32 x 128 x 2
    assert memory.kv_bytes_per_token(qwen25_7b_text(), 2) == 56 * 1024  # 2 x 28 x 4 x 128 x 2
    # the processors count the valid frames (tests/unit/test_real_size.py checks these against them)
    assert memory.audio_tokens("qwen2-audio", 2) == 50 and memory.audio_tokens("qwen2-audio", 30) == 750
    assert memory.audio_tokens("qwen2-audio", 45) == 750  # its 30 s window
    assert (
        memory.audio_tokens("audio-flamingo-3", 600) == 20 * 750
        and memory.audio_tokens("audio-flamingo-3", 31) == 750 + 25
    )
    assert memory.audio_tokens("qwen2.5-omni", 30) == 750 and memory.audio_tokens("qwen2.5-omni", 300) == 7500


def test_the_estimate_covers_the_measured_peak():
    """Measured (issue 30): 26 conditions of a 30 s clip through Qwen2-Audio-7B in bfloat16 peaked
    near 41 GiB with ~15.5 GiB of weights: ~25.5 GiB beyond them. The estimate is not below that,
    and not far above it."""
    step = dict(family="qwen2-audio", seconds=30, rows=26, dtype_bytes=2, several_token_labels=True)
    need = memory.step_bytes(qwen2_audio_7b(), **step) / GIB
    assert 25.5 <= need <= 1.25 * 25.5


def test_a_step_that_will_not_fit_names_the_batch_size_that_does():
    config = qwen2_audio_7b()
    step = dict(family="qwen2-audio", seconds=30, rows=26, dtype_bytes=2, several_token_labels=True)
    free = 24 * GIB  # a 40 GB card beside 15.5 GiB of bfloat16 weights
    with pytest.raises(RuntimeError) as error:
        memory.check_step_fits(config, free=free, device="cuda:0", model="qwen", **step)
    fit = memory.rows_that_fit(config, free, **step)
    assert 1 <= fit < 26 and memory.step_bytes(config, **(step | {"rows": fit})) <= free
    assert memory.step_bytes(config, **(step | {"rows": fit + 1})) > free
    assert f"set models.qwen.batch_size to {fit}" in str(error.value) and "512 KiB" in str(error.value)
    memory.check_step_fits(config, free=80 * GIB, device="cuda:0", model="qwen", **step)  # fits: no error
    with pytest.raises(RuntimeError, match="even one prompt does not fit"):
        memory.check_step_fits(config, free=GIB // 2, device="cuda:0", model="qwen", **step)


def test_the_inference_job_checks_before_the_first_utterance(tiny_qwen2_audio, monkeypatch):
    """The wiring: a backend on a CUDA device (faked: the check reads only the device's type and
    free memory) with too little free memory stops with the estimate; on the CPU nothing is checked."""
    from cuealign.models.inference import check_device_memory
    from cuealign.models.loader import load_backend
    from cuealign.workflow.config import model_entry

    spec = model_entry(tiny_qwen2_audio, dtype="float32")
    backend = load_backend(spec)
    prompts = pd.DataFrame(
        {"utt_id": ["a"] * 3 + ["b"] * 3, "variant": "main", "label": ["angry", "sad", "angry", "sad", "sad", "sad"]}
    )
    durations = {"a": 2.0, "b": 7.5}
    check_device_memory(backend, spec, prompts, durations, model="tiny")  # CPU: nothing to check
    backend.device = torch.device("cuda:0")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1024, 80 * GIB))
    with pytest.raises(RuntimeError, match=r"models.tiny: a forward of 3 prompts after a 8 s clip .* 0.0 GiB free"):
        check_device_memory(backend, spec, prompts, durations, model="tiny")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (80 * GIB, 80 * GIB))
    check_device_memory(backend, spec, prompts, durations, model="tiny")
