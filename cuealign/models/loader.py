"""One entry point from a config entry to a loaded backend (the only module that knows them all)."""

from __future__ import annotations

from pathlib import Path

from cuealign.models.clap import ClapZeroShot
from cuealign.models.msclap import MsClapZeroShot
from cuealign.models.paraclap import ParaClapZeroShot
from cuealign.models.registry import DEFAULT_LABEL_PROMPT
from cuealign.models.registry import family as family_of
from cuealign.models.transformers_alm import TransformersALM


def load_backend(spec: dict):
    """The backend a validated config entry (config: models.<name>) describes."""
    path = spec["path"]
    if (path.startswith((".", "/")) or Path(path).exists()) and not Path(path).is_dir():
        raise FileNotFoundError(f"config: models path {path!r} does not exist (a local model folder is expected)")
    family = family_of(spec["family"])
    if family.backend == "clap":  # LAION's CLAP, ParaCLAP or msclap (local folders: no revision, no remote code)
        zero_shot = {"paraclap": ParaClapZeroShot, "msclap": MsClapZeroShot}.get(family.name, ClapZeroShot)
        return zero_shot(
            path,
            family=family,
            label_prompt=spec.get("label_prompt") or DEFAULT_LABEL_PROMPT,
            device=spec["device"],
            dtype=spec["dtype"],
            revision=spec.get("revision"),
            trust_remote_code=spec["trust_remote_code"],
            allow_pickle=spec["allow_pickle"],
        )
    return TransformersALM(
        path,
        family=family,
        device=spec["device"],
        dtype=spec["dtype"],
        revision=spec.get("revision"),
        adapter=spec.get("adapter"),
        trust_remote_code=spec["trust_remote_code"],
        allow_pickle=spec["allow_pickle"],
        system_prompt=spec.get("system_prompt"),
        label_variants=spec["label_variants"],
    )
