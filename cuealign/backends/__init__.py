"""Inference backends: a shard of prompts in, a shard of predictions out.

A model family is a registry entry (cuealign.backends.registry), not a new code path: the
transformers backend reads the entry for the model class, the processor's audio keyword, the
audio window and the name of the feature mask.

This package imports neither torch nor transformers: the workflow imports the registry when it
parses the Snakefile (and every cluster job parses it again); the backends themselves load in
the jobs that run a model (cuealign.backends.loader).
"""

from cuealign.backends.registry import FAMILIES, Family, family

__all__ = ["FAMILIES", "Family", "family"]
