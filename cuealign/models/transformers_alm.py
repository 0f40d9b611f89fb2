"""Audio-language models through transformers, with the audio prefix encoded once per utterance.

The user turn is split at the cue slot: the head (chat template, audio, instruction) is the same
for every condition of an utterance, so it is run once and its KV cache reused for each
condition's suffix (cue block, end of turn, assistant header, answer). The split is only made
where the tokenizer gives the whole prompt the same ids as head and suffix tokenised apart (with
the real Qwen BPE ".\n" is one token, so a cue block starting with a newline right after the
instruction's full stop would feed the model other ids than its own processor does): every
prompt is checked, and one that breaks it is an error naming the fix.

Label scoring: log P(label tokens | prompt), summed over the label's tokens; one forward per
batch of conditions gives every label's first token, and the tails of multi-token labels branch
off each condition's own cache. The prediction is the argmax. score_full recomputes the same
numbers without any cache, as the reference the tests compare against.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoProcessor, DynamicCache, Qwen2AudioProcessor

from cuealign.models.devices import resolve_device
from cuealign.models.registry import GREEDY_DECODING, Family
from cuealign.models.weights import DTYPES, damaged_weights, load_error, loaded_dtype

log = logging.getLogger(__name__)

_SENTINEL = "@@cuealign-cues@@"
# The audio's content item: the type for templates that test it, and an 'audio' key for those that
# test `'audio' in content` (Qwen2-Audio's hub PR #13 and fine-tunes saved with it), which render
# no audio placeholder for a bare {"type": "audio"}. Rendering never reads the value.
AUDIO_ITEM = {"type": "audio", "audio": "<audio>"}
LABEL_VARIANTS = ("exact", "case")


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


def load_processor(path: str, family: Family, **options):
    """The processor the family's registry entry names (see Family.processor), with the chat
    template the model folder holds (chat_template.jinja, chat_template.json, or in the tokenizer's
    config)."""
    if family.processor == "auto":
        processor = AutoProcessor.from_pretrained(path, **options)
    elif family.processor == "qwen2-audio":
        processor = Qwen2AudioProcessor.from_pretrained(path, **options)
    else:
        raise ValueError(f"family {family.name}: unknown processor {family.processor!r}")
    if processor.chat_template is None:
        raise ValueError(
            f"model {path!r} has no chat template (chat_template.jinja, chat_template.json or tokenizer_config.json): "
            "copy the one of the checkpoint it was trained from into the folder"
        )
    return processor


def audio_window(processor) -> float:
    """Seconds of audio the checkpoint takes: its processor's own limit where it windows long audio
    (AF3: max_audio_len), else its feature extractor's (Qwen2-Audio 30 s, released Omni 300 s)."""
    if limit := getattr(processor, "max_audio_len", None):
        return float(limit)
    features = processor.feature_extractor
    return features.n_samples / features.sampling_rate


def label_variants(label: str, how: str) -> list[str]:
    """The spellings of ``label`` scored together: as written ('exact'), or with its capitalised
    and upper-case forms too ('case'; instruction models often answer "Neutral")."""
    if how == "exact":
        return [label]
    return list(dict.fromkeys([label, label[:1].upper() + label[1:], label.upper()]))


class TransformersALM:
    """A chat audio-language model loaded from a local path or the local Hugging Face cache."""

    def __init__(
        self,
        path: str,
        *,
        family: Family,
        device: str = "cpu",
        dtype: str = "auto",
        revision: str | None = None,
        adapter: str | None = None,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
        system_prompt: str | None = None,
        label_variants: str = "exact",
    ):
        self.family = family
        self.system_prompt = system_prompt
        if label_variants not in LABEL_VARIANTS:
            raise ValueError(f"label_variants {label_variants!r}: choose one of {LABEL_VARIANTS}")
        self.label_variants = label_variants
        self._split_checked: set[tuple[str, str]] = set()
        self._label_ids: dict[str, list[int]] = {}  # each label spelling tokenised once, not per utterance
        self._audio_prefixes: dict[tuple, Prefix] = {}  # system + audio of the utterances last encoded
        self._preparer = None  # prepare's own copy of the processor (made on first use)
        self._prepare_lock = threading.Lock()
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
            check_adapter_loaded(model, adapter)
        if device_map:  # accelerate placed the layers (over every visible GPU); inputs go where the embeddings are
            self.model = model.eval()
            self.device = self.model.device
        else:
            self.device = torch.device(torch_device)
            self.model = model.to(self.device).eval()
        self.dtype = loaded_dtype(self.model, dtype, self.device)
        log.info("model on %s in %s%s", self.device, self.dtype, f" (device_map={device_map})" if device_map else "")
        self.tokenizer = self.processor.tokenizer
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.sampling_rate = int(self.processor.feature_extractor.sampling_rate)
        self.window_s = family.window_s or audio_window(self.processor)

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

    def label_tokens(self, labels: list[str]) -> dict[str, list[str]]:
        """Each scored spelling of each label and the tokens it is scored as (for provenance)."""
        return {
            variant: self.tokenizer.convert_ids_to_tokens(self.ids(variant))
            for label in labels
            for variant in label_variants(label, self.label_variants)
        }

    # --- audio prefix --------------------------------------------------------------------------

    def prefix_inputs(self, audio: np.ndarray, prefix_text: str) -> tuple[dict, str]:
        """The processor's inputs for system + audio + instruction, and the template's tail.

        The one place where audio becomes model inputs: scoring, generation and fine-tuning all
        start here, so a model is trained on exactly the inputs it is later probed with.
        """
        head, tail = self.split_template(prefix_text)
        inputs = self.processor(text=head, audio=audio, sampling_rate=self.sampling_rate, return_tensors="pt")
        return dict(inputs), tail

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
            inputs = self._preparer(text=head, audio=audio, sampling_rate=self.sampling_rate, return_tensors="pt")
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
        return dict(self.processor(text=head, audio=audio, sampling_rate=self.sampling_rate, return_tensors="pt"))

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
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            out = self.model(**batch, use_cache=True)
        layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
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
            tensors = [x[name] for x in inputs]
            width = max(t.shape[-1] for t in tensors)
            batch[name] = torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[-1])) for t in tensors])
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
        with torch.inference_mode():
            out = self.model(
                input_ids=ids.to(self.device),
                attention_mask=torch.ones((1, base.ids.shape[1] + ids.shape[1]), dtype=torch.long, device=self.device),
                past_key_values=self._cache(base, 1),
                use_cache=True,
                **self._positions(base, [0], ids.shape[1]),
            )
        return Prefix(
            ids=torch.cat([base.ids, ids.to(base.ids.device)], dim=1),
            layers=[(layer.keys, layer.values) for layer in out.past_key_values.layers],
            tail=tail,
            inputs=base.inputs,
            next_position=base.next_position + ids.shape[1],
            head=head,
            instruction=text,
        )

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
        self,
        audio: np.ndarray,
        prefix_text: str,
        suffixes: list[str],
        labels: list[str],
        *,
        batch_size: int = 32,
        prepared: Prepared | None = None,
        prefix: Prefix | None = None,
    ) -> np.ndarray:
        """log P(label | prompt with suffix) for every suffix x label, the prefix encoded once.

        One row per suffix, on the prefix's cache, gives every label's first token (all from the
        suffix's last logits). A label of several tokens then branches off that row's own cache:
        only its tokens but the last are run, so no suffix is run twice and the cost stays at the
        unique-token floor (one prefix per utterance, one suffix per condition) whatever the
        tokenizer does to the labels. ``prefix``: this audio and prefix_text already encoded
        (encode_prefixes, several utterances at once).
        """
        prefix = self._prefix(audio, prefix_text, prepared, prefix)
        suffix_ids = self._suffix_ids(prefix, suffixes, prepared)
        spellings = [label_variants(label, self.label_variants) for label in labels]
        scores = self._score_texts(prefix, suffix_ids, [v for vs in spellings for v in vs], batch_size=batch_size)
        return _per_label(scores, spellings)

    def _score_texts(
        self, prefix: Prefix, suffix_ids: list[list[int]], labels: list[str], *, batch_size: int
    ) -> np.ndarray:
        """log P(text | prompt with suffix) for every suffix (as ids of suffix + tail) x text (see score)."""
        for label in labels:
            if label not in self._label_ids:
                self._label_ids[label] = self.ids(label)
        label_ids = [self._label_ids[label] for label in labels]
        first_tokens = torch.tensor([ids[0] for ids in label_ids])
        several = [j for j, ids in enumerate(label_ids) if len(ids) > 1]
        scores = np.zeros((len(suffix_ids), len(labels)))
        length = prefix.ids.shape[1]
        for start in range(0, len(suffix_ids), batch_size):
            rows = list(range(start, min(start + batch_size, len(suffix_ids))))
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
        """The same scores recomputed from scratch for one suffix, as the model's own processor
        prepares the whole prompt: the text tokenised in one piece, no cache, audio re-encoded."""
        head, tail = self.split_template(prefix_text)
        spellings = [label_variants(label, self.label_variants) for label in labels]
        prompt = self.processor(
            text=head + suffix + tail, audio=audio, sampling_rate=self.sampling_rate, return_tensors="pt"
        )
        prompt_ids = prompt["input_ids"]
        inputs = {k: v.to(self.device) for k, v in prompt.items() if k not in ("input_ids", "attention_mask")}
        scores = []
        for label in (v for vs in spellings for v in vs):
            label_ids = self.ids(label)
            ids = torch.cat([prompt_ids, torch.tensor([label_ids])], dim=1).to(self.device)
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), **inputs).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)[0].cpu()
            first = prompt_ids.shape[1] - 1
            positions = torch.arange(first, first + len(label_ids))
            scores.append(float(logprobs[positions, torch.tensor(label_ids)].sum()))
        return _per_label(np.array([scores]), spellings)[0]

    # --- generation ----------------------------------------------------------------------------

    def _greedy_config(self, max_new_tokens: int) -> transformers.GenerationConfig:
        return transformers.GenerationConfig(
            **GREEDY_DECODING,
            max_new_tokens=max_new_tokens,
            pad_token_id=self.pad_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )

    def generate(
        self,
        audio: np.ndarray,
        prefix_text: str,
        suffixes: list[str],
        *,
        max_new_tokens: int = 8,
        batch_size: int = 32,
        prepared: Prepared | None = None,
        prefix: Prefix | None = None,
    ) -> list[str]:
        """Greedy answers, one per suffix, all suffixes of a batch decoded together from the shared
        prefix cache: each row is its suffix right-padded, then one token per step for every row,
        padding masked and each row's positions counted on from its own length, until every row has
        given the tokenizer's EOS or max_new_tokens. The decoding is GREEDY_DECODING (no sampling, no
        repetition penalty) whatever the checkpoint's generation_config says (AF3-hf ships sampling
        and a repetition penalty); generate_one is the same with transformers' own generate, one
        prompt at a time, the reference the tests compare against token for token. ``prefix`` as
        in score."""
        prefix = self._prefix(audio, prefix_text, prepared, prefix)
        suffix_ids = self._suffix_ids(prefix, suffixes, prepared)
        answers: list[str] = []
        for start in range(0, len(suffixes), batch_size):
            rows = suffix_ids[start : start + batch_size]
            answers += [
                self.tokenizer.decode(t, skip_special_tokens=True) for t in self._decode(prefix, rows, max_new_tokens)
            ]
        return answers

    def _decode(self, prefix: Prefix, rows: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy continuations of ``rows`` (suffix ids after the prefix), up to and without EOS."""
        eos = self.tokenizer.eos_token_id
        ids, suffix_mask = self._padded(rows, self.pad_id)
        mask = torch.cat([torch.ones((len(rows), prefix.ids.shape[1]), dtype=torch.long), suffix_mask], dim=1)
        lengths = [len(r) for r in rows]
        out: list[list[int]] = [[] for _ in rows]
        done = [False] * len(rows)
        cache = self._cache(prefix, len(rows))
        with torch.inference_mode():
            result = self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                past_key_values=cache,
                use_cache=True,
                **self._positions(prefix, [0] * len(rows), ids.shape[1]),
            )
            last = torch.tensor([n - 1 for n in lengths], device=result.logits.device)
            logits = result.logits[torch.arange(len(rows), device=last.device), last]
            for step in range(max_new_tokens):
                chosen = logits.float().argmax(dim=-1).cpu().tolist()
                for row, token in enumerate(chosen):
                    if not done[row]:
                        if token == eos:
                            done[row] = True
                        else:
                            out[row].append(token)
                if all(done) or step == max_new_tokens - 1:
                    break
                step_ids = torch.tensor([[t if not d else self.pad_id] for t, d in zip(chosen, done, strict=True)])
                mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)
                result = self.model(
                    input_ids=step_ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    past_key_values=result.past_key_values,
                    use_cache=True,
                    **self._positions(prefix, [n + step for n in lengths], 1, always=True),
                )
                logits = result.logits[:, -1]
        return out

    def generate_one(self, audio: np.ndarray, prefix_text: str, suffix: str, *, max_new_tokens: int = 8) -> str:
        """One greedy answer by transformers' own generate, continuing the prefix cache: the
        reference for generate's batched decoding."""
        prefix = self.encode_prefix(audio, prefix_text)
        ids = torch.cat([prefix.ids.cpu(), torch.tensor([self.ids(suffix + prefix.tail)])], dim=1).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                past_key_values=self._cache(prefix, 1),
                generation_config=self._greedy_config(max_new_tokens),
            )
        return self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def _per_label(scores: np.ndarray, spellings: list[list[str]]) -> np.ndarray:
    """Columns of spellings (in order) to one column per label: log-sum-exp over its spellings."""
    from scipy.special import logsumexp

    out, column = np.zeros((scores.shape[0], len(spellings))), 0
    for j, variants in enumerate(spellings):
        block = scores[:, column : column + len(variants)]
        out[:, j] = block[:, 0] if len(variants) == 1 else logsumexp(block, axis=1)
        column += len(variants)
    return out


def check_adapter_loaded(model, adapter: str) -> None:
    """A PEFT adapter that changes the model: every weight in its file lands in a module of the
    model and the model's adapter modules all get one (PEFT only warns when the module names do not
    match, e.g. an adapter of the llava-layout AF3 on the transformers one, and then changes
    nothing), and its LoRA B matrices are not all zero (an untrained adapter is the base model)."""
    from peft.utils import get_peft_model_state_dict, load_peft_weights

    saved = load_peft_weights(adapter, device="cpu")
    expected = get_peft_model_state_dict(model)
    unloaded, missing = sorted(set(saved) - set(expected)), sorted(set(expected) - set(saved))
    if unloaded or missing:
        names = unloaded or missing

        def module(key: str) -> str:
            return key.split(".lora_")[0].removeprefix("base_model.model.")

        shown = sorted({module(k) for k in names})
        raise ValueError(
            f"adapter {adapter!r} does not fit the model: {len(unloaded)} of its {len(saved)} weights name no module "
            f"of the model and {len(missing)} of the model's adapter weights get none (e.g. {shown[:4]}). It was "
            "saved for another layout of the model (the llava-layout AF3 names its language model 'llm.', the "
            "transformers one 'language_model.'): convert its keys, or train it on this model"
        )
    lora_b = {k: v for k, v in saved.items() if ".lora_B." in k or k.endswith("lora_B.weight")}
    if lora_b and all(not torch.any(v) for v in lora_b.values()):
        raise ValueError(
            f"adapter {adapter!r}: all {len(lora_b)} LoRA B matrices are zero, so it changes nothing (an untrained "
            "adapter: the results would be the base model's, labelled as the adapted one); point at the trained one"
        )
