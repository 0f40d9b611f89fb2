"""The backends on the released checkpoints' own files: the real Qwen BPE, chat templates,
processor settings, generation defaults and folder layouts (tests/real_models.py), with tiny
random weights of the real classes. Every family scores and generates on every layout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from cuealign.models.loader import load_backend
from cuealign.models.transformers_alm import label_variants
from cuealign.prompts import PromptTemplate
from cuealign.workflow.config import model_entry
from tests.real_models import FAMILY_OF, build_layout, qwen_bpe

LABELS = ["angry", "happy", "neutral", "sad"]
SCHEMA_TEMPLATE = "{audio}What emotion does the speaker express? Answer with one word from: {labels}.{cues}"
SCHEMA_CUES = " Acoustic cues measured from the audio: {tokens}."
DEFAULT = PromptTemplate(template=SCHEMA_TEMPLATE, cues=SCHEMA_CUES, labels=tuple(LABELS))
TOKENS = [
    "",
    "ENERGY=VERY_HIGH; PITCH=MID; BRIGHTNESS=VERY_BRIGHT; DYNAMICS=VERY_DYNAMIC; FORMANTS=LOW; VOICE_QUALITY=BREATHY",
    "ENERGY=LOW; PITCH=VERY_LOW; VOICE_QUALITY=MODAL",
]
PREFIX = DEFAULT.parts("")[0]
SUFFIXES = [DEFAULT.parts(t)[1] for t in TOKENS]


@pytest.fixture(scope="session")
def bpe(request) -> Path:
    return qwen_bpe(Path(request.config.cache.mkdir("qwen-bpe")))


@pytest.fixture(scope="session")
def layouts(bpe, tmp_path_factory):
    built: dict[str, Path] = {}

    def get(layout: str) -> Path:
        if layout not in built:
            built[layout] = build_layout(layout, tmp_path_factory.mktemp("real") / layout, bpe)
        return built[layout]

    return get


def spec(path: Path, layout: str, **extra) -> dict:
    return model_entry(path, FAMILY_OF[layout], **{"dtype": "float32"} | extra)


def audio(seed: int, seconds: float = 1.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * (120 + 40 * seed) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_the_rebuilt_bpe_is_the_released_one(bpe, layouts):
    from transformers import AutoTokenizer

    # the released merges.txt is 1,671,853 bytes (tests/real_model_files/SOURCES.md)
    assert os.path.getsize(bpe / "merges.txt") == 1_671_853
    tokenizer = AutoTokenizer.from_pretrained(layouts("qwen2-audio"), local_files_only=True)

    def ids(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    assert ids("Hello world") == [9707, 1879]  # Qwen2's ids in its model card and transformers' tests
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>"]) == [
        151643,
        151644,
        151645,
        151646,
    ]
    # docs/findings.md: label lengths, case and leading space change the tokens, ".\n" is one token
    assert [len(ids(label)) for label in ["angry", "emphatic", "happy", "neutral", "sad"]] == [2, 3, 1, 1, 1]
    assert ids("Neutral") != ids("neutral") and ids(" angry") != ids("angry")
    assert len(ids(".\n")) == 1 and ids(".") + ids("\n") != ids(".\n")


@pytest.mark.parametrize("layout", sorted(FAMILY_OF))
def test_every_layout_scores_as_its_own_processor_and_generates_as_transformers_does(layouts, layout):
    """Score: the cached split path equals the whole prompt prepared by the model's processor.
    Generate: all suffixes in one batch from the prefix cache, token-identical to transformers'
    own generate one prompt at a time."""
    backend = load_backend(spec(layouts(layout), layout))
    scores = backend.score(audio(1), PREFIX, SUFFIXES, LABELS, batch_size=2)
    assert scores.shape == (len(SUFFIXES), len(LABELS)) and np.isfinite(scores).all()
    for i, suffix in enumerate(SUFFIXES):
        np.testing.assert_allclose(scores[i], backend.score_full(audio(1), PREFIX, suffix, LABELS), atol=2e-5)
    # the cue block reaches the model, and so does the audio
    assert np.abs(scores[1] - scores[0]).max() > 1e-6
    assert np.abs(backend.score(audio(2), PREFIX, SUFFIXES[:1], LABELS) - scores[:1]).max() > 1e-6

    answers = backend.generate(audio(1), PREFIX, SUFFIXES, max_new_tokens=5, batch_size=2)
    one_by_one = [backend.generate_one(audio(1), PREFIX, s, max_new_tokens=5) for s in SUFFIXES]
    assert answers == one_by_one and any(answers)

    # the processor's work made ahead (inference does it in its read-ahead thread, with its own
    # copy of the processor) gives the same numbers and answers; made for another wording, unused
    backend.forget_prefixes()
    prepared = backend.prepare(audio(1), PREFIX, SUFFIXES)
    assert backend._preparer is not backend.processor and backend._preparer.tokenizer is not backend.tokenizer
    if backend.family.pad_to_clip:  # Omni: features of the 1.5 s clip, not of the 300 s window (scores equal above)
        frames = prepared.inputs["input_features"].shape[-1]
        assert 150 <= frames <= 160 < backend.processor.feature_extractor.nb_max_frames
    assert [prepared.suffix_ids[s] for s in SUFFIXES] == [backend.ids(s + prepared.tail) for s in SUFFIXES]
    np.testing.assert_array_equal(
        backend.score(audio(1), PREFIX, SUFFIXES, LABELS, batch_size=2, prepared=prepared), scores
    )
    backend.forget_prefixes()
    assert backend.generate(audio(1), PREFIX, SUFFIXES, max_new_tokens=5, batch_size=2, prepared=prepared) == answers
    backend.forget_prefixes()
    other = backend.prepare(audio(1), "Another wording.")
    np.testing.assert_array_equal(
        backend.score(audio(1), PREFIX, SUFFIXES, LABELS, batch_size=2, prepared=other), scores
    )


@pytest.mark.parametrize(
    ("layout", "window_s"),
    [("qwen2-audio", 30.0), ("qwen2.5-omni-json", 300.0), ("qwen2.5-omni", 300.0), ("audio-flamingo-3", 600.0)],
)
def test_the_audio_window_is_the_checkpoints_own(layouts, layout, window_s):
    assert load_backend(spec(layouts(layout), layout)).window_s == window_s


def test_the_omni_release_reads_its_chat_template_json(layouts):
    backend = load_backend(spec(layouts("qwen2.5-omni-json"), "qwen2.5-omni-json"))
    head, tail = backend.split_template(PREFIX)
    assert "<|audio_bos|><|AUDIO|><|audio_eos|>" + PREFIX in head and tail == "<|im_end|>\n<|im_start|>assistant\n"


def test_an_omni_folder_without_its_chat_template_is_refused(layouts, tmp_path):
    """A fine-tune saved without chat_template.jinja: Qwen2AudioProcessor would fall back to
    Qwen2-Audio's default template ("Audio 1: ...") and every check would pass."""
    import shutil

    folder = tmp_path / "omni-without-template"
    shutil.copytree(layouts("qwen2.5-omni"), folder)
    (folder / "chat_template.jinja").unlink()
    with pytest.raises(ValueError, match="has no chat template of its own.*Qwen2-Audio's format"):
        load_backend(spec(folder, "qwen2.5-omni"))


def test_a_template_of_another_family_is_refused(layouts, tmp_path):
    """Audio Flamingo 3's folder with Qwen2-Audio's template: the head has no <sound>."""
    import shutil

    folder = tmp_path / "af3-with-qwen-template"
    shutil.copytree(layouts("audio-flamingo-3"), folder)
    (folder / "chat_template.jinja").write_text((layouts("qwen2.5-omni") / "chat_template.jinja").read_text())
    backend = load_backend(spec(folder, "audio-flamingo-3"))
    with pytest.raises(ValueError, match=r"renders 0 audio placeholders \(<sound>\)"):
        backend.split_template(PREFIX)


def test_templates_that_test_for_an_audio_key_render_the_audio(layouts):
    """Qwen2-Audio's hub PR #13 template renders audio only for content items with an 'audio' key."""
    backend = load_backend(spec(layouts("qwen2-audio-pr13"), "qwen2-audio-pr13"))
    head, _ = backend.split_template(PREFIX)
    assert head.count("<|AUDIO|>") == 1 and "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n" in head


def test_a_template_that_drops_the_audio_is_an_error(layouts, tmp_path):
    import shutil

    folder = tmp_path / "no-audio"
    shutil.copytree(layouts("qwen2-audio-pr13"), folder)
    template = json.loads((folder / "chat_template.json").read_text())
    template["chat_template"] = template["chat_template"].replace("'audio' in content or", "False or")
    (folder / "chat_template.json").write_text(json.dumps(template))
    backend = load_backend(spec(folder, "qwen2-audio-pr13"))
    with pytest.raises(ValueError, match="renders 0 audio placeholders"):
        backend.score(audio(1), PREFIX, SUFFIXES, LABELS)


def test_a_cue_block_that_merges_across_the_split_is_an_error_naming_the_fix(layouts):
    backend = load_backend(spec(layouts("qwen2-audio"), "qwen2-audio"))
    old_style = PromptTemplate(template=SCHEMA_TEMPLATE, cues="\nAcoustic cues: {tokens}.", labels=tuple(LABELS))
    prefix, suffix = old_style.parts(TOKENS[1])
    with pytest.raises(ValueError, match=r"prompt.cues.*not a newline"):
        backend.score(audio(1), prefix, [suffix], LABELS)
    with pytest.raises(ValueError, match="tokenise differently together"):
        backend.generate(audio(1), prefix, [suffix])
    with pytest.raises(ValueError, match="tokenise differently together"):  # made ahead: the same check
        backend.prepare(audio(1), prefix, [suffix])
    # the fix the message names: a newline at the end of the text before {cues} splits cleanly
    fixed = PromptTemplate(
        template=SCHEMA_TEMPLATE.replace("{cues}", "\n{cues}"), cues="Cues: {tokens}.", labels=("a",)
    )
    prefix, suffix = fixed.parts(TOKENS[1])
    backend.check_split(backend.split_template(prefix)[0], [suffix + "<|im_end|>\n"])


def test_the_default_prompt_splits_where_the_real_tokenizer_does_not_merge(layouts):
    from cuealign.workflow.config import config_schema

    defaults = {k: v["default"] for k, v in config_schema()["properties"]["prompt"]["properties"].items()}
    assert (defaults["template"], defaults["cues"]) == (SCHEMA_TEMPLATE, SCHEMA_CUES)
    template = PromptTemplate(template=defaults["template"], cues=defaults["cues"], labels=tuple(LABELS))
    backend = load_backend(spec(layouts("qwen2-audio"), "qwen2-audio"))
    head, tail = backend.split_template(template.parts("")[0])
    words = ["VERY_LOW", "LOW", "MID", "HIGH", "VERY_HIGH", "BREATHY", "PRESSED", "MODAL", "ROUGH", "CREAKY"]
    backend.check_split(head, [template.parts(f"ENERGY={w}; VOICE_QUALITY={w}")[1] + tail for w in words] + [tail])


def test_a_system_prompt_replaces_the_templates_default(layouts):
    layout = "audio-flamingo-3"
    plain = load_backend(spec(layouts(layout), layout))
    assert plain.split_template(PREFIX)[0].startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    for layout in sorted(FAMILY_OF):
        backend = load_backend(spec(layouts(layout), layout, system_prompt="You rate emotions."))
        head, _ = backend.split_template(PREFIX)
        assert head.startswith("<|im_start|>system\nYou rate emotions.<|im_end|>") and "helpful" not in head
    a = plain.score(audio(1), PREFIX, SUFFIXES[:1], LABELS)
    assert np.abs(backend.score(audio(1), PREFIX, SUFFIXES[:1], LABELS) - a).max() > 1e-6


def test_case_variants_are_the_log_sum_exp_of_each_spelling(layouts):
    from scipy.special import logsumexp

    layout = "qwen2-audio"
    exact = load_backend(spec(layouts(layout), layout))
    case = load_backend(spec(layouts(layout), layout, label_variants="case"))
    assert label_variants("neutral", "case") == ["neutral", "Neutral", "NEUTRAL"]
    spellings = [v for label in LABELS for v in label_variants(label, "case")]
    each = exact.score(audio(1), PREFIX, SUFFIXES, spellings)
    expected = np.stack([logsumexp(each[:, 3 * j : 3 * j + 3], axis=1) for j in range(len(LABELS))], axis=1)
    np.testing.assert_allclose(case.score(audio(1), PREFIX, SUFFIXES, LABELS), expected, atol=1e-6)
    tokens = case.label_tokens(["angry"])
    assert tokens["angry"] == ["ang", "ry"] and set(tokens) == {"angry", "Angry", "ANGRY"}
    assert exact.label_tokens(["emphatic"]) == {"emphatic": ["em", "ph", "atic"]}


def _lora(base_path: Path, out: Path, *, trained: bool) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2AudioForConditionalGeneration

    base = Qwen2AudioForConditionalGeneration.from_pretrained(base_path)
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=not trained))
    lora.save_pretrained(out)
    return out


def test_adapters_that_change_nothing_are_refused(layouts, tmp_path):
    from safetensors.torch import load_file, save_file

    layout = "qwen2-audio"
    base = layouts(layout)
    good = _lora(base, tmp_path / "good", trained=True)
    plain = load_backend(spec(base, layout)).score(audio(1), PREFIX, SUFFIXES[:1], LABELS)
    adapted = load_backend(spec(base, layout, adapter=str(good))).score(audio(1), PREFIX, SUFFIXES[:1], LABELS)
    assert np.abs(adapted - plain).max() > 1e-4

    untrained = _lora(base, tmp_path / "untrained", trained=False)
    with pytest.raises(ValueError, match="LoRA B matrices are zero"):
        load_backend(spec(base, layout, adapter=str(untrained)))

    # the llava-layout AF3's adapters name the language model 'llm.': nothing would load
    other = _lora(base, tmp_path / "other", trained=True)
    weights = load_file(other / "adapter_model.safetensors")
    renamed = {k.replace("language_model.", "llm."): v for k, v in weights.items()}
    assert renamed.keys() != weights.keys()
    save_file(renamed, other / "adapter_model.safetensors")
    with pytest.raises(ValueError, match=r"does not fit the model.*llm\.layers"):
        load_backend(spec(base, layout, adapter=str(other)))


@pytest.mark.slow
def test_the_checkpoint_check_script_runs_on_a_released_layout(layouts, capsys):
    """benchmarks/check_checkpoint.py, which a user runs on a GPU with the real weights, passes on
    the real files with tiny weights (float32, CPU) and prints its README row."""
    import importlib.util

    script = Path(__file__).parents[2] / "benchmarks" / "check_checkpoint.py"
    module_spec = importlib.util.spec_from_file_location("check_checkpoint", script)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    layout = "qwen2.5-omni-json"
    status = module.main(
        ["--family", "qwen2.5-omni", "--path", str(layouts(layout)), "--device", "cpu", "--dtype", "float32"]
        + ["--utterances", "2", "--seconds", "1", "--max-new-tokens", "3"]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "2. split == joint for all 26 prompts" in out and "equals transformers' generate for 4 of 4" in out
    spelling = next(line for line in out.splitlines() if line.startswith("3b. "))
    assert all(name in spelling for name in ("lower case", "Capitalised", "UPPER CASE", "label_variants"))
    assert "audio window 300 s" in out and "| float32 |" in out.splitlines()[-1]


@pytest.mark.parametrize("layout", ["qwen2-audio", "qwen2.5-omni-json", "audio-flamingo-3"])
def test_a_second_wording_continues_the_audio_prefix_exactly(layouts, layout):
    """prompt.variants: a second wording for the same audio runs only its own instruction tokens on
    the kept system + audio prefix; the scores equal encoding it from scratch, and the full prompt."""
    other = "How does the speaker feel? Reply with one of these words: angry, happy, neutral, sad."
    shared = load_backend(spec(layouts(layout), layout))
    shared.score(audio(3), PREFIX, SUFFIXES, LABELS)
    extended = []
    original = shared._extend
    shared._extend = lambda *args: extended.append(args[1]) or original(*args)
    processed = []

    class Counting:  # the processor, counting the calls that make audio features
        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def __call__(self, *args, **kwargs):
            processed.append(kwargs.get("text"))
            return self.real(*args, **kwargs)

    processor, shared.processor = shared.processor, Counting(shared.processor)
    continued = shared.score(audio(3), other, SUFFIXES, LABELS)
    shared.processor = processor
    assert extended == [other] and processed == []  # the audio was neither encoded nor featurised again
    fresh = load_backend(spec(layouts(layout), layout)).score(audio(3), other, SUFFIXES, LABELS)
    np.testing.assert_allclose(continued, fresh, atol=2e-5)
    np.testing.assert_allclose(continued[1], shared.score_full(audio(3), other, SUFFIXES[1], LABELS), atol=2e-5)
    assert shared.generate(audio(3), other, SUFFIXES, max_new_tokens=3) == [
        shared.generate_one(audio(3), other, s, max_new_tokens=3) for s in SUFFIXES
    ]
    # another utterance's audio is encoded afresh
    again = shared.score(audio(4), other, SUFFIXES[:1], LABELS)[0]
    np.testing.assert_allclose(again, shared.score_full(audio(4), other, SUFFIXES[0], LABELS), atol=2e-5)


@pytest.mark.parametrize("layout", ["qwen2-audio", "qwen2.5-omni-json", "audio-flamingo-3"])
def test_prefixes_of_several_utterances_encoded_together_score_and_generate_as_each_alone(layouts, layout):
    """prefix_batch: utterances of different lengths (for AF3 one of two 30 s windows) right-padded
    into one forward pass, each row's cache cut to its own length: the scores and answers of each
    utterance encoded alone (Omni: its own multimodal rotary positions), and its other wordings
    continue from its own kept audio."""
    backend = load_backend(spec(layouts(layout), layout))
    lengths = [1.5, 3.7, 0.6] + ([35.0] if layout == "audio-flamingo-3" else [])
    audios = [audio(seed, seconds) for seed, seconds in enumerate(lengths, start=1)]
    alone = []
    for sound in audios:
        backend.forget_prefixes()
        alone.append(
            (
                backend.score(sound, PREFIX, SUFFIXES, LABELS),
                backend.generate(sound, PREFIX, SUFFIXES, max_new_tokens=4),
            )
        )
    backend.forget_prefixes()
    prefixes = backend.encode_prefixes([(sound, PREFIX, None) for sound in audios])
    assert len({prefix.ids.shape[1] for prefix in prefixes}) == len(audios)  # so the batch was padded
    for sound, prefix, (scores, answers) in zip(audios, prefixes, alone, strict=True):
        np.testing.assert_allclose(backend.score(sound, PREFIX, SUFFIXES, LABELS, prefix=prefix), scores, atol=2e-5)
        assert backend.generate(sound, PREFIX, SUFFIXES, max_new_tokens=4, prefix=prefix) == answers
    # each utterance's system + audio part is kept: another wording runs only its own tokens
    other = "How does the speaker feel? Reply with one of these words: angry, happy, neutral, sad."
    extended = []
    original = backend._extend
    backend._extend = lambda *args: extended.append(args[1]) or original(*args)
    for sound in audios:
        continued = backend.score(sound, other, SUFFIXES[1:2], LABELS)[0]
        np.testing.assert_allclose(continued, backend.score_full(sound, other, SUFFIXES[1], LABELS), atol=2e-5)
    assert extended == [other] * len(audios)
    # prepared inputs are taken as they are; a prefix given for another wording is refused
    backend.forget_prefixes()
    prepared = [backend.prepare(sound, PREFIX, SUFFIXES) for sound in audios]
    if layout == "audio-flamingo-3":  # 35 s is two windows, stacked in order with the others'
        assert [ready.inputs["input_features"].shape[0] for ready in prepared] == [1, 1, 1, 2]
    again = backend.encode_prefixes([(sound, PREFIX, ready) for sound, ready in zip(audios, prepared, strict=True)])
    for i, prefix in enumerate(again):
        assert prefix.inputs is prepared[i].inputs
        np.testing.assert_allclose(
            backend.score(audios[i], PREFIX, SUFFIXES, LABELS, prefix=prefix), alone[i][0], atol=2e-5
        )
    with pytest.raises(ValueError, match="encoded for"):
        backend.score(audios[0], other, SUFFIXES, LABELS, prefix=again[0])


@pytest.mark.parametrize("layout", ["qwen2-audio", "qwen2.5-omni", "audio-flamingo-3"])
def test_every_family_runs_in_bfloat16_as_released(layouts, layout):
    """The released weights are bfloat16 and dtype auto keeps them so. The processors return
    float32 features, which Qwen2-Audio's and Omni's encoders cast to their weights' dtype and Audio
    Flamingo 3's does not: its bfloat16 convolution refused them (found at the released size), so
    every floating input goes in as the weights' dtype. In bfloat16 the cached path and the whole
    prompt are the same computation rounded in another order: they agree to bfloat16's precision."""
    backend = load_backend(spec(layouts(layout), layout, dtype="bfloat16"))
    assert backend.dtype == "bfloat16"
    scores = backend.score(audio(1), PREFIX, SUFFIXES, LABELS, batch_size=2)
    full = np.array([backend.score_full(audio(1), PREFIX, suffix, LABELS) for suffix in SUFFIXES])
    assert np.isfinite(scores).all() and np.isfinite(full).all()
    step = 2.0 ** (np.floor(np.log2(np.abs(full).max())) - 7)  # bfloat16's spacing at the scores' size
    assert np.abs(scores - full).max() <= step and (scores.argmax(axis=1) == full.argmax(axis=1)).all()
    answers = backend.generate(audio(1), PREFIX, SUFFIXES, max_new_tokens=3, batch_size=2)
    assert len(answers) == len(SUFFIXES) and all(isinstance(a, str) for a in answers)
