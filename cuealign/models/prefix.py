"""The audio prefix of a chat audio-language model, encoded once per utterance.

The user turn is split at the cue slot: the head (chat template, audio, instruction) is the same
for every condition of an utterance, so it is run once and its KV cache reused for each
condition's suffix. The split is only made where the tokenizer gives the whole prompt the same ids
as head and suffix tokenised apart (with the real Qwen BPE ".\n" is one token): every prompt is
checked, and one that breaks it is an error naming the fix. ``prepare`` does the processor's work
for an utterance ahead of time (in inference's read-ahead thread, with its own copy of the
processor); ``encode_prefixes`` encodes several utterances' heads in one right-padded forward pass.

``PrefixEncoding`` is a part of TransformersALM (cuealign.models.transformers_alm), kept apart
because it is the one place with KV-cache and rotary-position bookkeeping; it uses the model's
``processor``, ``tokenizer``, ``model``, ``device``, ``family``, ``system_prompt`` and ``ids``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import logging
from dataclasses import dataclass

import numpy as np
import torch
from transformers import DynamicCache

log = logging.getLogger(__name__)

_SENTINEL = "@@cuealign-cues@@"
# The audio's content item: the type for templates that test it, and an 'audio' key for those that
# test `'audio' in content` (Qwen2-Audio's hub PR #13 and fine-tunes saved with it), which render
# no audio placeholder for a bare {"type": "audio"}. Rendering never reads the value.
AUDIO_ITEM = {"type": "audio", "audio": "<audio>"}


def cache_keyword(model) -> str:
    """The keyword under which this transformers' forward (and generate) takes a KV cache: ``cache``
    where the library has renamed ``past_key_values`` (the old name warns on every call and goes in
    5.40), ``past_key_values`` in the releases before the rename."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT wrapper
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def returned_cache(out):
    """The KV cache a forward returned, under either name (see ``cache_keyword``)."""
    return out["cache"] if "cache" in out else out["past_key_values"]


@contextlib.contextmanager
def logits_at(model, start: int, stop: int | None):
    """Within: the language-model head sees positions start..stop-1 only (the logits that score a
    label), so a whole-prompt forward makes no full-vocabulary logits for the audio it reads."""
    head = model.get_output_embeddings()
    if head is None:
        yield
        return
    handle = head.register_forward_pre_hook(lambda _module, args: (args[0][:, start:stop], *args[1:]))
    try:
        yield
    finally:
        handle.remove()


def on_model(tensors: dict, model: torch.nn.Module, device) -> dict:
    """Processor outputs as the model takes them: on ``device``, floating tensors (audio features,
    waveforms) in the dtype of the model's weights, integer ones (ids, masks) as they are, as
    transformers' BatchFeature.to(device, dtype=...) does. The processors return float32 features:
    Qwen2-Audio's and Omni's encoders cast them to their weights' dtype, Audio Flamingo 3's does not,
    and its bfloat16 convolution refuses float32 (found at the released size, benchmarks/README.md,
    "Real size")."""
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    return {k: v.to(device, dtype=dtype) if v.is_floating_point() else v.to(device) for k, v in tensors.items()}


def padded_cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Tensors concatenated on the first axis, zero-padded on the last to the longest (audio
    features and their masks of clips of different lengths: the padding is masked)."""
    width = max(t.shape[-1] for t in tensors)
    return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[-1])) for t in tensors])


def last_position_logits(model):
    """Within: the language-model head sees only each row's last position, so a prefix forward
    makes batch x 1 x vocabulary logits instead of batch x prefix x vocabulary (4.3 GiB in bfloat16
    for a 600 s Audio Flamingo 3 clip) that nobody reads. The KV cache is unchanged."""
    return logits_at(model, -1, None)


@dataclass
class Prefix:
    """One utterance's encoded head: its token ids, KV tensors per layer and chat-template tail."""

    ids: torch.Tensor  # (1, P)
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    tail: str  # the chat template after the user text (end of turn, assistant header)
    inputs: dict  # the processor's output (audio features, CPU tensors), kept for the full-recompute path
    next_position: int  # the rotary position of the first token after the prefix
    head: str  # the templated text the ids were made from (audio placeholder unexpanded)
    instruction: str = ""  # the prefix_text it ends with ('' for a kept system + audio part)


@dataclass(frozen=True)
class Prepared:
    """The processor's inputs for one audio and instruction (what encode_prefix would ask the
    processor for), made ahead of time by TransformersALM.prepare, e.g. in a read-ahead thread."""

    prefix_text: str
    head: str
    tail: str
    inputs: dict  # CPU tensors
    suffix_ids: dict  # suffix text -> ids of suffix + tail, its split with head checked


class PrefixEncoding:
    """The prefix machinery of TransformersALM: the template's split, its check, the processor's
    inputs, the encoded head and the caches that continue it."""

    # --- text -----------------------------------------------------------------------------

    def split_template(self, prefix_text: str, processor=None) -> tuple[str, str]:
        """The chat-templated user turn, cut at the cue slot: (head with audio, tail). The system
        turn is the configured system prompt, or the template's own default when none is set."""
        conversation = [{"role": "user", "content": [AUDIO_ITEM, {"type": "text", "text": prefix_text + _SENTINEL}]}]
        if self.system_prompt is not None:
            conversation.insert(0, {"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        processor = processor or self.processor
        text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        head, tail = text.split(_SENTINEL)
        audio_token = getattr(self.processor, "audio_token", None)
        if audio_token and head.count(audio_token) != 1:
            raise ValueError(
                f"the model's chat template renders {head.count(audio_token)} audio placeholders ({audio_token}) for "
                f"one audio content item {AUDIO_ITEM}: the audio would not reach the model; use the chat template "
                "of the released checkpoint"
            )
        if head.count(self.family.audio_slot) != 1:
            raise ValueError(
                f"the model's chat template renders the audio as {head[:300]!r}, not as {self.family.audio_slot!r} "
                f"once: not a template of family {self.family.name}; use the chat template of the released checkpoint"
            )
        return head, tail

    def ids(self, text: str, tokenizer=None) -> list[int]:
        return (tokenizer or self.tokenizer)(text, add_special_tokens=False)["input_ids"]

    def check_split(self, head: str, suffix_tail: list[str]) -> None:
        """Each prompt tokenises as a whole exactly as its head and suffix do apart (the cached
        prefix is then what the model's own processor would feed it); checked once per text."""
        self.split_ids(head, suffix_tail)

    def split_ids(self, head: str, suffix_tail: list[str], tokenizer=None) -> list[list[int]]:
        """The ids of each suffix (with the template's tail) tokenised on its own, each checked to
        tokenise with ``head`` as a whole as the two do apart (see check_split). ``tokenizer``:
        another copy of the model's tokenizer (prepare's, in its own thread)."""
        head_ids = None  # the head is the same for every suffix: tokenised once, if at all
        out = []
        for rest in suffix_tail:
            rest_ids = self.ids(rest, tokenizer)
            out.append(rest_ids)
            if (head, rest) in self._split_checked:
                continue
            head_ids = head_ids if head_ids is not None else self.ids(head, tokenizer)
            apart, whole = head_ids + rest_ids, self.ids(head + rest, tokenizer)
            if apart == whole:
                self._remember_split(head, rest)
                continue
            at = next((i for i, (a, b) in enumerate(zip(apart, whole, strict=False)) if a != b), len(whole))
            merged = self.tokenizer.convert_ids_to_tokens(whole[at : at + 1])
            raise ValueError(
                f"prompt: the text before the cue block and the cue block tokenise differently together "
                f"(the model's tokenizer makes {self.tokenizer.decode(whole[at : at + 1])!r} one token across "
                f"the split; token {merged}), so the cached prefix would not be what the model's own processor "
                f"feeds it. Around the split: {(head[-20:] + '|' + rest[:20])!r}. Start prompt.cues with a space "
                "and a word (the default ' Acoustic cues ...'), not a newline or punctuation, or end "
                "prompt.template's text before {cues} with a newline"
            )
        return out

    def _remember_split(self, head: str, rest: str) -> None:
        if len(self._split_checked) > 100_000:  # token strings differ per utterance: keep it bounded
            self._split_checked.clear()
        self._split_checked.add((head, rest))

    def _apart_is_whole(self, head: str, rest: str, head_ids: list[int] | None = None) -> bool:
        """Whether ``head + rest`` tokenises as ``head`` and ``rest`` do apart (memoised when so)."""
        if (head, rest) in self._split_checked:
            return True
        if (head_ids if head_ids is not None else self.ids(head)) + self.ids(rest) != self.ids(head + rest):
            return False
        self._remember_split(head, rest)
        return True

    # --- audio prefix --------------------------------------------------------------------------

    def prefix_inputs(self, audio: np.ndarray, prefix_text: str) -> tuple[dict, str]:
        """The processor's inputs for system + audio + instruction, and the template's tail.

        The one place where audio becomes model inputs: scoring, generation and fine-tuning all
        start here, so a model is trained on exactly the inputs it is later probed with.
        """
        head, tail = self.split_template(prefix_text)
        return self._audio_inputs(self.processor, head, audio), tail

    def _audio_inputs(self, processor, head: str, audio: np.ndarray) -> dict:
        """The processor's inputs for ``head`` and ``audio`` (CPU tensors); for a family that pads to
        the clip (Family.pad_to_clip), features padded to the clip and n_fft samples past it (so
        every valid frame sees what it sees under the processor's own padding), not to the window."""
        options = {}
        if self.family.pad_to_clip:
            features = processor.feature_extractor
            step = 2 * features.hop_length
            length = -(-(len(audio) + features.n_fft) // step) * step
            options["audio_kwargs"] = {"max_length": min(features.n_samples, length)}
        return dict(processor(text=head, audio=audio, sampling_rate=self.sampling_rate, return_tensors="pt", **options))

    def prepare(self, audio: np.ndarray, prefix_text: str, suffixes: list[str] = ()) -> Prepared | None:
        """The processor's work for ``audio`` and ``prefix_text`` (chat template, tokens, log-mel
        features) and the tokens of ``suffixes`` (their split with the head checked), done now so
        that score and generate need not: inference calls it in its read-ahead thread for the next
        utterance while the model works on this one. It uses its own copy of the processor, so the
        model's thread and this one never share a tokenizer (a fast tokenizer used from two
        threads at once can fail with "Already borrowed"). None, with a warning once, where the
        processor cannot be copied (a checkpoint's own processor code may hold what cannot be):
        the work is then done in line, with the same answers."""
        with self._prepare_lock:
            if self._preparer is None:
                try:
                    self._preparer = copy.deepcopy(self.processor)
                except Exception as exc:  # noqa: BLE001 - any failure to copy means: do it in line
                    log.warning(
                        "the processor (%s) cannot be copied for the read-ahead thread (%s: %s): its work is "
                        "done in line with the model, the same answers a little slower",
                        type(self.processor).__name__,
                        type(exc).__name__,
                        exc,
                    )
                    self._preparer = False
            if self._preparer is False:
                return None
            head, tail = self.split_template(prefix_text, processor=self._preparer)
            inputs = self._audio_inputs(self._preparer, head, audio)
            unique = list(dict.fromkeys(suffixes))
            ids = self.split_ids(head, [s + tail for s in unique], tokenizer=self._preparer.tokenizer)
        return Prepared(
            prefix_text=prefix_text,
            head=head,
            tail=tail,
            inputs=dict(inputs),
            suffix_ids=dict(zip(unique, ids, strict=True)),
        )

    def _suffix_ids(self, prefix: Prefix, suffixes: list[str], prepared: Prepared | None) -> list[list[int]]:
        """The ids of each suffix + tail after ``prefix`` (split checked): prepare's where it made
        them for this head, the rest tokenised here."""
        ready = (
            prepared.suffix_ids
            if prepared is not None and (prepared.head, prepared.tail) == (prefix.head, prefix.tail)
            else {}
        )
        rest = [s for s in dict.fromkeys(suffixes) if s not in ready]
        made = (
            dict(zip(rest, self.split_ids(prefix.head, [s + prefix.tail for s in rest]), strict=True)) if rest else {}
        )
        return [ready[s] if s in ready else made[s] for s in suffixes]

    def forget_prefixes(self) -> None:
        """Drop the kept system + audio prefixes (benchmarks and tests: the next utterance encodes afresh)."""
        self._audio_prefixes = {}

    def _template(self, prefix_text: str, prepared: Prepared | None) -> tuple[str, str, dict | None]:
        """Head, tail and, where ``prepared`` was made for this ``prefix_text``, its processor
        inputs (None otherwise: _processed makes them, only if the prefix must be run)."""
        if prepared is not None and prepared.prefix_text == prefix_text:
            return prepared.head, prepared.tail, prepared.inputs
        return *self.split_template(prefix_text), None

    def _processed(self, audio: np.ndarray, head: str, inputs: dict | None) -> dict:
        """The processor's inputs (CPU tensors) for ``audio`` and ``head``: ``inputs`` if made already."""
        if inputs is not None:
            return inputs
        return self._audio_inputs(self.processor, head, audio)

    def _audio_key(self, audio: np.ndarray, prefix_text: str, head: str) -> tuple[tuple, str | None]:
        """What identifies the system + audio part of a prefix (None where the head does not end
        with the instruction, so that the part cannot be cut off)."""
        audio_head = head[: len(head) - len(prefix_text)] if prefix_text and head.endswith(prefix_text) else None
        return (hashlib.sha256(np.ascontiguousarray(audio).tobytes()).hexdigest(), audio_head), audio_head

    def _kept(self, key: tuple, audio_head: str | None, prefix_text: str, head: str, tail: str) -> Prefix | None:
        """The prefix for ``prefix_text`` continued from a kept system + audio prefix of this audio."""
        base = self._audio_prefixes.get(key) if audio_head is not None else None
        if base is None or not self._apart_is_whole(audio_head, prefix_text + tail):
            return None
        return self._extend(base, prefix_text, head, tail)

    def encode_prefix(self, audio: np.ndarray, prefix_text: str, prepared: Prepared | None = None) -> Prefix:
        """Run system + audio + instruction once; keep the KV cache.

        The part up to the instruction (system, audio) is kept for the utterances last encoded: a
        second wording of the instruction for the same audio (prompt.variants) continues from it,
        running only its own instruction tokens, so the audio is encoded once per utterance
        whatever the number of wordings (causal attention: those positions' keys and values do
        not depend on what follows them). ``prepared``: prepare's result for this same audio,
        used when it was made for this ``prefix_text`` (the processor is then not called here)."""
        head, tail, inputs = self._template(prefix_text, prepared)
        key, audio_head = self._audio_key(audio, prefix_text, head)
        if (kept := self._kept(key, audio_head, prefix_text, head, tail)) is not None:
            return kept  # the processor is not called: the audio is encoded already
        self._audio_prefixes = {}
        return self._encode([(key, audio_head, prefix_text, head, tail, self._processed(audio, head, inputs))])[0]

    def encode_prefixes(self, items: list[tuple[np.ndarray, str, Prepared | None]]) -> list[Prefix]:
        """The prefixes of several utterances (audio, prefix_text, prepared each, as encode_prefix
        takes them) in one forward pass: their processor inputs right-padded into one batch (each
        row's padding after its own tokens, masked, so a row's keys and values are those it has
        alone, up to float rounding), then each row's cache cut to its own length. Each
        utterance's system + audio part is kept for its other wordings, as encode_prefix keeps
        the last one's. Rows a kept prefix can continue are not run again."""
        made: list[Prefix | None] = []
        todo, continued = [], set()
        for audio, prefix_text, prepared in items:
            head, tail, inputs = self._template(prefix_text, prepared)
            key, audio_head = self._audio_key(audio, prefix_text, head)
            made.append(self._kept(key, audio_head, prefix_text, head, tail))
            if made[-1] is None:
                inputs = self._processed(audio, head, inputs)
                todo.append((len(made) - 1, (key, audio_head, prefix_text, head, tail, inputs)))
            else:
                continued.add(key)
        if todo:
            self._audio_prefixes = {k: v for k, v in self._audio_prefixes.items() if k in continued}
            for (row, _), prefix in zip(todo, self._encode([item for _, item in todo]), strict=True):
                made[row] = prefix
        return made

    def _encode(self, items: list[tuple]) -> list[Prefix]:
        """Run each item's processor inputs (one forward for all), keep each one's system + audio part."""
        lengths = [inputs["input_ids"].shape[1] for *_, inputs in items]
        batch = self._collate([inputs for *_, inputs in items]) if len(items) > 1 else items[0][-1]
        batch = on_model(batch, self.model, self.device)
        with torch.inference_mode(), last_position_logits(self.model):
            out = self.model(**batch, use_cache=True)
        layers = [(layer.keys, layer.values) for layer in returned_cache(out).layers]
        positions = None
        if self.family.mrope:  # audio tokens advance the rotary positions by time, not by count
            positions, _ = self.model.get_rope_index(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                audio_seqlens=batch[self.family.feature_mask].sum(-1),
            )
        prefixes = []
        for row, ((key, audio_head, prefix_text, head, tail, inputs), length) in enumerate(
            zip(items, lengths, strict=True)
        ):
            own = [(k[row : row + 1, :, :length], v[row : row + 1, :, :length]) for k, v in layers]
            if len(items) > 1:  # the row's own storage: the batch's padded tensors are freed
                own = [(k.contiguous(), v.contiguous()) for k, v in own]
            at = positions[:, row : row + 1, :length] if positions is not None else None
            prefix = Prefix(
                ids=inputs["input_ids"],
                layers=own,
                tail=tail,
                inputs=inputs,
                next_position=int(at.max()) + 1 if at is not None else length,
                head=head,
                instruction=prefix_text,
            )
            prefixes.append(prefix)
            if audio_head is not None:  # keep system + audio: the first positions, before the instruction
                cut = length - len(self.ids(prefix_text))
                self._audio_prefixes[key] = Prefix(
                    ids=prefix.ids[:, :cut],
                    layers=[(k[:, :, :cut], v[:, :, :cut]) for k, v in own],
                    tail="",
                    inputs=inputs,
                    next_position=int(at[..., :cut].max()) + 1 if at is not None else cut,
                    head=audio_head,
                )
        return prefixes

    def _collate(self, inputs: list[dict]) -> dict:
        """Several utterances' processor inputs as one batch: token ids right-padded (padding
        masked), audio tensors stacked along the first axis (Qwen2-Audio and Omni one per
        utterance, AF3 one per 30 s window, in order), zero-padded on the last (frames, masked
        by their feature masks) where lengths differ."""
        ids, mask = self._padded([x["input_ids"][0].tolist() for x in inputs], self.pad_id)
        batch = {"input_ids": ids, "attention_mask": mask}
        for name in inputs[0]:
            if name in batch:
                continue
            batch[name] = padded_cat([x[name] for x in inputs])
        return batch

    def _prefix(self, audio, prefix_text: str, prepared: Prepared | None, prefix: Prefix | None) -> Prefix:
        """``prefix`` where given (it must end with ``prefix_text``), else encode_prefix's."""
        if prefix is None:
            return self.encode_prefix(audio, prefix_text, prepared)
        if prefix.instruction != prefix_text:
            raise ValueError(f"a prefix encoded for {prefix.instruction!r} was given for {prefix_text!r}")
        return prefix

    def _extend(self, base: Prefix, text: str, head: str, tail: str) -> Prefix:
        """``base`` (system + audio) continued by ``text``'s tokens: a prefix for that instruction."""
        ids = torch.tensor([self.ids(text)])
        with torch.inference_mode(), last_position_logits(self.model):
            out = self.model(
                input_ids=ids.to(self.device),
                attention_mask=torch.ones((1, base.ids.shape[1] + ids.shape[1]), dtype=torch.long, device=self.device),
                **self._cache_argument(self._cache(base, 1)),
                use_cache=True,
                **self._positions(base, [0], ids.shape[1]),
            )
        return Prefix(
            ids=torch.cat([base.ids, ids.to(base.ids.device)], dim=1),
            layers=[(layer.keys, layer.values) for layer in returned_cache(out).layers],
            tail=tail,
            inputs=base.inputs,
            next_position=base.next_position + ids.shape[1],
            head=head,
            instruction=text,
        )

    def _cache_argument(self, cache) -> dict:
        """``cache`` as the forward's keyword argument (``cache_keyword``)."""
        if not hasattr(self, "_cache_name"):
            self._cache_name = cache_keyword(self.model)
        return {self._cache_name: cache}

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
