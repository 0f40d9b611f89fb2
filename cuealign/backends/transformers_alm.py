"""Audio-language models through transformers, with the audio prefix encoded once per utterance.

The user turn is split at the cue slot: the head (chat template, audio, instruction) is the same
for every condition of an utterance, so it is run once and its KV cache reused for each
condition's suffix (cue block, end of turn, assistant header, answer). Prefix and suffix are
tokenised separately and their ids concatenated on every path, because BPE can merge across the
boundary (FINDINGS.md).

Label scoring: log P(label tokens | prompt), summed over the label's tokens; one forward per
batch of conditions gives every label's first token, and the tails of multi-token labels branch
off each condition's own cache. The prediction is the argmax. score_full recomputes the same
numbers without any cache, as the reference the tests compare against.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoFeatureExtractor, AutoProcessor, AutoTokenizer, DynamicCache, Qwen2AudioProcessor

from cuealign.backends.registry import GREEDY_DECODING, Family
from cuealign.backends.weights import DTYPES, damaged_weights, load_error
from cuealign.devices import resolve_device

log = logging.getLogger(__name__)

_SENTINEL = "@@cuealign-cues@@"


@dataclass
class Prefix:
    """One utterance's encoded head: its token ids, KV tensors per layer and chat-template tail."""

    ids: torch.Tensor  # (1, P)
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    tail: str  # the chat template after the user text (end of turn, assistant header)
    inputs: dict  # the processor's output (audio features), kept for the full-recompute path
    next_position: int  # the rotary position of the first token after the prefix


def load_processor(path: str, family: Family, **options):
    """The processor the family's registry entry names (see Family.processor)."""
    if family.processor == "auto":
        return AutoProcessor.from_pretrained(path, **options)
    if family.processor == "qwen2-audio":
        tokenizer = AutoTokenizer.from_pretrained(path, **options)
        if tokenizer.chat_template is None:
            raise ValueError(f"model {path!r} has no chat template (chat_template.jinja or chat_template.json)")
        features = AutoFeatureExtractor.from_pretrained(path, **options)
        return Qwen2AudioProcessor(
            feature_extractor=features, tokenizer=tokenizer, chat_template=tokenizer.chat_template
        )
    raise ValueError(f"family {family.name}: unknown processor {family.processor!r}")


class TransformersALM:
    """A chat audio-language model loaded from a local path or the local Hugging Face cache."""

    def __init__(
        self,
        path: str,
        *,
        family: Family,
        device: str = "cpu",
        dtype: str = "float32",
        revision: str | None = None,
        adapter: str | None = None,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
    ):
        self.family = family
        torch_device, device_map = resolve_device(device)
        options = dict(local_files_only=True, revision=revision, trust_remote_code=trust_remote_code)
        try:
            self.processor = load_processor(path, family, **options)
            model_class = getattr(transformers, family.model_class)
            placement = {"device_map": device_map} if device_map else {}
            # safetensors only, unless the user opted in to pickle weights (which can run code)
            safe = {} if allow_pickle else {"use_safetensors": True}
            model = model_class.from_pretrained(path, dtype=DTYPES[dtype], **options, **placement, **safe)
        except OSError as exc:
            raise load_error(path, allow_pickle, exc) from exc
        except Exception as exc:
            if type(exc).__name__ != "SafetensorError":
                raise
            raise damaged_weights(path, exc) from exc
        if adapter:
            from peft import PeftModel

            if not allow_pickle and not (Path(adapter) / "adapter_model.safetensors").is_file():
                raise ValueError(
                    f"adapter {adapter!r} has no adapter_model.safetensors; "
                    "set allow_pickle: true to load pickle weights"
                )
            model = PeftModel.from_pretrained(model, adapter)
        if device_map:  # accelerate placed the layers (over every visible GPU); inputs go where the embeddings are
            self.model = model.eval()
            self.device = self.model.device
        else:
            self.device = torch.device(torch_device)
            self.model = model.to(self.device).eval()
        log.info("model on %s%s", self.device, f" (device_map={device_map})" if device_map else "")
        self.tokenizer = self.processor.tokenizer
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    # --- text -----------------------------------------------------------------------------

    def split_template(self, prefix_text: str) -> tuple[str, str]:
        """The chat-templated user turn, cut at the cue slot: (head with audio, tail)."""
        conversation = [
            {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": prefix_text + _SENTINEL}]}
        ]
        text = self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        head, tail = text.split(_SENTINEL)
        return head, tail

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # --- audio prefix --------------------------------------------------------------------------

    def prefix_inputs(self, audio: np.ndarray, prefix_text: str) -> tuple[dict, str]:
        """The processor's inputs for system + audio + instruction, and the template's tail.

        The one place where audio becomes model inputs: scoring, generation and fine-tuning all
        start here, so a model is trained on exactly the inputs it is later probed with.
        """
        head, tail = self.split_template(prefix_text)
        inputs = self.processor(text=head, audio=audio, sampling_rate=self.family.sampling_rate, return_tensors="pt")
        return dict(inputs), tail

    def encode_prefix(self, audio: np.ndarray, prefix_text: str) -> Prefix:
        """Run system + audio + instruction once; keep the KV cache."""
        inputs, tail = self.prefix_inputs(audio, prefix_text)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(**inputs, use_cache=True)
        layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        next_position = inputs["input_ids"].shape[1]
        if self.family.mrope:  # audio tokens advance the rotary positions by time, not by count
            positions, _ = self.model.get_rope_index(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                audio_seqlens=inputs[self.family.feature_mask].sum(-1),
            )
            next_position = int(positions.max()) + 1
        return Prefix(ids=inputs["input_ids"], layers=layers, tail=tail, inputs=inputs, next_position=next_position)

    def _cache(self, prefix: Prefix, batch: int) -> DynamicCache:
        # Views of the prefix tensors: appending a suffix concatenates into new tensors, so the
        # prefix itself is never written and needs no copy or crop between batches.
        return DynamicCache(
            ddp_cache_data=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in prefix.layers]
        )

    def _positions(self, prefix: Prefix, offsets: list[int], width: int, *, always: bool = False) -> dict:
        """Position ids of a batch continuing the prefix, each row ``offsets[row]`` tokens after its
        end. Given where the model cannot infer them from the cache: multimodal rotary positions,
        or rows that continue after padding (``always``); nothing otherwise."""
        if not (self.family.mrope or always):
            return {}
        start = prefix.next_position if self.family.mrope else prefix.ids.shape[1]
        positions = start + torch.tensor(offsets).view(-1, 1) + torch.arange(width)
        if self.family.mrope:  # the same position on the time, height and width axes for text
            positions = positions.unsqueeze(0).expand(3, -1, -1)
        return {"position_ids": positions.to(self.device)}

    @staticmethod
    def _padded(sequences: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and their mask: padding is masked, and causally after every real token."""
        ids = torch.full((len(sequences), max(map(len, sequences))), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
            mask[row, : len(sequence)] = 1
        return ids, mask

    # --- scoring -------------------------------------------------------------------------------

    def score(
        self, audio: np.ndarray, prefix_text: str, suffixes: list[str], labels: list[str], *, batch_size: int = 32
    ) -> np.ndarray:
        """log P(label | prompt with suffix) for every suffix x label, the prefix encoded once.

        One row per suffix, on the prefix's cache, gives every label's first token (all from the
        suffix's last logits). A label of several tokens then branches off that row's own cache:
        only its tokens but the last are run, so no suffix is run twice and the cost stays at the
        unique-token floor (one prefix per utterance, one suffix per condition) whatever the
        tokenizer does to the labels.
        """
        prefix = self.encode_prefix(audio, prefix_text)
        suffix_ids = [self.ids(s + prefix.tail) for s in suffixes]
        label_ids = [self.ids(label) for label in labels]
        first_tokens = torch.tensor([ids[0] for ids in label_ids])
        several = [j for j, ids in enumerate(label_ids) if len(ids) > 1]
        scores = np.zeros((len(suffixes), len(labels)))
        length = prefix.ids.shape[1]
        for start in range(0, len(suffixes), batch_size):
            rows = list(range(start, min(start + batch_size, len(suffixes))))
            ids, suffix_mask = self._padded([suffix_ids[i] for i in rows], self.pad_id)
            mask = torch.cat([torch.ones((len(rows), length), dtype=torch.long), suffix_mask], dim=1)
            with torch.inference_mode():
                out = self.model(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    past_key_values=self._cache(prefix, len(rows)),
                    use_cache=True,
                    **self._positions(prefix, [0] * len(rows), ids.shape[1]),
                )
            # the logits that predict the answer's first token, one position per row, reduced to
            # the labels' first tokens on the device: what crosses to the host is rows x labels
            # (copying the whole log-softmax was ~876 MB per utterance for a 7B model's vocabulary)
            logits = out.logits
            last = torch.tensor([len(suffix_ids[i]) - 1 for i in rows], device=logits.device)
            picked = logits[torch.arange(len(rows), device=logits.device), last].float()
            first = torch.log_softmax(picked, dim=-1)[:, first_tokens.to(logits.device)].cpu().numpy()
            scores[rows] += first
            if several:
                self._score_label_tails(
                    prefix,
                    out.past_key_values,
                    mask,
                    rows,
                    suffix_ids,
                    label_ids,
                    several,
                    scores,
                    batch_size=batch_size,
                )
        return scores

    def _score_label_tails(self, prefix, cache, mask, rows, suffix_ids, label_ids, several, scores, *, batch_size):
        """Add log P(label tokens after the first) for the labels of several tokens, each branch
        continuing its suffix row's cache (prefix + suffix, with that row's padding masked)."""
        pairs = [(row, i, j) for row, i in enumerate(rows) for j in several]
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start : start + batch_size]
            pick = torch.tensor([row for row, _, _ in batch])
            branch = DynamicCache(ddp_cache_data=[(k[pick.to(k.device)], v[pick.to(v.device)]) for k, v in layers])
            ids, label_mask = self._padded([label_ids[j][:-1] for _, _, j in batch], self.pad_id)
            with torch.inference_mode():
                logits = self.model(
                    input_ids=ids.to(self.device),
                    attention_mask=torch.cat([mask[pick], label_mask], dim=1).to(self.device),
                    past_key_values=branch,
                    use_cache=True,
                    **self._positions(prefix, [len(suffix_ids[i]) for _, i, _ in batch], ids.shape[1], always=True),
                ).logits
            # each row's remaining label tokens, gathered on the device (rows x tokens cross to the host)
            rest, rest_mask = self._padded([label_ids[j][1:] for _, _, j in batch], 0)
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            gathered = logprobs.gather(2, rest.to(logits.device)[:, :, None])[:, :, 0]
            totals = (gathered * rest_mask.to(logits.device)).sum(dim=1).cpu().numpy()
            for row, (_, i, j) in enumerate(batch):
                scores[i, j] += float(totals[row])

    def score_full(self, audio: np.ndarray, prefix_text: str, suffix: str, labels: list[str]) -> np.ndarray:
        """The same scores recomputed from scratch for one suffix: no cache, audio re-encoded."""
        prefix = self.encode_prefix(audio, prefix_text)
        suffix_ids = self.ids(suffix + prefix.tail)
        scores = []
        for label in labels:
            label_ids = self.ids(label)
            ids = torch.cat([prefix.ids.cpu(), torch.tensor([suffix_ids + label_ids])], dim=1).to(self.device)
            inputs = {k: v for k, v in prefix.inputs.items() if k not in ("input_ids", "attention_mask")}
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), **inputs).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)[0].cpu()
            first = prefix.ids.shape[1] + len(suffix_ids) - 1
            positions = torch.arange(first, first + len(label_ids))
            scores.append(float(logprobs[positions, torch.tensor(label_ids)].sum()))
        return np.array(scores)

    # --- generation ----------------------------------------------------------------------------

    def generate(
        self, audio: np.ndarray, prefix_text: str, suffixes: list[str], *, max_new_tokens: int = 8
    ) -> list[str]:
        """Greedy answers, one per suffix, each continuing from the shared prefix cache. The decoding
        is GREEDY_DECODING whatever the checkpoint's generation_config says (AF3-hf ships sampling
        and a repetition penalty), stopping at the tokenizer's EOS."""
        prefix = self.encode_prefix(audio, prefix_text)
        greedy = transformers.GenerationConfig(
            **GREEDY_DECODING,
            max_new_tokens=max_new_tokens,
            pad_token_id=self.pad_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        answers = []
        for suffix in suffixes:
            ids = torch.cat([prefix.ids.cpu(), torch.tensor([self.ids(suffix + prefix.tail)])], dim=1).to(self.device)
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    past_key_values=self._cache(prefix, 1),
                    generation_config=greedy,
                )
            answers.append(self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
        return answers
