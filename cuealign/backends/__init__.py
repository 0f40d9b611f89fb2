"""Inference backends: a shard of prompts in, a shard of predictions out.

A model family is a registry entry (cuealign.backends.registry), not a new code path: the
transformers backend reads the entry for the model class, the processor's audio keyword, the
audio window and the name of the feature mask.
"""

from cuealign.backends.registry import FAMILIES, Family, family
from cuealign.backends.transformers_alm import TransformersALM, load_backend

__all__ = ["FAMILIES", "Family", "family", "TransformersALM", "load_backend"]
