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
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cuealign.audio import load_model_audio
from cuealign.backends.registry import family as family_of
from cuealign.backends.transformers_alm import TransformersALM
from cuealign.interventions import SILENCE, Condition
from cuealign.runlog import PROGRESS
from cuealign.tokens import TokensMeta

log = logging.getLogger(__name__)
progress_log = logging.getLogger(PROGRESS)  # shown on the terminal by cuealign.runlog

# Conditions a model can be trained under: the token block absent or the utterance's own, with
# the audio or (tokens_only) with silence of the same length, which makes the text channel carry
# the answer alone (a model trained with the audio always there can learn to ignore the tokens).
TRAINABLE_CONDITIONS = ("none", "aligned", "tokens_only")
LOG_COLUMNS = ["step", "epoch", "loss", "accuracy", "learning_rate", "seconds"]


@dataclass
class Example:
    """One (utterance, condition): the audio prefix's inputs and the ids after it."""

    utt_id: str
    condition: str
    label: int  # index into the sorted labels
    prefix: dict  # the processor's tensors for system + audio + instruction (batch of 1)
    suffix_ids: list[int]  # cue block + end of turn + assistant header
    label_ids: list[int]


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
    return prompt_table(tokens, manifest, meta, conditions=chosen, prompt=prompt, split=split)


def build_examples(alm: TransformersALM, prompts: pd.DataFrame, labels: list[str]) -> list[Example]:
    """Every prompt row as model inputs; each utterance's audio is read and featurised once."""
    examples = []
    for (utt_id, kind), rows in prompts.groupby(["utt_id", "audio"], sort=True):
        first = rows.iloc[0]
        audio, _ = load_model_audio(
            first["path"], rate=alm.sampling_rate, window_s=alm.window_s, silence=kind == SILENCE
        )
        prefix, tail = alm.prefix_inputs(audio, first["prefix_text"])
        for row in rows.itertuples():
            examples.append(
                Example(
                    utt_id=utt_id,
                    condition=row.condition,
                    label=labels.index(row.label),
                    prefix=prefix,
                    suffix_ids=alm.ids(row.suffix_text + tail),
                    label_ids=alm.ids(row.label),
                )
            )
    return examples


def collate(examples: list[Example], pad_id: int) -> tuple[dict, list[torch.Tensor], list[torch.Tensor]]:
    """Right-padded model inputs, and per example the positions whose logits predict its label
    tokens and those tokens."""
    sequences = [e.prefix["input_ids"][0].tolist() + e.suffix_ids + e.label_ids for e in examples]
    width = max(map(len, sequences))
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    positions, targets = [], []
    for row, (example, sequence) in enumerate(zip(examples, sequences, strict=True)):
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        attention_mask[row, : len(sequence)] = 1
        start = len(sequence) - len(example.label_ids)
        positions.append(torch.arange(start - 1, len(sequence) - 1))
        targets.append(torch.tensor(example.label_ids))
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    for key in examples[0].prefix:
        if key not in inputs:
            inputs[key] = torch.cat([e.prefix[key] for e in examples])
    return inputs, positions, targets


def epoch_plan(examples: list[Example], mix: dict[str, float], rng: np.random.Generator) -> list[Example]:
    """One example per utterance, its condition drawn with ``mix``'s weights, in random order."""
    names = [name for name in TRAINABLE_CONDITIONS if mix.get(name, 0) > 0]
    weights = np.array([mix[name] for name in names], dtype=float)
    by_key = {(e.utt_id, e.condition): e for e in examples}
    utterances = sorted({e.utt_id for e in examples})
    drawn = rng.choice(len(names), size=len(utterances), p=weights / weights.sum())
    chosen = [by_key[(utt, names[k])] for utt, k in zip(utterances, drawn, strict=True)]
    return [chosen[i] for i in rng.permutation(len(chosen))]


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
) -> pd.DataFrame:
    """Train ``alm.model`` in place (its trainable parameters); one log row per step."""
    from transformers import get_cosine_schedule_with_warmup

    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 0xF17E])
    model = alm.model
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len({e.utt_id for e in examples}) / batch_size)
    total = steps_per_epoch * epochs
    schedule = get_cosine_schedule_with_warmup(optimiser, int(warmup_fraction * total), total)
    rows = []
    step = 0
    start = time.perf_counter()
    model.train()
    try:
        for epoch in range(epochs):
            plan = epoch_plan(examples, mix, rng)
            for first in range(0, len(plan), batch_size):
                batch = plan[first : first + batch_size]
                inputs, positions, targets = collate(batch, alm.pad_id)
                inputs = {k: v.to(alm.device) for k, v in inputs.items()}
                logits = model(**inputs).logits
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                token_logprobs = torch.cat(
                    [
                        logprobs[row, pos.to(alm.device), tgt.to(alm.device)]
                        for row, (pos, tgt) in enumerate(zip(positions, targets, strict=True))
                    ]
                )
                loss = -token_logprobs.mean()
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                optimiser.step()
                schedule.step()
                step += 1
                accuracy = np.nan
                if label_first_tokens is not None:  # how score mode would answer, on this batch
                    first_logits = torch.stack([logprobs[row, pos[0]] for row, pos in enumerate(positions)])
                    guesses = first_logits[:, label_first_tokens].argmax(dim=-1).cpu().numpy()
                    accuracy = float(np.mean(guesses == np.array([e.label for e in batch])))
                rows.append(
                    {
                        "step": step,
                        "epoch": epoch + 1,
                        "loss": loss.item(),
                        "accuracy": accuracy,
                        "learning_rate": schedule.get_last_lr()[0],
                        "seconds": time.perf_counter() - start,
                    }
                )
                if progress is not None:
                    progress(rows, total, steps_per_epoch=steps_per_epoch, epochs=epochs)
    finally:
        model.eval()
    return pd.DataFrame(rows, columns=LOG_COLUMNS)


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


def evaluate(alm: TransformersALM, examples: list[Example], label_first_tokens: list[int]) -> tuple[float, np.ndarray]:
    """The mean cross-entropy of the label tokens (nats per token, as the training loss) and score
    mode's answer (the index of the label whose first token is likeliest) for each example."""
    answers, losses = [], []
    alm.model.eval()
    with torch.inference_mode():
        for first in range(0, len(examples), 16):
            batch = examples[first : first + 16]
            inputs, positions, targets = collate(batch, alm.pad_id)
            logits = alm.model(**{k: v.to(alm.device) for k, v in inputs.items()}).logits
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
        from cuealign.backends.tiny import build_tiny_alm

        arch = spec["architecture"]
        path = str(
            build_tiny_alm(
                spec["family"],
                workdir / "init",
                texts,
                hidden=arch["hidden_size"],
                layers=arch["layers"],
                vocab_size=arch["vocab_size"],
                seed=spec["seed"],
            )
        )
    alm = TransformersALM(
        path, family=family, device=spec["device"], dtype=spec["dtype"], allow_pickle=spec.get("allow_pickle", False)
    )
    if spec["method"] == "lora":
        from peft import LoraConfig, get_peft_model

        lora = spec["lora"]
        config = LoraConfig(
            r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], target_modules=lora["target_modules"]
        )
        alm.model = get_peft_model(alm.model, config)
    return alm


def finetune(
    spec: dict,
    *,
    tokens: pd.DataFrame,
    manifest: pd.DataFrame,
    meta: TokensMeta | dict,
    prompt: dict,
    out_dir: str | Path,
) -> tuple[pd.DataFrame, TransformersALM]:
    """Train as config: finetune.<name> (``spec``) says and save the result to ``out_dir``:
    the whole model and its processor (full) or the adapter (lora). Returns the training log and
    the trained model, ready to score."""
    torch.manual_seed(spec["seed"])
    mixed = [Condition(kind) for kind in TRAINABLE_CONDITIONS if spec["mix"].get(kind, 0) > 0]
    prompts = training_prompts(tokens, manifest, meta, prompt=prompt, split=spec["split"], conditions=mixed)
    labels = sorted(manifest.loc[manifest["status"] == "ok", "label"].unique())
    # The demo tokenizer learns its merges from every text the model will see, labels included.
    texts = sorted(set(prompts["prefix_text"]) | set(prompts["suffix_text"])) + labels
    with tempfile.TemporaryDirectory() as workdir:
        alm = load_for_training(spec, texts, Path(workdir))
        examples = build_examples(alm, prompts, labels)
        first_tokens = [alm.ids(label)[0] for label in labels]
        # with tokens where it was shown them, else audio only
        watched = "aligned" if spec["mix"].get("aligned", 0) > 0 else "none"
        validation_examples = _validation_examples(alm, tokens, manifest, meta, prompt, spec, labels, watched)
        before = evaluate(alm, validation_examples, first_tokens)[0] if validation_examples else None
        log.info(
            "%d train utterances of %d speakers, conditions %s, %d trainable parameters",
            prompts["utt_id"].nunique(),
            prompts["speaker"].nunique(),
            spec["mix"],
            sum(p.numel() for p in alm.model.parameters() if p.requires_grad),
        )
        history = train(
            alm,
            examples,
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
            after, answers = evaluate(alm, validation_examples, first_tokens)
            check_training(history, answers, labels, where="dev", validation=(before, after))
        else:
            shown = [e for e in examples if e.condition == watched]
            check_training(history, evaluate(alm, shown, first_tokens)[1], labels, where=f"train ({watched})")
        out_dir = Path(out_dir)
        alm.model.save_pretrained(out_dir)  # safetensors; a PEFT model saves its adapter only
        if spec["method"] == "full":
            alm.processor.save_pretrained(out_dir)
    return history, alm
