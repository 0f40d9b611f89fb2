"""The finetune stage: a model trained from scratch (the demo's way) and a LoRA adapter on a
pretrained model, each saved and reloaded through the inference backend."""

import numpy as np
import pandas as pd
import pytest
import torch

from cuealign.audio import load_model_audio
from cuealign.backends.loader import load_backend
from cuealign.backends.registry import check_finetune_spec
from cuealign.config import ConfigError, model_entries, validate_config
from cuealign.finetune import build_examples, collate, epoch_plan, finetune, training_prompts


def finetune_spec(**changes):
    config = validate_config(
        {
            "corpora": {"demo": {"type": "synthetic"}},
            "finetune": {"ft": {"corpus": "demo", "family": "qwen2-audio"} | changes},
        }
    )
    return config["finetune"]["ft"]


def test_scores(alm, study, labels, n=3):
    """Score mode's log-probs for the first test utterances under none and aligned."""
    prompts = training_prompts(study["tokens"], study["manifest"], study["meta"], prompt=study["prompt"], split="test")
    out = []
    for _, rows in list(prompts[prompts["audio"] == "original"].groupby("utt_id"))[:n]:
        audio, _ = load_model_audio(rows["path"].iloc[0], rate=16000, window_s=30, silence=False)
        out.append(alm.score(audio, rows["prefix_text"].iloc[0], list(rows["suffix_text"]), labels))
    return np.concatenate(out)


test_scores.__test__ = False  # a helper, not a test


def labels_of(study):
    return sorted(study["manifest"]["label"].unique())


def test_full_training_lowers_the_loss_and_the_saved_model_reloads_identically(tiny_study, tmp_path):
    spec = finetune_spec(epochs=6, learning_rate=3e-3, batch_size=4, mix={"none": 1, "aligned": 1, "tokens_only": 1})
    history, alm = finetune(spec, out_dir=tmp_path / "model", **tiny_study)
    train_utterances = (tiny_study["manifest"]["split"] == "train").sum()
    assert len(history) == 6 * int(np.ceil(train_utterances / 4))
    per_epoch = history.groupby("epoch")["loss"].mean()
    assert per_epoch.iloc[-1] < 0.7 * per_epoch.iloc[0]  # 5.8 -> 3.1 nats on this corpus
    assert history["accuracy"].between(0, 1).all()
    assert (tmp_path / "model/model.safetensors").is_file() and (tmp_path / "model/processor_config.json").is_file()

    entry = model_entries(validate_config({"corpora": {"demo": {"type": "synthetic"}}, "finetune": {"ft": spec}}))["ft"]
    reloaded = load_backend(entry | {"path": str(tmp_path / "model")})
    labels = labels_of(tiny_study)
    in_memory = test_scores(alm, tiny_study, labels)
    np.testing.assert_allclose(test_scores(reloaded, tiny_study, labels), in_memory, rtol=0, atol=1e-6)
    # the tokenizer was learnt from the prompts: the labels are single tokens
    assert all(len(alm.ids(label)) == 1 for label in labels)


def test_training_is_deterministic(tiny_study, tmp_path):
    spec = finetune_spec(epochs=1, learning_rate=1e-3, batch_size=8)
    first, _ = finetune(spec, out_dir=tmp_path / "a", **tiny_study)
    second, _ = finetune(spec, out_dir=tmp_path / "b", **tiny_study)
    pd.testing.assert_series_equal(first["loss"], second["loss"])
    assert (tmp_path / "a/model.safetensors").read_bytes() == (tmp_path / "b/model.safetensors").read_bytes()
    third, _ = finetune(spec | {"seed": 1}, out_dir=tmp_path / "c", **tiny_study)
    assert not np.allclose(first["loss"], third["loss"])


@pytest.mark.parametrize("family, fixture", [("qwen2-audio", "tiny_qwen2_audio"), ("qwen2.5-omni", "tiny_omni")])
def test_lora_trains_an_adapter_that_the_backend_loads(tiny_study, family, fixture, request, tmp_path):
    base_path = request.getfixturevalue(fixture)
    spec = finetune_spec(
        family=family,
        method="lora",
        base=str(base_path),
        epochs=2,
        learning_rate=1e-2,
        batch_size=8,
        lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
    )
    check_finetune_spec("ft", spec, ["demo"])
    history, alm = finetune(spec, out_dir=tmp_path / "adapter", **tiny_study)
    assert (tmp_path / "adapter/adapter_config.json").is_file()
    assert (tmp_path / "adapter/adapter_model.safetensors").is_file()
    assert not (tmp_path / "adapter/model.safetensors").exists()  # the adapter only, not the base
    trainable = sum(p.numel() for p in alm.model.parameters() if p.requires_grad)
    assert 0 < trainable < 0.2 * sum(p.numel() for p in alm.model.parameters())

    entry = model_entries(validate_config({"corpora": {"demo": {"type": "synthetic"}}, "finetune": {"ft": spec}}))["ft"]
    assert entry["path"] == str(base_path) and entry["adapter"].endswith("demo/ft/finetune/model")
    labels = labels_of(tiny_study)
    adapted = load_backend(entry | {"adapter": str(tmp_path / "adapter")})
    base = load_backend(entry | {"adapter": None})
    in_memory = test_scores(alm, tiny_study, labels)
    np.testing.assert_allclose(test_scores(adapted, tiny_study, labels), in_memory, rtol=0, atol=1e-6)
    assert np.abs(test_scores(base, tiny_study, labels) - in_memory).max() > 1e-3  # the adapter does something


def test_examples_are_the_probed_inputs(tiny_study, tiny_qwen2_audio):
    """Training sees the backend's own prefix and suffix ids; the loss reads the label's tokens."""
    alm = load_backend(
        {
            "family": "qwen2-audio",
            "path": str(tiny_qwen2_audio),
            "device": "cpu",
            "dtype": "float32",
            "trust_remote_code": False,
        }
    )
    prompts = training_prompts(
        tiny_study["tokens"], tiny_study["manifest"], tiny_study["meta"], prompt=tiny_study["prompt"], split="train"
    )
    assert set(prompts["condition"]) == {"none", "aligned", "tokens_only"}
    assert set(prompts["split"]) == {"train"}
    labels = labels_of(tiny_study)
    first_utterance = prompts[prompts["utt_id"] == prompts["utt_id"].min()]
    examples = build_examples(alm, first_utterance, labels)
    assert len(examples) == 3
    inputs, positions, targets = collate(examples, alm.pad_id)
    for row, example in enumerate(examples):
        prompt = first_utterance[first_utterance["condition"] == example.condition].iloc[0]
        audio, _ = load_model_audio(prompt["path"], rate=16000, window_s=30, silence=example.condition == "tokens_only")
        prefix = alm.encode_prefix(audio, prompt["prefix_text"])
        expected = prefix.ids[0].tolist() + alm.ids(prompt["suffix_text"] + prefix.tail) + alm.ids(prompt["label"])
        assert inputs["input_ids"][row, : len(expected)].tolist() == expected
        assert inputs["attention_mask"][row].sum() == len(expected)
        assert (
            inputs["input_ids"][row, positions[row] + 1].tolist() == targets[row].tolist() == alm.ids(prompt["label"])
        )
    silent = [e for e in examples if e.condition == "tokens_only"][0]
    assert not torch.equal(silent.prefix["input_features"], examples[0].prefix["input_features"])


def test_each_epoch_shows_every_utterance_once_under_the_mix(tiny_study, tiny_qwen2_audio):
    from cuealign.finetune import Example

    examples = [Example(f"u{u}", c, 0, {}, [], []) for u in range(200) for c in ("none", "aligned", "tokens_only")]
    rng = np.random.default_rng(0)
    plan = epoch_plan(examples, {"none": 3, "aligned": 1}, rng)
    assert sorted(e.utt_id for e in plan) == sorted(f"u{u}" for u in range(200))
    shares = pd.Series([e.condition for e in plan]).value_counts(normalize=True)
    assert set(shares.index) == {"none", "aligned"} and 0.65 < shares["none"] < 0.85


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"method": "lora"}, "method lora trains an adapter on a pretrained model; set base"),
        ({"corpus": "elsewhere"}, "finetune.ft.corpus 'elsewhere' is not in corpora"),
        ({"mix": {"none": 0}}, "gives every condition weight 0"),
        ({"base": "/nowhere/model"}, "finetune.ft.base '/nowhere/model' does not exist"),
        ({"family": "gpt"}, "model family 'gpt' is not in the registry"),
    ],
)
def test_bad_finetune_config_is_an_error_naming_the_key(changes, message):
    spec = finetune_spec() | changes
    with pytest.raises(ValueError, match=message):
        check_finetune_spec("ft", spec, ["demo"])


def test_finetune_config_keys_are_checked():
    with pytest.raises(ConfigError, match=r"finetune.ft.mix: Additional properties .*conflict"):
        finetune_spec(mix={"conflict": 1})
    with pytest.raises(ConfigError, match="also in models"):
        model_entries(
            validate_config(
                {
                    "corpora": {"demo": {"type": "synthetic"}},
                    "models": {"ft": {"family": "qwen2-audio", "path": "x"}},
                    "finetune": {"ft": {"corpus": "demo", "family": "qwen2-audio"}},
                }
            )
        )


def _history(losses_by_epoch):
    rows = [
        {"step": i + 1, "epoch": epoch, "loss": loss, "accuracy": 0.5, "learning_rate": 1e-3, "seconds": float(i)}
        for i, (epoch, loss) in enumerate((e + 1, loss) for e, losses in enumerate(losses_by_epoch) for loss in losses)
    ]
    return pd.DataFrame(rows)


def test_a_model_that_did_not_learn_is_warned_about(caplog):
    from cuealign.finetune import check_training

    labels = ["angry", "happy", "neutral", "sad"]
    healthy = check_training(_history([[1.4, 1.3], [0.6, 0.5]]), np.array([0, 1, 2, 3] * 4), labels, where="train")
    assert healthy == []
    flat = check_training(_history([[1.39, 1.38], [1.37, 1.38]]), np.array([0, 1, 2, 3] * 4), labels, where="train")
    assert (
        len(flat) == 1
        and "training loss did not fall (epoch 1: 1.385, epoch 2: 1.375; the corpus has no dev split" in flat[0]
    )
    collapsed = check_training(_history([[1.4], [0.9]]), np.array([2] * 63 + [1]), labels, where="train")
    assert len(collapsed) == 1 and "collapsed to one class: 'neutral' for 63 of 64 train examples" in collapsed[0]
    assert "fine-tuning: its answers collapsed" in caplog.text
    # with a dev split, the validation loss before and after training decides
    unlearnt = check_training(_history([[1.4], [0.2]]), np.arange(16) % 4, labels, where="dev", validation=(1.39, 1.35))
    assert len(unlearnt) == 1 and "validation loss on the dev split did not fall (before training 1.390" in unlearnt[0]
    assert check_training(_history([[1.4], [1.4]]), np.arange(16) % 4, labels, where="dev", validation=(1.4, 0.7)) == []


def test_progress_lines_reach_the_terminal_and_the_log(tmp_path, capfd):
    import logging

    from cuealign.runlog import PROGRESS, log_to

    with log_to(tmp_path / "logs" / "demo" / "job.log"):
        logging.getLogger(PROGRESS).info("epoch 1/2: loss 0.5")
        logging.getLogger("cuealign.other").info("detail for the log only")
    terminal = capfd.readouterr().err
    assert "epoch 1/2: loss 0.5" in terminal and "detail for the log only" not in terminal
    written = (tmp_path / "logs" / "demo" / "job.log").read_text()
    assert "epoch 1/2: loss 0.5" in written and "detail for the log only" in written


def test_a_dev_split_validates_the_training_and_an_unlearnt_model_is_named(tiny_study, tmp_path, caplog):
    study = dict(tiny_study)
    manifest = study["manifest"].copy()
    manifest.loc[manifest["split"] == "test", "split"] = "dev"  # the held-out speakers as a dev split
    study["manifest"] = manifest
    spec = finetune_spec(epochs=1, learning_rate=1e-7, batch_size=8)  # far too little to learn anything
    finetune(spec, out_dir=tmp_path / "m", **study)
    assert "validation loss on the dev split did not fall" in caplog.text
