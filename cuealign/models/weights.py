"""What the transformers-based backends share when they load weights: dtypes and load errors."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# auto: the checkpoint's own dtype (config.json's dtype / torch_dtype; bfloat16 for the released
# ALMs), loaded as such: no float32 copy of a bfloat16 checkpoint in host memory
DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def loaded_dtype(model, asked: str, device: torch.device) -> str:
    """The dtype the weights were loaded in (what ``asked`` resolved to); float32 on a GPU asked for
    explicitly is allowed, with a warning (twice the memory and far slower than bfloat16)."""
    dtype = str(model.dtype).removeprefix("torch.")
    if dtype == "float32" and device.type != "cpu":
        log.warning(
            "dtype %s: float32 weights on %s take twice the memory of bfloat16 and run far slower; set "
            "dtype: auto (the checkpoint's own, bfloat16 for the released models) unless float32 is wanted",
            asked,
            device,
        )
    return dtype


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
