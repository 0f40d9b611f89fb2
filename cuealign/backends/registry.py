"""Model families: what differs between audio-language models, as data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """How to drive one family through transformers."""

    name: str
    model_class: str  # transformers class loaded with from_pretrained
    sampling_rate: int = 16000
    window_s: float = 30.0  # the audio encoder's window; longer audio is truncated (with a warning)
    feature_mask: str = "feature_attention_mask"  # the processor's mask of the audio features


FAMILIES: dict[str, Family] = {
    # Qwen2-Audio encodes exactly 3000 mel frames (30 s) and silently drops the rest.
    "qwen2-audio": Family("qwen2-audio", "Qwen2AudioForConditionalGeneration"),
    # Audio Flamingo 3 windows long audio itself, up to 600 s (its processor's max_audio_len).
    "audio-flamingo-3": Family(
        "audio-flamingo-3", "AudioFlamingo3ForConditionalGeneration", window_s=600.0, feature_mask="input_features_mask"
    ),
}


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"config: model family {name!r} is not in the registry; known families: {sorted(FAMILIES)}"
        ) from None


def check_model_spec(name: str, spec: dict, corpora: list[str]) -> None:
    """Fail before any model work: unknown family, missing local model, unknown corpus."""
    from pathlib import Path

    family(spec["family"])
    where = f"config: models.{name}"
    path = spec["path"]
    if Path(path).is_dir():
        if not (Path(path) / "config.json").is_file():
            raise ValueError(f"{where}.path {path!r} holds no config.json: not a saved transformers model")
    elif path.startswith((".", "/", "~")) or Path(path).exists():
        raise ValueError(f"{where}.path {path!r} does not exist")
    else:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(path, "config.json", revision=spec.get("revision"))
        if not isinstance(found, str):
            raise ValueError(
                f"{where}.path {path!r} is neither a local folder nor in the local Hugging Face cache; "
                f"nothing is downloaded at run time: fetch it once with `hf download {path}`"
            )
    if stray := sorted(set(spec.get("corpora") or []) - set(corpora)):
        raise ValueError(f"{where}.corpora names {stray}, which are not in corpora ({sorted(corpora)})")
