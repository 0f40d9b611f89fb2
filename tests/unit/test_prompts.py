import pandas as pd
import pytest

from cuealign.prompts import AUDIO_MARKER, PROMPT_COLUMNS, PromptTemplate, build_prompts

DEFAULT = "{audio}What emotion does the speaker express? Answer with one word from: {labels}.{cues}"
CUES = "\nAcoustic cues: {tokens}."


def test_prefix_is_shared_and_suffix_holds_the_cues():
    template = PromptTemplate(DEFAULT, CUES, ("angry", "sad"))
    prefix, suffix = template.parts("ENERGY=HIGH")
    assert prefix == "What emotion does the speaker express? Answer with one word from: angry, sad."
    assert suffix == "\nAcoustic cues: ENERGY=HIGH."
    assert template.parts("") == (prefix, "")


@pytest.mark.parametrize(
    "template, cues, message",
    [
        ("What emotion? {labels}{cues}", CUES, "exactly one {audio} slot"),
        ("{audio}{audio}{cues}", CUES, "exactly one {audio} slot"),
        ("{audio}What emotion? {labels}", CUES, "one {cues} slot after {audio}"),
        ("Listen: {audio}{cues}", CUES, "must start with {audio}"),
        ("{audio}{labels}{cues}{model}", CUES, r"unknown slots \['model'\]"),
        (DEFAULT, "\nCues here.", "prompt.cues needs exactly one {tokens}"),
    ],
)
def test_a_template_without_its_slots_is_an_error(template, cues, message):
    with pytest.raises(ValueError, match=message):
        PromptTemplate(template, cues, ("a",))


def test_build_prompts_joins_the_manifest():
    manifest = pd.DataFrame(
        {
            "utt_id": ["u1", "u2"],
            "label": ["sad", "angry"],
            "split": "test",
            "speaker": "s",
            "path": ["/a.wav", "/b.wav"],
            "sha256": ["x", "y"],
            "duration_s": [1.0, 2.0],
        }
    )
    conditions = pd.DataFrame(
        {
            "utt_id": ["u1", "u1", "u2"],
            "condition": ["none", "aligned", "aligned"],
            "kind": ["none", "aligned", "aligned"],
            "p": None,
            "seed": None,
            "concept": None,
            "audio": "original",
            "token.E": [None, "H", "L"],
            "token_string": ["", "E=H", "E=L"],
        }
    )
    prompts = build_prompts(conditions, manifest, PromptTemplate(DEFAULT, CUES, ("angry", "sad")))
    assert list(prompts.columns) == PROMPT_COLUMNS + ["token.E"]
    assert prompts["token.E"].isna().tolist() == [True, False, False] and prompts["token.E"].iloc[1] == "H"
    assert prompts["text"].iloc[1] == AUDIO_MARKER + prompts["prefix_text"].iloc[1] + "\nAcoustic cues: E=H."
    assert prompts["prefix_text"].nunique() == 1
    assert prompts["path"].tolist() == ["/a.wav", "/a.wav", "/b.wav"]
    with pytest.raises(ValueError, match="not in the manifest"):
        build_prompts(conditions.assign(utt_id="u9"), manifest, PromptTemplate(DEFAULT, CUES, ("a",)))


def test_a_class_missing_from_the_evaluated_split_is_an_error_naming_it(tiny_study):
    from cuealign.config import validate_config
    from cuealign.interventions import conditions_from_config
    from cuealign.prompts import prompt_table
    from cuealign.tokens import TokensMeta

    spec = validate_config({"corpora": {"d": {"type": "synthetic"}}})["conditions"]
    conditions = conditions_from_config(spec, TokensMeta.of(tiny_study["meta"]).names)
    manifest = tiny_study["manifest"].copy()
    args = dict(conditions=conditions, prompt=tiny_study["prompt"], split="test")
    assert prompt_table(tiny_study["tokens"], manifest, tiny_study["meta"], **args)["label"].nunique() == 4
    # every test utterance of 'sad' failed its audio checks: a whole class gone from the split
    manifest.loc[(manifest["split"] == "test") & (manifest["label"] == "sad"), "status"] = "silent"
    with pytest.raises(
        ValueError,
        match=r"class\(es\) \['sad'\] have no usable utterance in the evaluated split "
        r"'test' \(they are in: sad: \['train'\]\).*label_map",
    ):
        prompt_table(tiny_study["tokens"], manifest, tiny_study["meta"], **args)
