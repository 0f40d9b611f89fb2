"""The CLAP zero-shot baseline behind the same interface: a tiny random-weight ClapModel of the
real class, loaded through from_pretrained."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from cuealign.cache import AnswerStore
from cuealign.interventions import Condition
from cuealign.models.inference import predict_shard
from cuealign.models.loader import load_backend
from cuealign.models.registry import DEFAULT_LABEL_PROMPT, check_finetune_spec, check_model_spec
from cuealign.workflow.config import config_schema, model_entry, validate_config

LABELS = ["angry", "happy", "neutral", "sad"]
SUFFIXES = ["", " Acoustic cues measured from the audio: ENERGY=VERY_HIGH.", "\nAcoustic cues: ENERGY=VERY_LOW."]


def spec(path, family="clap", **changes):
    return model_entry(path, family, **{"dtype": "float32", "batch_size": 8, "max_new_tokens": 4} | changes)


@pytest.fixture(scope="module")
def clap(tiny_clap):
    return load_backend(spec(tiny_clap))


def audio(seed, seconds=2.0):
    return (0.1 * np.random.default_rng(seed).standard_normal(int(48000 * seconds))).astype(np.float32)


def test_scores_are_clap_models_own_logits_as_log_probs(clap):
    scores = clap.score(audio(0), "ignored", SUFFIXES, LABELS)
    inputs = clap.processor(
        text=[f"the speaker sounds {label}" for label in LABELS],
        audio=[audio(0)],
        sampling_rate=48000,
        return_tensors="pt",
        padding=True,
    )
    with torch.inference_mode():
        reference = torch.log_softmax(clap.model(**inputs).logits_per_audio, dim=-1)[0].numpy()
    for row in scores:  # no token channel: every condition gets the audio's scores
        np.testing.assert_allclose(row, reference, atol=1e-5)
    np.testing.assert_allclose(np.exp(scores).sum(axis=1), 1.0, atol=1e-5)


def test_the_audio_and_the_label_prompt_reach_the_model(clap, tiny_clap):
    a, b = clap.score(audio(1), "", [""], LABELS), clap.score(audio(2), "", [""], LABELS)
    silence = clap.score(np.zeros(96000, dtype=np.float32), "", [""], LABELS)
    assert np.abs(a - b).max() > 1e-4 and np.abs(a - silence).max() > 1e-4
    other = load_backend(spec(tiny_clap, label_prompt="a {label} voice"))
    assert np.abs(other.score(audio(1), "", [""], LABELS) - a).max() > 1e-4


def test_long_audio_is_truncated_by_the_runner_so_scores_are_deterministic(clap, tiny_clap, tmp_path):
    # CLAP's feature extractor would crop a >10 s clip at a random offset
    path = tmp_path / "long.wav"
    sf.write(path, audio(3, seconds=13.0), 48000)
    prompts = pd.DataFrame(
        [
            dict(
                utt_id="u0",
                **Condition(c).as_row(),
                audio="original",
                prefix_text="p",
                suffix_text=s,
                label="sad",
                split="test",
                speaker="s0",
                path=str(path),
                sha256="h0",
            )
            for c, s in zip(["none", "aligned", "conflict"], SUFFIXES, strict=True)
        ]
    )
    first = predict_shard(
        prompts, clap, labels=LABELS, spec=spec(tiny_clap), cache=AnswerStore(tmp_path / "a", "p"), progress=False
    )
    second = predict_shard(
        prompts, clap, labels=LABELS, spec=spec(tiny_clap), cache=AnswerStore(tmp_path / "b", "p"), progress=False
    )
    assert set(first["audio_policy"]) == {"truncated to 10 s"} and set(first["backend"]) == {"transformers:clap"}
    columns = [f"logprob_{label}" for label in LABELS]
    pd.testing.assert_frame_equal(first[columns], second[columns])
    assert first[columns].nunique().eq(1).all()  # the same answer for every condition


def test_the_label_prompt_is_part_of_the_cache_key(clap, tiny_clap, tmp_path):
    path = tmp_path / "u.wav"
    sf.write(path, audio(4), 48000)
    prompts = pd.DataFrame(
        [
            dict(
                utt_id="u0",
                **Condition("none").as_row(),
                audio="original",
                prefix_text="p",
                suffix_text="",
                label="sad",
                split="test",
                speaker="s0",
                path=str(path),
                sha256="h0",
            )
        ]
    )
    cache = AnswerStore(tmp_path / "cache", "p")
    a = predict_shard(prompts, clap, labels=LABELS, spec=spec(tiny_clap), cache=cache, progress=False)
    other = load_backend(spec(tiny_clap, label_prompt="a {label} voice"))
    b = predict_shard(
        prompts, other, labels=LABELS, spec=spec(tiny_clap, label_prompt="a {label} voice"), cache=cache, progress=False
    )
    assert abs(a["logprob_sad"].iloc[0] - b["logprob_sad"].iloc[0]) > 1e-4


def test_the_schema_default_is_the_backends_default():
    models = config_schema()["properties"]["models"]["additionalProperties"]["properties"]
    assert models["label_prompt"]["default"] == DEFAULT_LABEL_PROMPT


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"mode": "generate"}, r"models.m.mode: 'generate', but clap only scores label prompts; set mode: score"),
        ({"label_prompt": "the speaker sounds"}, r"models.m.label_prompt .* has no \{label\} slot"),
        ({"adapter": "/x"}, "clap takes no PEFT adapter"),
        ({"system_prompt": "Rate it."}, r"models.m.system_prompt: clap has no chat turn"),
        ({"label_variants": "case"}, r"models.m.label_variants: clap has no chat turn"),
    ],
)
def test_clap_config_errors(tiny_clap, changes, message):
    with pytest.raises(ValueError, match=message):
        check_model_spec("m", spec(tiny_clap) | changes, ["demo"])


def test_label_prompt_is_refused_on_an_alm_and_clap_cannot_be_finetuned(tiny_qwen2_audio):
    with pytest.raises(ValueError, match="label_prompt is for clap models only"):
        check_model_spec("m", spec(tiny_qwen2_audio, family="qwen2-audio", label_prompt="a {label} voice"), ["demo"])
    finetune = validate_config(
        {"corpora": {"demo": {"type": "synthetic"}}, "finetune": {"ft": {"corpus": "demo", "family": "clap"}}}
    )["finetune"]["ft"]
    with pytest.raises(ValueError, match=r"finetune.ft.family 'clap': finetune trains audio-language models"):
        check_finetune_spec("ft", finetune, ["demo"])
