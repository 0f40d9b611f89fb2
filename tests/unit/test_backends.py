"""The transformers backend on a tiny random-weight Qwen2-Audio loaded through from_pretrained."""

import numpy as np
import pytest

from cuealign.models.loader import load_backend
from cuealign.models.registry import check_model_spec, family
from cuealign.workflow.config import model_entry

LABELS = ["angry", "happy", "neutral", "sad"]
PREFIX = "What emotion does the speaker express? Answer with one word from: angry, happy, neutral, sad."
SUFFIXES = [
    "",
    " Acoustic cues measured from the audio: ENERGY=VERY_HIGH; PITCH=MID; VOICE_QUALITY=PRESSED.",
    " Acoustic cues measured from the audio: ENERGY=VERY_LOW; PITCH=LOW; VOICE_QUALITY=BREATHY.",
]


def spec(path, family="qwen2-audio", **changes):
    return model_entry(path, family, **{"dtype": "float32"} | changes)


@pytest.fixture(scope="module")
def backend(tiny_alm):
    name, path = tiny_alm
    return load_backend(spec(path, family=name))


def audio(seed, seconds=1.5):
    return (0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32)


def test_cached_prefix_gives_the_full_recompute_log_probs(backend):
    cached = backend.score(audio(0), PREFIX, SUFFIXES, LABELS, batch_size=5)
    assert cached.shape == (3, 4) and np.all(cached < 0)
    for i, suffix in enumerate(SUFFIXES):
        np.testing.assert_allclose(cached[i], backend.score_full(audio(0), PREFIX, suffix, LABELS), atol=1e-5)


def test_a_prefix_forward_makes_logits_for_its_last_position_only(backend):
    """Nobody reads a prefix's logits: the head runs on each row's last position (a 600 s clip's
    full-vocabulary logits are GiBs), and scoring after it is unchanged (the test above)."""
    head = backend.model.get_output_embeddings()
    seen = []
    handle = head.register_forward_hook(lambda _module, _args, out: seen.append(tuple(out.shape)))
    try:
        prefix = backend.encode_prefix(audio(12), PREFIX)
        assert prefix.ids.shape[1] > 20 and seen and all(shape[1] == 1 for shape in seen), seen
        seen.clear()
        backend.score(audio(12), PREFIX, SUFFIXES[1:2], LABELS)  # the suffix forward: every suffix position
        assert max(shape[1] for shape in seen) > 1
    finally:
        handle.remove()


def test_labels_of_many_tokens_branch_off_the_suffix_cache_exactly(backend):
    # Labels the tokenizer never saw split into up to 7 tokens; their tails run on each suffix's
    # own cache (after its padding), in batches that cut across suffixes.
    labels = ["angry", "frustrated", "surprised", "sad"]
    assert sorted(len(backend.ids(label)) for label in labels)[-1] >= 5
    for batch_size in (1, 3, 64):
        cached = backend.score(audio(11), PREFIX, SUFFIXES, labels, batch_size=batch_size)
        for i, suffix in enumerate(SUFFIXES):
            np.testing.assert_allclose(cached[i], backend.score_full(audio(11), PREFIX, suffix, labels), atol=1e-5)


def test_batch_size_does_not_change_scores(backend):
    np.testing.assert_allclose(
        backend.score(audio(1), PREFIX, SUFFIXES, LABELS, batch_size=1),
        backend.score(audio(1), PREFIX, SUFFIXES, LABELS, batch_size=64),
        atol=1e-5,
    )


def test_the_audio_reaches_the_model(backend):
    a = backend.score(audio(2), PREFIX, SUFFIXES, LABELS)
    b = backend.score(audio(3), PREFIX, SUFFIXES, LABELS)
    silence = backend.score(np.zeros(24000, dtype=np.float32), PREFIX, SUFFIXES, LABELS)
    assert np.abs(a - b).max() > 1e-4 and np.abs(a - silence).max() > 1e-4


def test_the_token_block_reaches_the_model(backend):
    scores = backend.score(audio(4), PREFIX, SUFFIXES, LABELS)
    assert np.abs(scores[1] - scores[2]).max() > 1e-4


def test_generation_continues_from_the_prefix(backend):
    answers = backend.generate(audio(5), PREFIX, SUFFIXES[:2], max_new_tokens=4)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_generation_from_the_prefix_cache_equals_generation_from_scratch(backend):
    # Greedy continuations and every step's logits, against generate() given the whole prompt
    # and the audio features (no cache): for Omni this checks the rotary positions after a cache.
    import torch

    prefix = backend.encode_prefix(audio(9), PREFIX)
    ids = torch.cat([prefix.ids, torch.tensor([backend.ids(SUFFIXES[1] + prefix.tail)])], dim=1)
    features = {k: v for k, v in prefix.inputs.items() if k not in ("input_ids", "attention_mask")}
    settings = dict(
        max_new_tokens=6, do_sample=False, pad_token_id=backend.pad_id, output_logits=True, return_dict_in_generate=True
    )
    with torch.inference_mode():
        full = backend.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **features, **settings)
        prefix = backend.encode_prefix(audio(9), PREFIX)
        cached = backend.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            **backend._cache_argument(backend._cache(prefix, 1)),
            **settings,
        )
    assert torch.equal(full.sequences, cached.sequences)
    for a, b in zip(full.logits, cached.logits, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    text = backend.tokenizer.decode(full.sequences[0, ids.shape[1] :], skip_special_tokens=True)
    assert backend.generate(audio(9), PREFIX, SUFFIXES[1:2], max_new_tokens=6) == [text]


def test_omni_audio_inputs_are_those_of_omnis_own_processor(tiny_omni, monkeypatch):
    """The qwen2.5-omni entry assembles a Qwen2AudioProcessor because Qwen2_5OmniProcessor loads a
    video processor (torchvision). Its audio path, run here with its processor class check
    bypassed and no image or video processor, must produce exactly the same inputs."""
    from types import SimpleNamespace

    from transformers import ProcessorMixin, Qwen2_5OmniProcessor

    backend = load_backend(spec(tiny_omni, family="qwen2.5-omni"))
    assert type(backend.processor).__name__ == "Qwen2AudioProcessor"
    monkeypatch.setattr(ProcessorMixin, "check_argument_for_proper_class", lambda self, name, arg: None)
    omni = Qwen2_5OmniProcessor(
        # releases before 5.24 read merge_size and temporal_patch_size even for audio-only calls
        image_processor=SimpleNamespace(merge_size=2, temporal_patch_size=2),
        video_processor=SimpleNamespace(merge_size=2, temporal_patch_size=2),
        feature_extractor=backend.processor.feature_extractor,
        tokenizer=backend.tokenizer,
        chat_template=backend.processor.chat_template,
    )
    head, _ = backend.split_template(PREFIX)
    for seconds in (0.7, 1.5, 12.3, 31.0):
        clip = audio(10, seconds=seconds)
        ours, theirs = (
            backend.processor(text=head, audio=clip, sampling_rate=16000, return_tensors="pt"),
            omni(text=head, audio=clip, sampling_rate=16000, return_tensors="pt"),
        )
        assert sorted(ours) == sorted(theirs)
        for key in ours:
            assert ours[key].equal(theirs[key]), key


def test_a_released_omni_checkpoint_loads_its_thinker_only(tiny_omni, tmp_path):
    """Qwen/Qwen2.5-Omni-7B's layout: one config with a thinker_config, weights prefixed thinker.
    and talker.; the thinker class takes its own weights and leaves the talker on disk."""
    import json
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    released = tmp_path / "released"
    shutil.copytree(tiny_omni, released)
    weights = load_file(released / "model.safetensors")
    weights = {f"thinker.{k}": v for k, v in weights.items()} | {"talker.codec_head.weight": torch.zeros(4, 4)}
    save_file(weights, released / "model.safetensors", metadata={"format": "pt"})
    thinker = json.loads((tiny_omni / "config.json").read_text())
    (released / "config.json").write_text(
        json.dumps(
            {
                "model_type": "qwen2_5_omni",
                "architectures": ["Qwen2_5OmniModel"],
                "thinker_config": thinker,
                "enable_audio_output": True,
            }
        )
    )
    check_model_spec("omni", spec(released, family="qwen2.5-omni"), ["demo"])
    np.testing.assert_allclose(
        load_backend(spec(released, family="qwen2.5-omni")).score(audio(12), PREFIX, SUFFIXES, LABELS),
        load_backend(spec(tiny_omni, family="qwen2.5-omni")).score(audio(12), PREFIX, SUFFIXES, LABELS),
        rtol=0,
        atol=0,
    )


def test_prefix_and_suffix_are_tokenised_separately(backend):
    head, tail = backend.split_template(PREFIX)
    assert ("<|AUDIO|>" in head or "<sound>" in head) and head.rstrip().endswith(PREFIX.rstrip()[-20:])
    assert "assistant" in tail


@pytest.mark.parametrize(
    "change, message",
    [
        ({"family": "qwen9-audio"}, "not in the registry"),
        # the paper's models cuealign does not run say why, before any job
        ({"family": "midashenglm"}, "ships its own model code .* cuealign does not execute"),
        ({"family": "pengi"}, "reference number only"),
        # msclap (the paper's CLAP) reads its released checkpoint, not a transformers folder
        ({"family": "msclap"}, r"holds no CLAP_weights_\*\.pth; it needs one of CLAP_weights_2022\.pth"),
        ({"path": "/nowhere/model"}, "does not exist"),
        ({"path": "someone/not-cached-model"}, "neither a local folder nor in the local Hugging Face cache"),
        ({"corpora": ["iemocap"]}, r"corpora names \['iemocap'\]"),
        ({"device": "cuda", "gpus": 2}, "gpus 2 with device 'cuda' would leave all but one idle; set device: auto"),
        # a checkpoint under another family would build that family's class with random weights
        (
            {"family": "audio-flamingo-3"},
            r"is a 'qwen2_audio' checkpoint \(config.json model_type\), but config: models.m.family is "
            r"'audio-flamingo-3'.*set family: qwen2-audio",
        ),
        ({"family": "qwen2.5-omni"}, r"'qwen2_audio' checkpoint.*set family: qwen2-audio"),
    ],
)
def test_model_config_errors_come_before_any_model_work(tiny_qwen2_audio, change, message):
    with pytest.raises(ValueError, match=message):
        check_model_spec("m", spec(tiny_qwen2_audio) | change, ["demo"])


def test_a_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="holds no config.json"):
        check_model_spec("m", spec(tmp_path), ["demo"])


def test_registry_entries():
    assert family("qwen2-audio").model_class == "Qwen2AudioForConditionalGeneration"
    assert family("audio-flamingo-3").feature_mask == "input_features_mask"
    assert family("audio-flamingo-3").window_s is None  # read from the checkpoint (see test_real_models.py)
    assert (
        family("qwen2.5-omni").model_class == "Qwen2_5OmniThinkerForConditionalGeneration"
        and family("qwen2.5-omni").mrope
    )


def test_long_audio_within_the_window_reaches_the_model(backend):
    """Qwen2-Audio sees only its first 30 s; AF3 windows longer audio itself."""
    if backend.window_s <= 30:
        pytest.skip("the runner truncates audio to this family's 30 s window before it gets here")
    head = audio(6, seconds=31.0)
    tail_changed = head.copy()
    tail_changed[16000 * 30 :] = 0.0
    a = backend.score(head, PREFIX, SUFFIXES[:1], LABELS)
    b = backend.score(tail_changed, PREFIX, SUFFIXES[:1], LABELS)
    assert np.abs(a - b).max() > 1e-6


def test_a_peft_adapter_is_loaded_on_top(tiny_qwen2_audio, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2AudioForConditionalGeneration

    base = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio)
    # init_lora_weights=False: a random (non-zero) update, so the adapter visibly changes outputs
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    plain = load_backend(spec(tiny_qwen2_audio))
    adapted = load_backend(spec(tiny_qwen2_audio, adapter=str(tmp_path / "adapter")))
    a = plain.score(audio(7), PREFIX, SUFFIXES, LABELS)
    b = adapted.score(audio(7), PREFIX, SUFFIXES, LABELS)
    assert np.abs(a - b).max() > 1e-4
    # and the adapted model's cached path still equals its full recompute
    np.testing.assert_allclose(b[1], adapted.score_full(audio(7), PREFIX, SUFFIXES[1], LABELS), atol=1e-5)


def test_device_auto_places_the_model_with_accelerate_and_scores_the_same(tiny_alm, backend, monkeypatch):
    # device: auto spreads one job over every visible GPU (accelerate's device_map); with none
    # visible, accelerate keeps it on the CPU. The scores must not depend on the placement.
    import transformers.modeling_utils as modeling_utils

    placements = []
    compute = modeling_utils._get_device_map
    monkeypatch.setattr(
        modeling_utils, "_get_device_map", lambda *a, **k: placements.append(compute(*a, **k)) or placements[-1]
    )
    name, path = tiny_alm
    placed = load_backend(spec(path, family=name, device="auto"))
    assert len(placements) == 1 and set(placements[0].values()) == {"cpu"}  # accelerate placed every module
    assert placed.device.type == "cpu"
    np.testing.assert_allclose(
        placed.score(audio(5), PREFIX, SUFFIXES, LABELS), backend.score(audio(5), PREFIX, SUFFIXES, LABELS), atol=1e-5
    )
    assert placed.generate(audio(5), PREFIX, SUFFIXES[:1], max_new_tokens=3) == backend.generate(
        audio(5), PREFIX, SUFFIXES[:1], max_new_tokens=3
    )


def test_pickle_only_weights_are_refused_unless_the_user_opts_in(tiny_qwen2_audio, tmp_path):
    import shutil

    import torch
    from transformers import Qwen2AudioForConditionalGeneration

    # transformers 5 saves safetensors only; older checkpoints on the hub are still pickle files
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_qwen2_audio, pickled, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(
        Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio).state_dict(), pickled / "pytorch_model.bin"
    )
    assert (pickled / "pytorch_model.bin").is_file() and not list(pickled.glob("*.safetensors"))
    with pytest.raises(
        ValueError,
        match=r"config: models.m.path .* holds pickle weights only \(pytorch_model.bin\).*"
        r"set config: models.m.allow_pickle: true",
    ):
        check_model_spec("m", spec(pickled), ["demo"])
    with pytest.raises(OSError, match="safetensors only unless allow_pickle"):  # the loader insists too
        load_backend(spec(pickled))
    check_model_spec("m", spec(pickled, allow_pickle=True), ["demo"])
    opted_in = load_backend(spec(pickled, allow_pickle=True))
    np.testing.assert_allclose(
        opted_in.score(audio(8), PREFIX, SUFFIXES, LABELS),
        load_backend(spec(tiny_qwen2_audio)).score(audio(8), PREFIX, SUFFIXES, LABELS),
        atol=1e-6,
    )


def test_a_pickle_only_adapter_is_refused_too(tiny_qwen2_audio, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2AudioForConditionalGeneration

    lora = get_peft_model(
        Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio), LoraConfig(r=4, target_modules=["q_proj"])
    )
    lora.save_pretrained(tmp_path / "adapter", safe_serialization=False)
    with pytest.raises(ValueError, match=r"models.m.adapter .* holds pickle weights only \(adapter_model.bin\)"):
        check_model_spec("m", spec(tiny_qwen2_audio, adapter=str(tmp_path / "adapter")), ["demo"])
    check_model_spec("m", spec(tiny_qwen2_audio, adapter=str(tmp_path / "adapter"), allow_pickle=True), ["demo"])


def test_a_checkpoints_own_code_is_never_imported_by_default(tiny_qwen2_audio, tmp_path):
    """A folder whose config.json points at its own Python (auto_map), as remote-code checkpoints
    do: without trust_remote_code the module is never imported, so its code never runs."""
    import json
    import shutil

    folder = tmp_path / "remote-code"
    shutil.copytree(tiny_qwen2_audio, folder)
    marker = tmp_path / "the checkpoint's code ran"
    (folder / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import Qwen2AudioForConditionalGeneration as EvilModel\n"
        "from transformers import Qwen2AudioConfig as EvilConfig\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    backend = load_backend(spec(folder))
    assert backend.score(np.zeros(16000, np.float32), "Which emotion?", [""], ["angry", "sad"], batch_size=1).shape == (
        1,
        2,
    )
    assert not marker.exists()


def test_an_adapter_trained_on_another_base_is_refused_naming_both(tiny_qwen2_audio, tmp_path):
    import re

    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2AudioForConditionalGeneration

    from cuealign.models.registry import check_model_spec

    base = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio)
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(tmp_path / "adapter")
    other = tmp_path / "other-base"
    import shutil

    shutil.copytree(tiny_qwen2_audio, other)  # same shape: PEFT would load it silently
    entry = spec(tiny_qwen2_audio, adapter=str(tmp_path / "adapter")) | {"device": "cpu", "gpus": 1}
    check_model_spec("m", entry, ["demo"])  # its own base
    named = (
        rf"models\.m\.adapter .* was trained on '{re.escape(str(tiny_qwen2_audio))}', not on '{re.escape(str(other))}'"
    )
    with pytest.raises(ValueError, match=named):
        check_model_spec("m", entry | {"path": str(other)}, ["demo"])
    check_model_spec("m", entry | {"path": str(other), "allow_adapter_transfer": True}, ["demo"])


def test_an_adapter_naming_a_hub_model_fits_a_local_copy_of_it(tiny_qwen2_audio, tmp_path, monkeypatch, caplog):
    """The usual cluster case: the adapter records the hub id it was trained on, the config gives a
    local copy of that model (no internet). Where the hub snapshot is cached, the copy is compared
    by content; where it is not, a folder named as the repository is taken as the copy, in the log."""
    import json
    import shutil

    import huggingface_hub.constants
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2AudioForConditionalGeneration

    from cuealign.models.registry import check_model_spec

    base = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio)
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(tmp_path / "adapter")
    settings = tmp_path / "adapter/adapter_config.json"
    recorded = json.loads(settings.read_text()) | {"base_model_name_or_path": "Qwen/Qwen2-Audio-7B-Instruct"}
    settings.write_text(json.dumps(recorded))
    copy = tmp_path / "local/Qwen2-Audio-7B-Instruct"  # hf download ... --local-dir
    shutil.copytree(tiny_qwen2_audio, copy)
    entry = spec(copy, adapter=str(tmp_path / "adapter")) | {"device": "cpu", "gpus": 1}
    hub = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    # not cached: by the folder's name, said in the log; another name is refused, saying what to do
    with caplog.at_level("WARNING"):
        check_model_spec("m", entry, ["demo"])
    assert "taken as a copy of Qwen/Qwen2-Audio-7B-Instruct" in caplog.text
    renamed = tmp_path / "local/my-model"
    shutil.copytree(copy, renamed)
    with pytest.raises(ValueError, match=r"hf download Qwen/Qwen2-Audio-7B-Instruct.*name the folder"):
        check_model_spec("m", entry | {"path": str(renamed)}, ["demo"])
    # cached: by content, whatever the folder is called; a model of the same shape with other weights is not it
    snapshot = hub / "models--Qwen--Qwen2-Audio-7B-Instruct/snapshots" / ("c" * 40)
    shutil.copytree(tiny_qwen2_audio, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs/main").write_text("c" * 40)
    check_model_spec("m", entry | {"path": str(renamed)}, ["demo"])
    other = tmp_path / "local/Qwen2-Audio-7B-Instruct-retrained"
    shutil.copytree(copy, other)
    weights = next(other.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(64)  # the last tensor's values, same shapes and sizes
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="was trained on 'Qwen/Qwen2-Audio-7B-Instruct'"):
        check_model_spec("m", entry | {"path": str(other)}, ["demo"])


def test_truncated_weights_are_an_error_naming_the_model_and_the_fix(tiny_qwen2_audio, tmp_path):
    import shutil

    folder = tmp_path / "cut"
    shutil.copytree(tiny_qwen2_audio, folder)
    weights = next(folder.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # an interrupted copy
    with pytest.raises(ValueError, match=rf"model '{folder}': a weights file is damaged .* copy or download it again"):
        load_backend(spec(folder))


def test_generation_is_greedy_whatever_the_checkpoints_generation_config_says(backend):
    """AF3-hf ships do_sample true and repetition_penalty 1.05: generate mode must not inherit them."""
    plain = backend.generate(audio(5), PREFIX, SUFFIXES, max_new_tokens=6)
    config = backend.model.generation_config
    saved = (config.do_sample, config.repetition_penalty, config.temperature)
    config.do_sample, config.repetition_penalty, config.temperature = True, 5.0, 2.0
    try:
        assert backend.generate(audio(5), PREFIX, SUFFIXES, max_new_tokens=6) == plain
        assert backend.generate(audio(5), PREFIX, SUFFIXES, max_new_tokens=6) == plain  # no sampling
    finally:
        config.do_sample, config.repetition_penalty, config.temperature = saved


def test_dtype_auto_loads_the_checkpoints_own_dtype(tiny_qwen2_audio, tmp_path, caplog):
    """auto (the default) loads a bfloat16 checkpoint as bfloat16, with no float32 copy, and says so;
    float32 is loaded when asked; float32 on a GPU is a warning."""
    import logging
    import shutil

    import torch
    import transformers

    from cuealign.models.weights import loaded_dtype
    from cuealign.workflow.config import validate_config

    folder = tmp_path / "bf16"
    shutil.copytree(tiny_qwen2_audio, folder)
    model = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(folder, dtype=torch.bfloat16)
    model.save_pretrained(folder)  # as released: bfloat16 weights, config.json says so
    entry = {k: v for k, v in spec(folder).items() if k != "dtype"}
    assert validate_config({"corpora": {"d": {"type": "synthetic"}}, "models": {"m": entry}})["models"]["m"][
        "dtype"
    ] == ("auto")
    loaded = load_backend(spec(folder, dtype="auto"))
    assert loaded.dtype == "bfloat16" and next(loaded.model.parameters()).dtype == torch.bfloat16
    scores = loaded.score(audio(3), PREFIX, SUFFIXES, LABELS)
    assert np.isfinite(scores).all()
    assert load_backend(spec(folder, dtype="float32")).dtype == "float32"
    with caplog.at_level(logging.WARNING):
        assert loaded_dtype(model.float(), "float32", torch.device("cuda", 0)) == "float32"
    assert "float32 weights on cuda:0" in caplog.text
    caplog.clear()
    assert loaded_dtype(model.float(), "float32", torch.device("cpu")) == "float32" and not caplog.text


def test_the_af3_think_adapter_layout_loads_its_full_weights_then_its_lora(tmp_path):
    """nvidia/audio-flamingo-3-hf's think/ folder: a LoRA adapter plus non_lora_trainables.bin
    (weights trained in full), put into the base before the adapter. Names that are not the model's
    are refused (the published loaders' strict=False would drop them silently), and so is a pickle
    that would run code."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AudioFlamingo3ForConditionalGeneration

    from cuealign.models.tiny import build_tiny_alm

    base_path = build_tiny_alm("audio-flamingo-3", tmp_path / "af3", [PREFIX, *SUFFIXES, " ".join(LABELS)])
    base = AudioFlamingo3ForConditionalGeneration.from_pretrained(base_path)
    name = next(n for n, _ in base.named_parameters() if "language_model" in n and n.endswith("mlp.down_proj.weight"))
    full = {name: base.state_dict()[name] + 0.5}
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    for n, p in lora.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.05)
    think = tmp_path / "think"
    lora.save_pretrained(think)
    torch.save(full, think / "non_lora_trainables.bin")
    adapted = load_backend(spec(base_path, family="audio-flamingo-3", adapter=str(think)))
    loaded = adapted.model.get_base_model().state_dict()[name]
    assert torch.equal(loaded, full[name])  # the full weights are in, under the adapter
    lora_only = tmp_path / "lora-only"
    lora.save_pretrained(lora_only)
    only = load_backend(spec(base_path, family="audio-flamingo-3", adapter=str(lora_only)))
    assert (
        np.abs(adapted.score(audio(1), PREFIX, SUFFIXES, LABELS) - only.score(audio(1), PREFIX, SUFFIXES, LABELS)).max()
        > 1e-4
    )

    torch.save({"llm." + name: full[name]}, think / "non_lora_trainables.bin")  # another layout's names
    with pytest.raises(ValueError, match="weights name no parameter of the model"):
        load_backend(spec(base_path, family="audio-flamingo-3", adapter=str(think)))
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({name: Payload()}, think / "non_lora_trainables.bin")
    with pytest.raises(ValueError, match="holds more than tensors"):
        load_backend(spec(base_path, family="audio-flamingo-3", adapter=str(think)))
    assert not marker.exists()
