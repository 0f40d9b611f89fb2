"""The models stage: everything that runs a model (backends, inference, fine-tuning, devices,
numerics, model identity). A backend takes a shard of prompts in and gives a shard of predictions.

A model family is a registry entry (cuealign.models.registry), not a new code path: the
transformers backend reads the entry for the model class, the processor's audio keyword, the
audio window and the name of the feature mask.

This package, its registry, numerics and identity import neither torch nor transformers: the
workflow imports them when it parses the Snakefile (and every cluster job parses it again); the
backends themselves load in the jobs that run a model (cuealign.models.loader).
"""

from cuealign.models.registry import FAMILIES, Family, family

__all__ = ["FAMILIES", "Family", "family"]
