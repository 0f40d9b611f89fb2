"""CLAP zero-shot: the paper's contrastive baseline, behind the same shard-in/shard-out interface.

The audio's embedding is compared with the embedding of one text prompt per label (config:
models.<name>.label_prompt, "{label}" filled in); the scores are the log-softmax over the labels of
the model's scaled cosine similarities, the same numbers as ClapModel's own logits_per_audio. CLAP
has no token channel: the cue block cannot reach it, so every condition of an utterance gets the
same scores, except tokens_only, whose audio is silence. It answers in score mode only.

Audio longer than CLAP's 10 s window would be cropped at a random offset (rand_trunc) or as random
chunks (fusion) by its feature extractor; the runner truncates it to the window first, with a
warning recorded per row, so the scores are deterministic.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from transformers import AutoProcessor, ClapModel

from cuealign.models.devices import resolve_device
from cuealign.models.prefix import on_model
from cuealign.models.registry import Family
from cuealign.models.weights import DTYPES, load_error, loaded_dtype

log = logging.getLogger(__name__)


class ClapZeroShot:
    """A CLAP model loaded from a local path or the local Hugging Face cache."""

    def __init__(
        self,
        path: str,
        *,
        family: Family,
        label_prompt: str,
        device: str = "cpu",
        dtype: str = "auto",
        revision: str | None = None,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
    ):
        self.family = family
        self.label_prompt = label_prompt
        self.sampling_rate, self.window_s = family.sampling_rate, family.window_s
        torch_device, device_map = resolve_device(device)
        options = dict(local_files_only=True, revision=revision, trust_remote_code=trust_remote_code)
        try:
            self.processor = AutoProcessor.from_pretrained(path, **options)
            safe = {} if allow_pickle else {"use_safetensors": True}
            placement = {"device_map": device_map} if device_map else {}
            model = ClapModel.from_pretrained(path, dtype=DTYPES[dtype], **options, **placement, **safe)
        except OSError as exc:
            raise load_error(path, allow_pickle, exc) from exc
        self.model = model.eval() if device_map else model.to(torch_device).eval()
        self.device = self.model.device
        self.dtype = loaded_dtype(self.model, dtype, self.device)
        self._texts: dict[tuple[str, ...], torch.Tensor] = {}

    def _label_embeddings(self, labels: list[str]) -> torch.Tensor:
        key = tuple(labels)
        if key not in self._texts:  # the same label prompts for every utterance: embedded once
            prompts = [self.label_prompt.format(label=label) for label in labels]
            inputs = self.processor(text=prompts, return_tensors="pt", padding=True)
            with torch.inference_mode():
                embeddings = self.model.get_text_features(**{k: v.to(self.device) for k, v in inputs.items()})
            embeddings = getattr(embeddings, "pooler_output", embeddings)
            self._texts[key] = torch.nn.functional.normalize(embeddings.float(), dim=-1)
        return self._texts[key]

    def audio_inputs(self, audio: np.ndarray) -> dict:
        inputs = self.processor(audio=[audio], sampling_rate=self.sampling_rate, return_tensors="pt")
        return on_model(inputs, self.model, self.device)

    def score(
        self, audio: np.ndarray, prefix_text: str, suffixes: list[str], labels: list[str], *, batch_size: int = 32
    ) -> np.ndarray:
        """log P(label | audio) over the labels, the same for every suffix (no token channel)."""
        texts = self._label_embeddings(labels)
        with torch.inference_mode():
            embedding = self.model.get_audio_features(**self.audio_inputs(audio))
            embedding = torch.nn.functional.normalize(getattr(embedding, "pooler_output", embedding).float(), dim=-1)
            logits = self.model.logit_scale_a.exp().float() * embedding @ texts.T
            scores = torch.log_softmax(logits, dim=-1)[0].cpu().numpy()
        return np.tile(scores, (len(suffixes), 1))

    def label_tokens(self, labels: list[str]) -> dict[str, list[str]]:
        """The tokens of each label prompt CLAP's text encoder reads (for provenance)."""
        tokenizer = self.processor.tokenizer
        return {
            label: tokenizer.convert_ids_to_tokens(tokenizer(self.label_prompt.format(label=label))["input_ids"])
            for label in labels
        }

    def generate(self, *args, **kwargs):
        raise ValueError("clap has no generate mode: it scores label prompts (set mode: score)")
