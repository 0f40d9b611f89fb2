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

import logging
import threading
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoProcessor, DynamicCache, Qwen2AudioProcessor

from cuealign.models.devices import resolve_device
from cuealign.models.prefix import Prefix, PrefixEncoding, Prepared, logits_at, on_model, returned_cache
from cuealign.models.registry import GREEDY_DECODING, Family, model_folder
from cuealign.models.weights import DTYPES, damaged_weights, load_error, loaded_dtype

log = logging.getLogger(__name__)

LABEL_VARIANTS = ("exact", "case")


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
    if processor.chat_template is None or (family.own_template and not has_own_template(path, options)):
        raise ValueError(
            f"model {path!r} has no chat template of its own (chat_template.jinja, chat_template.json, or "
            f"chat_template in tokenizer_config.json or processor_config.json)"
            + (
                f": family {family.name}'s processor would prompt it in Qwen2-Audio's format without a word"
                if family.own_template
                else ""
            )
            + "; copy the template of the checkpoint it was trained from into the folder"
        )
    return processor


def has_own_template(path: str, options: dict) -> bool:
    """Whether the model folder (or the cached hub snapshot) holds a chat template of its own."""
    import json

    folder = model_folder(path, options.get("revision"))
    if folder is None:
        return True  # not found locally: from_pretrained has already said so
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    for name in ("tokenizer_config.json", "processor_config.json"):
        try:
            if "chat_template" in json.loads((folder / name).read_text()):
                return True
        except (OSError, ValueError):
            continue
    return False


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


class TransformersALM(PrefixEncoding):
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
            load_non_lora_weights(model, adapter)
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

    def label_tokens(self, labels: list[str]) -> dict[str, list[str]]:
        """Each scored spelling of each label and the tokens it is scored as (for provenance)."""
        return {
            variant: self.tokenizer.convert_ids_to_tokens(self.ids(variant))
            for label in labels
            for variant in label_variants(label, self.label_variants)
        }

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
                    **self._cache_argument(self._cache(prefix, len(rows))),
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
                    returned_cache(out),
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
                    **self._cache_argument(branch),
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
        features = {k: v for k, v in prompt.items() if k not in ("input_ids", "attention_mask")}
        inputs = on_model(features, self.model, self.device)
        scores = []
        for label in (v for vs in spellings for v in vs):
            label_ids = self.ids(label)
            ids = torch.cat([prompt_ids, torch.tensor([label_ids])], dim=1).to(self.device)
            first = prompt_ids.shape[1] - 1  # the positions that predict the label's tokens
            with torch.inference_mode(), logits_at(self.model, first, first + len(label_ids)):
                logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), **inputs).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)[0].cpu()
            scores.append(float(logprobs[torch.arange(len(label_ids)), torch.tensor(label_ids)].sum()))
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
                **self._cache_argument(cache),
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
                    **self._cache_argument(returned_cache(result)),
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
                **self._cache_argument(self._cache(prefix, 1)),
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


NON_LORA = "non_lora_trainables.bin"


def load_non_lora_weights(model, adapter: str) -> None:
    """An adapter folder laid out as Audio Flamingo 3's think adapter (nvidia/audio-flamingo-3-hf,
    think/): besides the LoRA weights, non_lora_trainables.bin holds weights trained in full, put
    into the base model before the adapter. Read with torch.load(weights_only=True) (tensors only: a
    pickle that would run code is refused); every name must be one of the model's (the published
    loaders pass strict=False, which drops a mismatched name without a word)."""
    import pickle

    file = Path(adapter) / NON_LORA
    if not file.is_file():
        return
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{file}: holds more than tensors (its pickle would run code when loaded, {exc})") from None
    own = model.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{file}: not a state dict of tensors")
    if foreign := [name for name in state if name not in own]:
        raise ValueError(
            f"{file}: {len(foreign)} of its {len(state)} weights name no parameter of the model (e.g. {foreign[:3]}; "
            f"the model's are named like {list(own)[:2]}): saved for another layout of the model, so loading it "
            "would change nothing; convert its names, or use the adapter of this layout"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)
    log.info("%s: %d weights trained in full put into the base model before the adapter", file, len(state))


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
