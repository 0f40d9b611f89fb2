"""What the transformers-based backends share when they load weights: dtypes and load errors."""

from __future__ import annotations

from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_error(path: str, allow_pickle: bool, exc: OSError) -> FileNotFoundError:
    """What from_pretrained's OSError means for a user, and the fix."""
    if Path(path).is_dir():
        hint = "" if allow_pickle else " (weights are loaded from safetensors only unless allow_pickle: true)"
        return FileNotFoundError(f"model folder {path!r} holds no weights this model can load{hint}: {exc}")
    return FileNotFoundError(
        f"model {path!r}: not a local model folder and not in the local Hugging Face cache "
        f"(nothing is downloaded at run time; fetch it once with `hf download {path}`): {exc}"
    )


def damaged_weights(path: str, exc: Exception) -> ValueError:
    """A safetensors file that does not parse (cut off by an interrupted copy or download)."""
    return ValueError(
        f"model {path!r}: a weights file is damaged ({exc}), most often cut off by an interrupted copy or "
        f"download; copy or download it again (a hub model: `hf download {path}` with its revision)"
    )
