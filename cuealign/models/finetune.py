"""Fine-tuning an audio-language model on a corpus' train split, with or without concept tokens.

One loop for both ways the study needs:
  full   every weight trained: a small model of a registry family initialised from a config
         (the offline demo), or a pretrained model from a local folder;
  lora   a PEFT LoRA adapter on a pretrained model from a local folder (the GPU use case: the
         paper's fine-tuned ALMs with and without tokens).

Training examples are built by the inference backend itself (TransformersALM.prefix_inputs and
its tokenisation of prefix + suffix + label), so the model learns from exactly the inputs it is
later probed with. The loss is the cross-entropy of the label's tokens after the prompt: the
quantity score mode reads back. Each epoch every train utterance appears once, under a condition
drawn from ``mix`` (e.g. half audio only, half with aligned tokens); every draw is seeded.

At the paper's scale (IEMOCAP: ~4,300 train utterances, a 7B model, hours on a GPU): examples are
featurised lazily, batch by batch (memory O(batch), not O(corpus): the mel features alone of 4,300
utterances are 6.6 GB); gradients can be accumulated over micro-batches (the loss is the mean over
all of a step's label tokens, as one large batch would give); bf16 autocast on a GPU; and a
checkpoint every N steps (trainable weights, optimiser, schedule, RNG, log) from which a killed
job (a SLURM time limit) resumes to the model an uninterrupted run would have made.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cuealign.cache import content_key
from cuealign.corpora.audio import load_model_audio
from cuealign.interventions import SILENCE, Condition
from cuealign.models.prefix import on_model, padded_cat
from cuealign.models.registry import family as family_of
from cuealign.models.registry import finetune_dtype
from cuealign.models.transformers_alm import TransformersALM
from cuealign.runlog import PROGRESS
from cuealign.tokens import TokensMeta

log = logging.getLogger(__name__)
progress_log = logging.getLogger(PROGRESS)  # shown on the terminal by cuealign.runlog

# Conditions a model can be trained under: the token block absent or the utterance's own, with
# the audio or (tokens_only) with silence of the same length, which makes the text channel carry
# the answer alone (a model trained with the audio always there can learn to ignore the tokens).
TRAINABLE_CONDITIONS = ("none", "aligned", "tokens_only")
LOG_COLUMNS = ["step", "epoch", "loss", "accuracy", "learning_rate", "seconds"]


@dataclass(frozen=True)
class Example:
    """One (utterance, condition), as text and a path: featurised only when its batch runs."""

    utt_id: str
    condition: str
    label: int  # index into the sorted labels
    path: str
    silence: bool  # tokens_only: silence of the utterance's length instead of its audio
    prefix_text: str
    suffix_text: str
    label_text: str


def training_prompts(
    tokens: pd.DataFrame,
    manifest: pd.DataFrame,
    meta: TokensMeta | dict,
    *,
    prompt: dict,
    split: str,
    conditions: list[Condition] | None = None,
) -> pd.DataFrame:
    """The ``split``'s utterances under ``conditions`` (every trainable one by default), as the
    prompts stage writes them."""
    from cuealign.prompts import prompt_table

    chosen = conditions if conditions is not None else [Condition(kind) for kind in TRAINABLE_CONDITIONS]
    # trained on the main wording (prompt.variants are other wordings to probe it with)
    main = {key: value for key, value in prompt.items() if key != "variants"}
    return prompt_table(tokens, manifest, meta, conditions=chosen, prompt=main, split=split)


def build_examples(alm: TransformersALM, prompts: pd.DataFrame, labels: list[str]) -> list[Example]:
    """Every prompt row as an example (no audio is read here)."""
    return [
        Example(
            utt_id=row.utt_id,
            condition=row.condition,
            label=labels.index(row.label),
            path=row.path,
            silence=row.audio == SILENCE,
            prefix_text=row.prefix_text,
            suffix_text=row.suffix_text,
            label_text=row.label,
        )
        for row in prompts.sort_values(["utt_id", "audio"], kind="stable").itertuples()
    ]


class FeatureCache:
    """Featurised audio prefixes kept between epochs, least recently used first out, within a
    memory budget (a 30 s Whisper window is 1.5 MB whatever the clip's length): a small train set
    is featurised once, a large one costs at most the budget, never memory in proportion to it."""

    def __init__(self, budget_mb: float):
        self.budget, self.used = int(budget_mb * 2**20), 0
        self.entries: OrderedDict[tuple, tuple[dict, str]] = OrderedDict()

    def get(self, key: tuple) -> tuple[dict, str] | None:
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        return None

    @staticmethod
    def size(tensors: dict) -> int:
        return sum(t.untyped_storage().nbytes() for t in tensors.values())

    def put(self, key: tuple, value: tuple[dict, str]) -> tuple[dict, str]:
        """Keep ``value`` (copied: the processor's tensors can be views of larger buffers, such
        as the feature mask of a 1.9 MB array) and return what is kept."""
        tensors = {name: t.clone() for name, t in value[0].items()}
        size = self.size(tensors)
        if size > self.budget:
            return value
        self.entries[key] = tensors, value[1]
        self.used += size
        while self.used > self.budget:
            _, (old, _) = self.entries.popitem(last=False)
            self.used -= self.size(old)
        return self.entries.get(key, value)


def featurise(
    alm: TransformersALM, example: Example, cache: FeatureCache | None = None
) -> tuple[dict, list[int], list[int]]:
    """The backend's own inputs for an example: the processor's tensors of system + audio +
    instruction, the ids of suffix + end of turn + assistant header, and the label's ids."""
    key = (example.path, example.silence, example.prefix_text)
    found = cache.get(key) if cache is not None else None
    if found is None:
        audio, _ = load_model_audio(
            example.path, rate=alm.sampling_rate, window_s=alm.window_s, silence=example.silence
        )
        found = alm.prefix_inputs(audio, example.prefix_text)
        if cache is not None:
            found = cache.put(key, found)
    prefix, tail = found
    return prefix, alm.ids(example.suffix_text + tail), alm.ids(example.label_text)


def collate(
    alm: TransformersALM, examples: list[Example], cache: FeatureCache | None = None
) -> tuple[dict, list[torch.Tensor], list[torch.Tensor]]:
    """Right-padded model inputs of a batch (featurised now, or found in ``cache``), and per
    example the positions whose logits predict its label tokens and those tokens."""
    featurised = [featurise(alm, e, cache) for e in examples]
    sequences = [prefix["input_ids"][0].tolist() + suffix + label for prefix, suffix, label in featurised]
    width = max(map(len, sequences))
    input_ids = torch.full((len(examples), width), alm.pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    positions, targets = [], []
    for row, ((_, _, label), sequence) in enumerate(zip(featurised, sequences, strict=True)):
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        attention_mask[row, : len(sequence)] = 1
        start = len(sequence) - len(label)
        positions.append(torch.arange(start - 1, len(sequence) - 1))
        targets.append(torch.tensor(label))
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    for key in featurised[0][0]:
        if key not in inputs:  # audio features (and masks): zero-padded where clips differ
            inputs[key] = padded_cat([prefix[key] for prefix, _, _ in featurised])
    return inputs, positions, targets


class Checkpoint:
    """The training state every ``every`` optimiser steps in ``folder``, written atomically (a
    kill mid-write leaves the previous one), keyed by what is trained (``key``): a checkpoint of
    another configuration or train set is ignored, with a log line."""

    def __init__(self, folder: str | Path, every: int, key: str):
        self.folder, self.every, self.key = Path(folder), every, key
        self.file = self.folder / "state.pt"

    def save(self, model, optimiser, schedule, step: int, rows: list[dict]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {
            "key": self.key,
            "step": step,
            "rows": rows,
            "weights": {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad},
            "optimiser": optimiser.state_dict(),
            "schedule": schedule.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        partial = self.file.with_suffix(".partial")
        torch.save(state, partial)
        os.replace(partial, self.file)
        log.info("checkpoint at step %d: %s", step, self.file)

    def restore(self, model, optimiser, schedule) -> tuple[int, list[dict]]:
        """(steps done, their log rows): 0 and [] when there is no checkpoint of this training."""
        if not self.file.is_file():
            return 0, []
        state = torch.load(self.file, map_location="cpu", weights_only=True)
        if state.get("key") != self.key:
            log.info("%s is of another training (config or train set changed); starting from step 0", self.file)
            return 0, []
        named = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in state["weights"].items():
                named[name].copy_(value.to(named[name].device))
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        progress_log.info("fine-tuning resumes from its checkpoint at step %d (%s)", state["step"], self.file)
        return int(state["step"]), list(state["rows"])

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def epoch_plan(examples: list[Example], mix: dict[str, float], rng: np.random.Generator) -> list[Example]:
    """One example per utterance, its condition drawn with ``mix``'s weights, in random order."""
    names = [name for name in TRAINABLE_CONDITIONS if mix.get(name, 0) > 0]
    weights = np.array([mix[name] for name in names], dtype=float)
    by_key = {(e.utt_id, e.condition): e for e in examples}
    utterances = sorted({e.utt_id for e in examples})
    drawn = rng.choice(len(names), size=len(utterances), p=weights / weights.sum())
    chosen = [by_key[(utt, names[k])] for utt, k in zip(utterances, drawn, strict=True)]
    return [chosen[i] for i in rng.permutation(len(chosen))]


def autocast(device: torch.device, mixed_precision: str):
    """bf16 autocast where asked (auto: on a GPU), else a no-op context."""
    wanted = mixed_precision == "bf16" or (mixed_precision == "auto" and device.type == "cuda")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=wanted)


def train(
    alm: TransformersALM,
    examples: list[Example],
    *,
    mix: dict[str, float],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    warmup_fraction: float = 0.1,
    seed: int = 0,
    label_first_tokens: list[int] | None = None,
    progress=None,
    accumulation: int = 1,
    mixed_precision: str = "none",
    checkpoint: Checkpoint | None = None,
    features: FeatureCache | None = None,
) -> pd.DataFrame:
    """Train ``alm.model`` in place (its trainable parameters); one log row per optimiser step of
    ``batch_size`` x ``accumulation`` utterances. With ``checkpoint``, the state is saved every
    checkpoint.every steps and a run finds the last one and goes on from there."""
    from transformers import get_cosine_schedule_with_warmup

    torch.manual_seed(seed)
    model = alm.model
    parameters = [p for p in model.parameters() if p.requires_grad]
    # On CPU the fused step: its square root is the CPU's own IEEE instruction. The unfused step's
    # goes through MKL's vector math, whose last bits differ between CPU makers even in MKL's
    # reproducible mode, and grow through training (docs/findings.md, "The same bits on every CPU").
    fused = True if alm.device.type == "cpu" else None
    optimiser = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay, fused=fused)
    per_step = batch_size * accumulation
    steps_per_epoch = math.ceil(len({e.utt_id for e in examples}) / per_step)
    total = steps_per_epoch * epochs
    schedule = get_cosine_schedule_with_warmup(optimiser, int(warmup_fraction * total), total)
    step, rows = checkpoint.restore(model, optimiser, schedule) if checkpoint else (0, [])
    start = time.perf_counter() - (rows[-1]["seconds"] if rows else 0.0)
    model.train()
    try:
        for epoch in range(epochs):
            # each epoch's draws from its own seed, so a resumed run draws what an unbroken one does
            plan = epoch_plan(examples, mix, np.random.default_rng([seed, 0xF17E, epoch]))
            for index, first in enumerate(range(0, len(plan), per_step)):
                if epoch * steps_per_epoch + index < step:
                    continue  # done before the checkpoint
                batch = plan[first : first + per_step]
                optimiser.zero_grad()
                loss_sum, guesses = _backward(alm, batch, batch_size, features, mixed_precision, label_first_tokens)
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                optimiser.step()
                schedule.step()
                step += 1
                accuracy = float(np.mean(np.array(guesses) == [e.label for e in batch])) if guesses else np.nan
                rows.append(
                    {
                        "step": step,
                        "epoch": epoch + 1,
                        "loss": loss_sum,
                        "accuracy": accuracy,
                        "learning_rate": schedule.get_last_lr()[0],
                        "seconds": time.perf_counter() - start,
                    }
                )
                if progress is not None:
                    progress(rows, total, steps_per_epoch=steps_per_epoch, epochs=epochs)
                if checkpoint and checkpoint.every and step % checkpoint.every == 0 and step < total:
                    checkpoint.save(model, optimiser, schedule, step, rows)
    finally:
        model.eval()
    return pd.DataFrame(rows, columns=LOG_COLUMNS)


def _backward(alm, batch: list[Example], batch_size: int, features, mixed_precision: str, label_first_tokens):
    """One optimiser step's gradients, micro-batch by micro-batch: the loss is the mean over the
    step's label tokens, whatever the split into micro-batches. Returns the step's loss and (with
    ``label_first_tokens``) how score mode would answer each of its utterances."""
    tokens = sum(len(alm.ids(e.label_text)) for e in batch)
    loss_sum, guesses = 0.0, []
    for part in (batch[i : i + batch_size] for i in range(0, len(batch), batch_size)):
        inputs, positions, targets = collate(alm, part, features)
        inputs = on_model(inputs, alm.model, alm.device)
        with autocast(alm.device, mixed_precision):
            logits = alm.model(**inputs).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        token_logprobs = torch.cat(
            [
                logprobs[row, pos.to(alm.device), tgt.to(alm.device)]
                for row, (pos, tgt) in enumerate(zip(positions, targets, strict=True))
            ]
        )
        loss = -token_logprobs.sum() / tokens
        loss.backward()
        loss_sum += loss.item()
        if label_first_tokens is not None:  # how score mode would answer, on this batch
            first_logits = torch.stack([logprobs[row, pos[0]] for row, pos in enumerate(positions)])
            guesses += first_logits[:, label_first_tokens].argmax(dim=-1).cpu().tolist()
        del logits, logprobs, loss
    return loss_sum, guesses


def _progress(rows: list[dict], total: int, *, steps_per_epoch: int, epochs: int) -> None:
    row = rows[-1]
    if row["step"] == 1 or row["step"] % 10 == 0 or row["step"] == total:
        log.info(
            "step %d/%d (epoch %d): loss %.3f, batch accuracy %.2f, %.0f s",
            row["step"],
            total,
            row["epoch"],
            row["loss"],
            row["accuracy"],
            row["seconds"],
        )
    if row["step"] % steps_per_epoch == 0 or row["step"] == total:  # an epoch ends: say so on the terminal
        epoch = [r for r in rows if r["epoch"] == row["epoch"]]
        progress_log.info(
            "epoch %d/%d: mean loss %.3f, mean batch accuracy %.2f, %.0f s",
            row["epoch"],
            epochs,
            float(np.mean([r["loss"] for r in epoch])),
            float(np.mean([r["accuracy"] for r in epoch])),
            row["seconds"],
        )


def check_training(
    history: pd.DataFrame,
    predictions: np.ndarray,
    labels: list[str],
    *,
    where: str,
    validation: tuple[float, float] | None = None,
) -> list[str]:
    """Warnings for a model that did not learn: its validation loss (before and after training,
    where a dev split gives one; else the training loss, first epoch against last) did not fall
    below 95 % of where it started, or its answers on ``where`` collapsed to one class (95 % or
    more). Each is logged as a warning on the terminal too."""
    warnings = []
    if validation is not None:
        before, after = validation
        if not after < 0.95 * before:
            warnings.append(
                f"the validation loss on the dev split did not fall (before training {before:.3f}, after "
                f"{after:.3f}): the model has probably not learnt; raise epochs or learning_rate, or check "
                "that the train split is large enough"
            )
    else:
        by_epoch = history.groupby("epoch")["loss"].mean()
        if len(by_epoch) >= 2 and not by_epoch.iloc[-1] < 0.95 * by_epoch.iloc[0]:
            warnings.append(
                f"the training loss did not fall (epoch 1: {by_epoch.iloc[0]:.3f}, epoch {by_epoch.index[-1]}: "
                f"{by_epoch.iloc[-1]:.3f}; the corpus has no dev split to validate on): the model has probably "
                "not learnt; raise epochs or learning_rate, or check that the train split is large enough"
            )
    if len(predictions):
        values, counts = np.unique(predictions, return_counts=True)
        top = int(np.argmax(counts))
        if counts[top] >= 0.95 * len(predictions) and len(labels) > 1:
            warnings.append(
                f"its answers collapsed to one class: {labels[int(values[top])]!r} for "
                f"{counts[top]} of {len(predictions)} {where} examples; its UAR will sit at chance whatever the "
                "tokens say. Train longer, or on more utterances"
            )
    for warning in warnings:
        progress_log.warning("fine-tuning: %s", warning)
    return warnings


def evaluate(
    alm: TransformersALM, examples: list[Example], label_first_tokens: list[int], features: FeatureCache | None = None
) -> tuple[float, np.ndarray]:
    """The mean cross-entropy of the label tokens (nats per token, as the training loss) and score
    mode's answer (the index of the label whose first token is likeliest) for each example."""
    answers, losses = [], []
    alm.model.eval()
    with torch.inference_mode():
        for first in range(0, len(examples), 16):
            batch = examples[first : first + 16]
            inputs, positions, targets = collate(alm, batch, features)
            logits = alm.model(**on_model(inputs, alm.model, alm.device)).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            for row, (pos, tgt) in enumerate(zip(positions, targets, strict=True)):
                losses += (-logprobs[row, pos.to(alm.device), tgt.to(alm.device)]).cpu().tolist()
            first_logits = torch.stack([logits[row, pos[0]] for row, pos in enumerate(positions)])
            answers += first_logits[:, label_first_tokens].argmax(dim=-1).cpu().tolist()
    return float(np.mean(losses)) if losses else float("nan"), np.array(answers, dtype=int)


def _validation_examples(alm, tokens, manifest, meta, prompt, spec, labels, condition) -> list[Example]:
    """The corpus' dev utterances under ``condition``, when it has a dev split that is not the one
    trained on (the validation loss is measured on them); none otherwise."""
    usable = manifest[manifest["status"] == "ok"]
    if spec["split"] in ("dev", "all") or not (usable["split"] == "dev").any():
        return []
    try:
        dev = training_prompts(tokens, manifest, meta, prompt=prompt, split="dev", conditions=[Condition(condition)])
    except ValueError as exc:  # e.g. a class the dev split lacks: validate on the training loss instead
        log.warning("no validation on the dev split: %s", exc)
        return []
    return build_examples(alm, dev, labels)


def load_for_training(spec: dict, texts: list[str], workdir: Path) -> TransformersALM:
    """The model to train: a pretrained one from spec['base'], or one initialised from
    spec['architecture'] (a tokenizer trained on ``texts``, random weights of the family's class)."""
    family = family_of(spec["family"])
    if spec["base"]:
        path = spec["base"]
    else:
        from cuealign.models.tiny import build_tiny_alm

        arch = spec["architecture"]
        path = str(
            build_tiny_alm(
                spec["family"],
                workdir / "init",
                texts,
                hidden=arch["hidden_size"],
                layers=arch["layers"],
                vocab_size=arch["vocab_size"],
                window_s=arch["audio_window_s"],
                seed=spec["seed"],
            )
        )
    alm = TransformersALM(
        path, family=family, device=spec["device"], dtype=finetune_dtype(spec), allow_pickle=spec["allow_pickle"]
    )
    if spec["method"] == "lora":
        from peft import LoraConfig, get_peft_model

        lora = spec["lora"]
        targets = lora["target_modules"]
        if lora["scope"] == "language_model":
            targets = language_model_targets(alm.model, targets)
        config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], target_modules=targets)
        alm.model = get_peft_model(alm.model, config)
    return alm


def language_model_targets(model, names: list[str]) -> str:
    """PEFT's target_modules (a regex matched against whole module names) for the modules called
    ``names`` inside the language model only: the audio encoders of all three families name their
    attention projections q_proj, k_proj, v_proj, o_proj too (in AF3 at r 16, ~3.9M of ~14.0M
    adapter parameters would otherwise sit in the encoder)."""
    import re

    decoder = model.get_decoder()
    prefix = next((name for name, module in model.named_modules() if module is decoder), None)
    if not prefix:
        raise ValueError(
            f"finetune: cannot find the language model inside {type(model).__name__} to put the LoRA adapter on; "
            "set finetune.<name>.lora.scope: everywhere to adapt every module named in target_modules"
        )
    return rf"{re.escape(prefix)}\..*\.({'|'.join(re.escape(name) for name in names)})"


def finetune(
    spec: dict,
    *,
    tokens: pd.DataFrame,
    manifest: pd.DataFrame,
    meta: TokensMeta | dict,
    prompt: dict,
    out_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
) -> tuple[pd.DataFrame, TransformersALM]:
    """Train as config: finetune.<name> (``spec``) says and save the result to ``out_dir``:
    the whole model and its processor (full) or the adapter (lora). Returns the training log and
    the trained model, ready to score. With ``checkpoint_dir``, a checkpoint every
    spec['checkpoint_every'] steps, resumed from when present and removed once the model is saved."""
    torch.manual_seed(spec["seed"])
    mixed = [Condition(kind) for kind in TRAINABLE_CONDITIONS if spec["mix"].get(kind, 0) > 0]
    prompts = training_prompts(tokens, manifest, meta, prompt=prompt, split=spec["split"], conditions=mixed)
    labels = sorted(manifest.loc[manifest["status"] == "ok", "label"].unique())
    # The demo tokenizer learns its merges from every text the model will see, labels included.
    texts = sorted(set(prompts["prefix_text"]) | set(prompts["suffix_text"])) + labels
    with tempfile.TemporaryDirectory() as workdir:
        alm = load_for_training(spec, texts, Path(workdir))
        examples = build_examples(alm, prompts, labels)
        features = FeatureCache(spec["feature_cache_mb"])
        first_tokens = [alm.ids(label)[0] for label in labels]
        # with tokens where it was shown them, else audio only
        watched = "aligned" if spec["mix"].get("aligned", 0) > 0 else "none"
        validation_examples = _validation_examples(alm, tokens, manifest, meta, prompt, spec, labels, watched)
        before = evaluate(alm, validation_examples, first_tokens, features)[0] if validation_examples else None
        log.info(
            "%d train utterances of %d speakers, conditions %s, %d trainable parameters",
            prompts["utt_id"].nunique(),
            prompts["speaker"].nunique(),
            spec["mix"],
            sum(p.numel() for p in alm.model.parameters() if p.requires_grad),
        )
        checkpoint = None
        if checkpoint_dir is not None and spec["checkpoint_every"]:
            trained = {
                k: v for k, v in spec.items() if k not in ("checkpoint_every", "probe", "known_training_overlap")
            }
            key = content_key({"spec": trained, "examples": [list(vars(e).values()) for e in examples]})
            checkpoint = Checkpoint(checkpoint_dir, spec["checkpoint_every"], key)
        history = train(
            alm,
            examples,
            checkpoint=checkpoint,
            features=features,
            accumulation=spec["gradient_accumulation"],
            mixed_precision=spec["mixed_precision"],
            mix=spec["mix"],
            epochs=spec["epochs"],
            batch_size=spec["batch_size"],
            learning_rate=spec["learning_rate"],
            weight_decay=spec["weight_decay"],
            warmup_fraction=spec["warmup_fraction"],
            seed=spec["seed"],
            label_first_tokens=[alm.ids(label)[0] for label in labels],
            progress=_progress,
        )
        # did it learn? on the dev split where the corpus has one, else on what it trained on
        if validation_examples:
            after, answers = evaluate(alm, validation_examples, first_tokens, features)
            check_training(history, answers, labels, where="dev", validation=(before, after))
        else:
            shown = [e for e in examples if e.condition == watched]
            check_training(history, evaluate(alm, shown, first_tokens, features)[1], labels, where=f"train ({watched})")
        out_dir = Path(out_dir)
        alm.model.save_pretrained(out_dir)  # safetensors; a PEFT model saves its adapter only
        if spec["method"] == "full":
            alm.processor.save_pretrained(out_dir)
        if checkpoint is not None:
            checkpoint.remove()
    return history, alm
