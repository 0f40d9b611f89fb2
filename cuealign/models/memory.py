"""What one scoring step holds on the device beyond the weights, estimated before the run so that
a model that will not fit says so, with the option that lowers it, instead of failing mid-shard.

Score mode runs, per utterance, forwards of ``rows`` prompts (models.<name>.batch_size, at most
the conditions of one utterance) that continue its cached prefix. Each forward materialises the
prefix's KV cache once per row (appending a suffix concatenates into new tensors), and where a
label has several tokens the label tails continue a copy of those rows' caches: so the KV held is
rows x (prefix + suffix tokens) x the bytes per token, twice with such labels, plus the suffix
positions' logits. Per token: 2 (keys, values) x layers x key-value heads x head size x bytes of
the dtype; Qwen2-Audio-7B (32 layers, 32 key-value heads of 128, no grouped heads) holds 512 KiB
per token in bfloat16, Qwen2.5-7B-based Omni and AF3 (28 layers, 4 key-value heads) 56 KiB.
Audio tokens per clip: 25 per second of the clip for all three (the processors count the valid
frames), at most 750 for Qwen2-Audio (its 30 s window), 750 per full 30 s window for AF3.
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

GIB = 2**30
TEXT_TOKENS = 160  # system turn, template, instruction and tail (the default prompt's ~100, with room)
SUFFIX_TOKENS = 80  # the cue block of six concepts (~60 with the real BPE), with room
MARGIN = 1.15  # attention scores, the allocator's fragmentation


def text_config(config):
    """The language model's config of an audio-language model's config."""
    getter = getattr(config, "get_text_config", None)
    return getter() if getter else getattr(config, "text_config", config)


def kv_bytes_per_token(config, dtype_bytes: int) -> int:
    """Bytes of keys and values one token adds to the cache, over every layer."""
    text = text_config(config)
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return 2 * text.num_hidden_layers * kv_heads * head_dim * dtype_bytes


def _tokens(frames: int) -> int:
    """Audio tokens of ``frames`` valid 10 ms frames: a stride-2 convolution, then pooling by 2."""
    return ((frames - 1) // 2 + 1 - 2) // 2 + 1


def audio_tokens(family: str, seconds: float) -> int:
    """Audio placeholder tokens of a clip of ``seconds`` (at most the model's window), as the
    processors count them from the valid frames: ~25 per second; AF3 per 30 s window (750 a full
    one), Qwen2-Audio at most 750 (its 30 s window)."""
    frames = max(1, math.ceil(seconds * 100))
    if family == "audio-flamingo-3":
        return sum(_tokens(min(3000, frames - start)) for start in range(0, frames, 3000))
    if family == "qwen2-audio":
        frames = min(frames, 3000)
    return _tokens(frames)


def step_bytes(config, *, family: str, seconds: float, rows: int, dtype_bytes: int, several_token_labels: bool) -> int:
    """Device bytes one score step holds beyond the weights (see the module's docstring)."""
    tokens = audio_tokens(family, seconds) + TEXT_TOKENS + SUFFIX_TOKENS
    kv = rows * tokens * kv_bytes_per_token(config, dtype_bytes) * (2 if several_token_labels else 1)
    logits = rows * SUFFIX_TOKENS * text_config(config).vocab_size * dtype_bytes
    return int(MARGIN * (kv + logits))


def rows_that_fit(config, free: int, **step) -> int:
    """The most prompts per forward whose step fits in ``free`` bytes (0: not even one)."""
    one = step_bytes(config, **(step | {"rows": 1}))
    return int(free // one) if one else 0


def check_step_fits(config, *, free: int, device: str, model: str, **step) -> None:
    """Raise before the first utterance where a score step will not fit the device's free memory,
    naming the estimate and the batch_size that fits; log the estimate otherwise."""
    need = step_bytes(config, **step)
    what = (
        f"a forward of {step['rows']} prompts after a {step['seconds']:.0f} s clip holds about {need / GIB:.1f} GiB "
        f"on {device} beyond the weights ({kv_bytes_per_token(config, step['dtype_bytes']) / 1024:.0f} KiB of "
        f"keys and values per token{', twice: labels of several tokens' if step['several_token_labels'] else ''})"
    )
    if need <= free:
        log.info("%s; %.1f GiB free", what, free / GIB)
        return
    fit = rows_that_fit(config, free, **step)
    way = (
        f"set models.{model}.batch_size to {fit} (prompts per forward; the answers are the same)"
        if fit >= 1
        else "even one prompt does not fit: use a GPU with more memory, device: auto with gpus: 2, or shorter clips"
    )
    raise RuntimeError(f"models.{model}: {what}, and {device} has {free / GIB:.1f} GiB free after the weights; {way}")
