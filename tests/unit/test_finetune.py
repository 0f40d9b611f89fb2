"""The finetune stage: a model trained from scratch (the demo's way) and a LoRA adapter on a
pretrained model, each saved and reloaded through the inference backend."""

import numpy as np
import pandas as pd
import pytest
import torch

from cuealign.corpora.audio import load_model_audio
from cuealign.models.finetune import (
    Checkpoint,
    FeatureCache,
    build_examples,
    collate,
    epoch_plan,
    featurise,
    finetune,
    training_prompts,
)
from cuealign.models.loader import load_backend
from cuealign.models.registry import check_finetune_spec
from cuealign.workflow.config import ConfigError, model_entries, model_entry, validate_config

# A model initialised from scratch reads a 4 s window (the synthetic clips are 1.4-3.6 s long): the
# same training as at the released 30 s, about 8 times faster.
SMALL_WINDOW = {"architecture": {"audio_window_s": 4}}


def finetune_spec(**changes):
    entry = {"corpus": "demo", "family": "qwen2-audio"} | (SMALL_WINDOW if "base" not in changes else {}) | changes
    config = validate_config({"corpora": {"demo": {"type": "synthetic"}}, "finetune": {"ft": entry}})
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


@pytest.mark.parametrize("family", ["qwen2-audio", "qwen2.5-omni", "audio-flamingo-3"])
def test_lora_adapts_the_language_model_only_unless_asked(family, tmp_path):
    """The audio encoders name their attention projections as the language model does: the default
    scope puts the adapter on the language model's alone; scope everywhere on both."""
    from cuealign.models.finetune import load_for_training
    from cuealign.models.tiny import build_tiny_alm

    base = build_tiny_alm(family, tmp_path / family, ["angry happy neutral sad"])
    lora = {"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    adapted = {}
    for scope in ("language_model", "everywhere"):
        spec = finetune_spec(family=family, method="lora", base=str(base), lora=lora | {"scope": scope})
        model = load_for_training(spec, [], tmp_path).model
        adapted[scope] = {name.rsplit(".lora_A", 1)[0] for name, _ in model.named_modules() if name.endswith("lora_A")}
        decoder = model.get_base_model().get_decoder()
        layers = len(decoder.layers)
    in_audio = {name for name in adapted["everywhere"] if "audio" in name}
    assert in_audio and not any("audio" in name for name in adapted["language_model"])
    assert len(adapted["language_model"]) == 4 * layers  # every projection of every decoder layer
    assert adapted["language_model"] == adapted["everywhere"] - in_audio


def bfloat16_copy(model_path, out):
    """The model folder with its weights saved in bfloat16, as the releases are."""
    import json

    import transformers

    model_class = getattr(transformers, json.loads((model_path / "config.json").read_text())["architectures"][0])
    model_class.from_pretrained(model_path, dtype=torch.bfloat16).save_pretrained(out)
    for extra in model_path.iterdir():  # the processor's files
        if not (out / extra.name).exists():
            (out / extra.name).write_bytes(extra.read_bytes())
    return out


def test_dtype_auto_trains_and_probes_lora_in_the_bases_dtype_and_full_in_float32(tiny_qwen2_audio, tmp_path):
    """A released bfloat16 base is not copied to float32 for LoRA (a 7B base: ~31 GB on the host);
    full fine-tuning and models built from architecture train in float32."""
    from cuealign.models.finetune import load_for_training
    from cuealign.models.registry import finetune_dtype

    released = bfloat16_copy(tiny_qwen2_audio, tmp_path / "bf16")
    lora = {"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    spec = finetune_spec(method="lora", base=str(released), lora=lora)
    assert spec["dtype"] == "auto" and finetune_dtype(spec) == "auto"
    model = load_for_training(spec, [], tmp_path).model
    dtypes = {("adapter" if "lora_" in name else "base", p.dtype) for name, p in model.named_parameters()}
    assert dtypes == {("base", torch.bfloat16), ("adapter", torch.float32)}
    entries = model_entries(validate_config({"corpora": {"demo": {"type": "synthetic"}}, "finetune": {"ft": spec}}))
    assert entries["ft"]["dtype"] == "auto"  # probed as trained: the base as released, with the adapter
    full = finetune_spec(method="full", base=str(released))
    assert finetune_dtype(full) == "float32" and finetune_dtype(finetune_spec()) == "float32"
    assert finetune_dtype(full | {"dtype": "bfloat16"}) == "bfloat16"
    assert load_for_training(full, [], tmp_path).model.dtype == torch.float32


def test_examples_are_the_probed_inputs(tiny_study, tiny_qwen2_audio):
    """Training sees the backend's own prefix and suffix ids; the loss reads the label's tokens."""
    alm = load_backend(model_entry(tiny_qwen2_audio, dtype="float32"))
    prompts = training_prompts(
        tiny_study["tokens"], tiny_study["manifest"], tiny_study["meta"], prompt=tiny_study["prompt"], split="train"
    )
    assert set(prompts["condition"]) == {"none", "aligned", "tokens_only"}
    assert set(prompts["split"]) == {"train"}
    labels = labels_of(tiny_study)
    first_utterance = prompts[prompts["utt_id"] == prompts["utt_id"].min()]
    examples = build_examples(alm, first_utterance, labels)
    assert len(examples) == 3
    inputs, positions, targets = collate(alm, examples)
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
    silent = [row for row, e in enumerate(examples) if e.condition == "tokens_only"][0]
    assert not torch.equal(inputs["input_features"][silent], inputs["input_features"][1 - min(silent, 1)])


def test_each_epoch_shows_every_utterance_once_under_the_mix(tiny_study, tiny_qwen2_audio):
    from cuealign.models.finetune import Example

    examples = [
        Example(f"u{u}", c, 0, "u.wav", c == "tokens_only", "", "", "a")
        for u in range(200)
        for c in ("none", "aligned", "tokens_only")
    ]
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
    from cuealign.models.finetune import check_training

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


def _weights(alm) -> dict:
    return {n: p.detach().clone() for n, p in alm.model.named_parameters() if p.requires_grad}


def test_gradient_accumulation_trains_as_one_large_batch(tiny_study, tmp_path):
    """4 utterances per step as 2 micro-batches of 2: the same losses and weights as batches of 4."""
    common = dict(epochs=2, learning_rate=3e-3, mix={"none": 1, "aligned": 1})
    whole, whole_alm = finetune(finetune_spec(batch_size=4, **common), out_dir=tmp_path / "a", **tiny_study)
    parts, parts_alm = finetune(
        finetune_spec(batch_size=2, gradient_accumulation=2, **common), out_dir=tmp_path / "b", **tiny_study
    )
    assert len(whole) == len(parts) == 2 * int(np.ceil((tiny_study["manifest"]["split"] == "train").sum() / 4))
    np.testing.assert_allclose(parts["loss"], whole["loss"], rtol=1e-5)
    np.testing.assert_allclose(parts["accuracy"], whole["accuracy"])
    a, b = _weights(whole_alm), _weights(parts_alm)
    assert max(float((a[n] - b[n]).abs().max()) for n in a) < 1e-5
    # while steps of 2 without accumulation train another model (so the comparison can fail)
    small, small_alm = finetune(finetune_spec(batch_size=2, **common), out_dir=tmp_path / "c", **tiny_study)
    c = _weights(small_alm)
    assert len(small) > len(whole) and max(float((a[n] - c[n]).abs().max()) for n in a) > 1e-3


def test_bf16_autocast_runs_the_forward_in_bf16(tiny_study, tmp_path):
    from cuealign.models.finetune import autocast

    assert not autocast(torch.device("cpu"), "auto")._enabled and autocast(torch.device("cpu"), "bf16")._enabled
    common = dict(epochs=2, learning_rate=3e-3, batch_size=4)
    plain, _ = finetune(finetune_spec(**common), out_dir=tmp_path / "a", **tiny_study)
    mixed, _ = finetune(finetune_spec(mixed_precision="bf16", **common), out_dir=tmp_path / "b", **tiny_study)
    assert np.isfinite(mixed["loss"]).all() and not np.allclose(mixed["loss"], plain["loss"], rtol=1e-6)
    assert abs(mixed["loss"].iloc[0] - plain["loss"].iloc[0]) < 0.1  # the same step, at bf16's precision


def test_examples_are_featurised_lazily(tiny_study, tiny_qwen2_audio, monkeypatch):
    """Building the examples reads no audio; a batch reads only its own utterances."""
    import cuealign.models.finetune as module

    alm = load_backend(model_entry(tiny_qwen2_audio, dtype="float32"))
    read = []
    original = module.load_model_audio
    monkeypatch.setattr(module, "load_model_audio", lambda path, **kw: read.append(path) or original(path, **kw))
    prompts = training_prompts(
        tiny_study["tokens"], tiny_study["manifest"], tiny_study["meta"], prompt=tiny_study["prompt"], split="train"
    )
    examples = build_examples(alm, prompts, labels_of(tiny_study))
    assert len(examples) == len(prompts) and read == []
    plain = collate(alm, examples[:3])
    assert read == [e.path for e in examples[:3]]
    # within its budget the feature cache featurises each audio once, and gives the same inputs
    one = FeatureCache.size({k: t.clone() for k, t in featurise(alm, examples[0])[0].items()})
    cache = FeatureCache(2.5 * one / 2**20)  # room for two
    read.clear()
    first = collate(alm, examples[:3], cache)  # none and aligned of one utterance share its audio
    assert [e.silence for e in examples[:3]] == [False, False, True] and len(read) == 2
    for a, b in zip(plain[0].values(), first[0].values(), strict=True):
        assert torch.equal(a, b)
    again = collate(alm, examples[1:3], cache)
    assert len(read) == 2 and torch.equal(again[0]["input_features"], first[0]["input_features"][1:])
    collate(alm, examples[3:4], cache)  # a third audio: the least recently used one goes
    assert len(read) == 3 and len(cache.entries) == 2 and cache.used <= cache.budget
    # what it counts is what it holds: the mask the processor returns as a view of a larger buffer is copied
    held = [t for tensors, _ in cache.entries.values() for t in tensors.values()]
    assert cache.used == sum(t.untyped_storage().nbytes() for t in held) < 2 * one + 1
    assert all(t.untyped_storage().nbytes() == t.nbytes for t in held)
    collate(alm, examples[:1], cache)
    assert len(read) == 4


KILLED_RUN = """
import json, sys, time
import pandas as pd
import cuealign.models.finetune as module
from cuealign.workflow.config import validate_config

folder = sys.argv[1]
original = module._progress
def slow(*args, **kwargs):  # the real training, slowed so that the parent can kill it mid-way
    time.sleep(0.4)
    original(*args, **kwargs)
module._progress = slow
spec = json.loads(open(folder + "/spec.json").read())
module.finetune(
    spec,
    tokens=pd.read_parquet(folder + "/tokens.parquet"),
    manifest=pd.read_parquet(folder + "/manifest.parquet"),
    meta=json.loads(open(folder + "/meta.json").read()),
    prompt=json.loads(open(folder + "/prompt.json").read()),
    out_dir=folder + "/killed-model",
    checkpoint_dir=folder + "/checkpoint",
)
"""


def test_a_killed_finetune_resumes_from_its_checkpoint_to_the_uninterrupted_model(tiny_study, tmp_path):
    """SIGKILL after the checkpoint at step 4; the rerun resumes there and ends with the weights and
    the log of a run that was never stopped."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = finetune_spec(epochs=3, batch_size=4, learning_rate=3e-3, checkpoint_every=2)
    tiny_study["tokens"].to_parquet(tmp_path / "tokens.parquet")
    tiny_study["manifest"].to_parquet(tmp_path / "manifest.parquet")
    for name in ("meta", "prompt"):
        (tmp_path / f"{name}.json").write_text(json.dumps(tiny_study[name]))
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "run.py").write_text(KILLED_RUN)
    child = subprocess.Popen(
        [sys.executable, str(tmp_path / "run.py"), str(tmp_path)], env=os.environ | {"PYTHONPATH": os.getcwd()}
    )
    state = tmp_path / "checkpoint/state.pt"
    deadline = time.time() + 300
    while time.time() < deadline and child.poll() is None:
        if state.is_file() and torch.load(state, weights_only=True)["step"] >= 4:
            break
        time.sleep(0.05)
    assert child.poll() is None, "the training ended before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    killed_at = torch.load(state, weights_only=True)["step"]
    assert 4 <= killed_at < 3 * 6 and not (tmp_path / "killed-model").exists()

    resumed, resumed_alm = finetune(
        spec, out_dir=tmp_path / "resumed", checkpoint_dir=tmp_path / "checkpoint", **tiny_study
    )
    unbroken, unbroken_alm = finetune(spec, out_dir=tmp_path / "unbroken", **tiny_study)
    assert resumed["step"].tolist() == unbroken["step"].tolist()
    np.testing.assert_allclose(resumed["loss"], unbroken["loss"], rtol=1e-6)
    a, b = _weights(resumed_alm), _weights(unbroken_alm)
    assert max(float((a[n] - b[n]).abs().max()) for n in a) < 1e-6
    assert not (tmp_path / "checkpoint").exists()  # removed once the model is saved

    # a checkpoint of another training (here: another learning rate) is not resumed
    other = spec | {"learning_rate": 1e-3}
    stale = Checkpoint(tmp_path / "stale", 2, "another training")
    stale.folder.mkdir()
    torch.save({"key": "another training", "step": 5}, stale.file)
    history, _ = finetune(other, out_dir=tmp_path / "fresh", checkpoint_dir=tmp_path / "stale", **tiny_study)
    assert history["step"].iloc[0] == 1


def test_lora_on_a_bfloat16_base_trains_and_probes_in_every_family(tiny_alm, tiny_study, tmp_path):
    """LoRA on a base saved in bfloat16 (dtype auto keeps it so): the float32 audio features go in
    as the base's dtype for training, validation and the probe (Audio Flamingo 3's encoder does not
    cast them itself, and its bfloat16 convolution refused float32)."""
    family, path = tiny_alm
    base = bfloat16_copy(path, tmp_path / "bf16")
    lora = {"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    spec = finetune_spec(family=family, method="lora", base=str(base), epochs=1, batch_size=8, lora=lora)
    history, alm = finetune(spec, out_dir=tmp_path / "adapter", **tiny_study)
    assert alm.dtype == "bfloat16" and np.isfinite(history["loss"]).all()
    entry = model_entries(validate_config({"corpora": {"demo": {"type": "synthetic"}}, "finetune": {"ft": spec}}))["ft"]
    probe = load_backend(entry | {"adapter": str(tmp_path / "adapter")})
    assert probe.dtype == "bfloat16" and np.isfinite(test_scores(probe, tiny_study, labels_of(tiny_study), n=1)).all()
