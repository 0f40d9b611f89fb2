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
    # the texts are made as columns: each row is what the template's parts() says for its tokens,
    # whatever the wording (literal braces, the cues in the middle of the instruction, {labels} twice)
    for template, cues in [
        (DEFAULT, CUES),
        ("{audio}Emotion? {{one of}} {labels}{cues} Answer: one of {labels}.", " [cues: {tokens}] {{sic}}"),
    ]:
        made = PromptTemplate(template, cues, ("angry", "sad"))
        rows = build_prompts(conditions, manifest, made)
        for row in rows.itertuples():
            assert (row.prefix_text, row.suffix_text) == made.parts(row.token_string)
            assert row.text == AUDIO_MARKER + row.prefix_text + row.suffix_text
    with pytest.raises(ValueError, match="not in the manifest"):
        build_prompts(conditions.assign(utt_id="u9"), manifest, PromptTemplate(DEFAULT, CUES, ("a",)))


def test_a_class_missing_from_the_evaluated_split_is_an_error_naming_it(tiny_study):
    from cuealign.interventions import conditions_from_config
    from cuealign.prompts import prompt_table
    from cuealign.tokens import TokensMeta
    from cuealign.workflow.config import validate_config

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


def test_prompt_variants_are_a_dimension_of_the_prompts(tiny_study, tmp_path):
    """Each wording (and token format) gives every utterance x condition its own prompt, all of an
    utterance's rows together; the main wording's rows are those of a study without variants."""
    from cuealign.interventions import conditions_from_config
    from cuealign.prompts import prompt_table
    from cuealign.tokens import TokensMeta
    from cuealign.workflow.config import validate_config

    spec = validate_config({"corpora": {"d": {"type": "synthetic"}}})["conditions"]
    conditions = conditions_from_config(spec, TokensMeta.of(tiny_study["meta"]).names)
    wording = "{audio}How does the speaker feel? Choose one of: {labels}.{cues}"
    prompt = tiny_study["prompt"] | {"variants": {"feel": {"template": wording}, "terse": {"cues": " Cues: {tokens}."}}}
    args = dict(conditions=conditions, split="test")
    plain = prompt_table(
        tiny_study["tokens"], tiny_study["manifest"], tiny_study["meta"], prompt=tiny_study["prompt"], **args
    )
    swept = prompt_table(tiny_study["tokens"], tiny_study["manifest"], tiny_study["meta"], prompt=prompt, **args)
    assert len(swept) == 3 * len(plain) and swept["variant"].value_counts().to_dict() == dict.fromkeys(
        ["main", "feel", "terse"], len(plain)
    )
    main = swept[swept["variant"] == "main"].reset_index(drop=True)
    pd.testing.assert_frame_equal(main, plain.reset_index(drop=True), check_categorical=False)
    # the text before the cue block is held once per wording, not once per row, also as parquet
    assert swept["prefix_text"].dtype == "category" and len(swept["prefix_text"].cat.categories) == 2
    swept.to_parquet(tmp_path / "prompts.parquet", index=False)
    again = pd.read_parquet(tmp_path / "prompts.parquet")
    assert again["prefix_text"].dtype == "category" and again["prefix_text"].astype(str).equals(
        swept["prefix_text"].astype(str)
    )
    # an utterance's shard holds every wording of it
    from cuealign.shards import split_by_shard

    for shard in split_by_shard(swept, tiny_study["manifest"], 2):
        assert (shard.groupby("utt_id")["variant"].nunique() == 3).all()
    by = swept.set_index(["variant", "utt_id", "condition"])
    row = plain[plain["token_string"] != ""].iloc[0]
    key = (row["utt_id"], row["condition"])
    assert by.loc[("feel", *key), "prefix_text"].startswith("How does the speaker feel?")
    assert by.loc[("feel", *key), "suffix_text"] == row["suffix_text"]
    assert by.loc[("terse", *key), "prefix_text"] == row["prefix_text"]
    assert by.loc[("terse", *key), "suffix_text"].startswith(" Cues: ")
    # the texts (and so the answer cache keys, made of them) differ between every two wordings
    texts = swept.groupby(["utt_id", "condition"])["text"].nunique()
    assert (texts[swept[swept["token_string"] != ""].set_index(["utt_id", "condition"]).index.unique()] == 3).all()


@pytest.mark.parametrize(
    "variants, message",
    [
        ({"short": {"template": "{audio}Which emotion?"}}, r"prompt\.variants\.short\.template needs one \{cues\}"),
        (
            {"same": {"cues": " Acoustic cues measured from the audio: {tokens}."}},
            r"prompt\.variants\.same is the same",
        ),
        ({"main": {"template": "{audio}Which?{cues}"}}, r"prompt\.variants.*main"),
        ({"empty": {}}, r"prompt\.variants\.empty"),
    ],
)
def test_bad_prompt_variants_are_errors_naming_the_variant(variants, message):
    import copy

    import yaml

    from cuealign.workflow.checks import ConfigError, check_config
    from cuealign.workflow.config import validate_config
    from tests.workflow.conftest import REPO

    config = copy.deepcopy(yaml.safe_load((REPO / "config.yaml").read_text()))
    config["prompt"] = {"variants": variants}
    with pytest.raises((ConfigError, ValueError), match=message):
        check_config(validate_config(config))


@pytest.mark.parametrize(("shards", "draw"), [(1, "vocabulary"), (3, "vocabulary"), (4, "other")])
def test_one_shards_prompts_are_that_shards_rows_of_the_whole_table(tiny_study, shards, draw):
    """build_prompts runs one job per shard: its rows must be exactly the rows split_by_shard takes
    from the whole table (shuffles and corruption drawn over the whole split), every wording."""
    from cuealign.interventions import conditions_from_config
    from cuealign.prompts import prompt_table
    from cuealign.shards import split_by_shard
    from cuealign.tokens import TokensMeta
    from cuealign.workflow.config import validate_config

    spec = validate_config({"corpora": {"d": {"type": "synthetic"}}})["conditions"] | {"swap": ["ENERGY"]}
    conditions = conditions_from_config(spec, TokensMeta.of(tiny_study["meta"]).names)
    prompt = tiny_study["prompt"] | {"variants": {"terse": {"cues": " Cues: {tokens}."}}}
    args = dict(conditions=conditions, split="test", prompt=prompt, corrupt_draw=draw)
    data = (tiny_study["tokens"], tiny_study["manifest"], tiny_study["meta"])
    whole = prompt_table(*data, **args)
    assert {"shuffle", "corrupt", "swap"} <= set(whole["kind"])
    expected = split_by_shard(whole, tiny_study["manifest"], shards)
    for shard in range(shards):
        own = prompt_table(*data, **args, shard=shard, shards=shards)
        assert len(own) > 0 and (shards == 1 or own["utt_id"].nunique() < whole["utt_id"].nunique())
        pd.testing.assert_frame_equal(own.reset_index(drop=True), expected[shard], obj=f"shard {shard}")
