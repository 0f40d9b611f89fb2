import copy
from pathlib import Path

import pytest
import yaml

from cuealign.workflow.config import ConfigError, load_config, validate_config


def test_default_config_is_valid_and_defaults_are_filled():
    config = load_config("config.yaml")
    demo = config["corpora"]["demo"]
    assert demo["type"] == "synthetic" and demo["sample_rate"] == 16000
    assert config["audio_checks"]["silence_peak"] == 1e-4
    assert config["shards"] == "auto"  # one shard per 5,000 utterances, at least 2


def test_defaults_inside_a_corpus_type_are_filled():
    config = validate_config({"corpora": {"iemocap": {"type": "iemocap", "root": "/data/IEMOCAP"}}})
    spec = config["corpora"]["iemocap"]
    assert spec["test_sessions"] == [5] and spec["dev_sessions"] == []
    assert spec["label_map"]["exc"] == "happy" and spec["label_map"]["fru"] is None
    # a default is a copy, not the schema's own object
    spec["label_map"]["exc"] = "changed"
    again = validate_config({"corpora": {"i": {"type": "iemocap", "root": "/x"}}})
    assert again["corpora"]["i"]["label_map"]["exc"] == "happy"


@pytest.mark.parametrize(
    "config, message",
    [
        ({"corpra": {}}, r"config: Additional properties are not allowed \('corpra' was unexpected\)"),
        (
            {"corpora": {"demo": {"type": "synthetic", "sead": 1}}},
            r"config: corpora.demo: .*'sead' was unexpected.*allowed keys here: .*seed",
        ),
        ({"corpora": {"demo": {"type": "iemocapp"}}}, r"config: corpora.demo.type: 'iemocapp' is not one of"),
        ({"corpora": {"i": {"type": "iemocap"}}}, r"config: corpora.i: 'root' is a required property"),
        (
            {"corpora": {"d": {"type": "synthetic"}}, "audio_checks": {"on_bad_audio": "ignore"}},
            r"audio_checks.on_bad_audio: 'ignore' is not one of",
        ),
        (
            {"corpora": {"d": {"type": "synthetic", "male_speakers": 0}}},
            r"corpora.d.male_speakers: 0 is less than the minimum of 1",
        ),
        ({"corpora": {}}, r"config: corpora: .*should be non-empty|does not have enough properties"),
        ({"corpora": {"bad/name": {"type": "synthetic"}}}, r"config: corpora: 'bad/name' does not match"),
        (
            {"corpora": {"d": {"type": "synthetic"}}, "shards": "many"},
            r"config: shards: 'many' is not a whole number >= 1 or 'auto'$",
        ),
        (
            {"corpora": {"d": {"type": "synthetic"}}, "shards": 0},
            r"config: shards: 0 is not a whole number >= 1 or 'auto'",
        ),
        (
            {
                "corpora": {"d": {"type": "synthetic"}},
                "models": {"m": {"family": "qwen2-audio", "path": "/m", "prefix_batch": 0}},
            },
            r"config: models.m.prefix_batch: 0 is less than the minimum of 1",
        ),
    ],
)
def test_invalid_config_names_the_key(config, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(copy.deepcopy(config))


def test_key_order_in_the_file_does_not_change_the_config(tmp_path):
    # Snakemake reruns a job when the repr of its params changes; moving a key must not do that.
    text = yaml.safe_load(Path("config.yaml").read_text())
    reordered = tmp_path / "config.yaml"
    reordered.write_text(yaml.safe_dump(reverse_keys(text), sort_keys=False))
    assert list(yaml.safe_load(reordered.read_text())["corpora"]["demo"]) != list(text["corpora"]["demo"])
    original, moved = load_config("config.yaml"), load_config(reordered)
    assert repr(moved) == repr(original)
    # except where order is meaning: concepts appear in the prompt in the order written
    labels = ["VERY_LOW", "LOW", "MID", "HIGH", "VERY_HIGH"]
    concepts = {
        "PITCH": {"descriptors": {"F0semitoneFrom27.5Hz_sma3nz": 1}, "labels": labels},
        "ENERGY": {"descriptors": {"Loudness_sma3": 1}, "labels": labels},
    }
    config = validate_config({"corpora": {"d": {"type": "synthetic"}}, "tokens": {"concepts": concepts}})
    assert list(config["tokens"]["concepts"]) == ["PITCH", "ENERGY"]
    assert list(load_config("config.yaml")["tokens"]["concepts"]) == [
        "ENERGY",
        "PITCH",
        "BRIGHTNESS",
        "DYNAMICS",
        "FORMANTS",
    ]
    assert moved["conditions"]["swap"] == original["conditions"]["swap"]  # lists keep their order


def reverse_keys(value):
    if isinstance(value, dict):
        return {key: reverse_keys(value[key]) for key in reversed(value)}
    return value


def test_unreadable_yaml_names_the_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("corpora: [unclosed\n")
    with pytest.raises(ConfigError, match="config.yaml: not valid YAML"):
        load_config(path)


def test_every_schema_property_is_described():
    from cuealign.workflow.config import config_schema

    def walk(node, where):
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if name != "type":
                    assert "description" in sub, f"{where}.{name} has no description"
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(config_schema(), "schema")
    assert yaml.safe_dump(config_schema())  # round-trips


def test_the_code_has_no_defaults_of_its_own_for_schema_keys():
    """Defaults are filled once, from the schema, when the config is loaded: a `spec.get("key",
    default)` in the package for a key the schema defaults would be a second default that can
    drift from it (as finetune's checkpoint_every 0 did from the schema's 200)."""
    import ast
    from pathlib import Path

    import cuealign
    from cuealign.workflow.config import config_schema

    schema = config_schema()["properties"]
    defaulted = set()
    for section in ("models", "finetune"):
        entry = schema[section]["additionalProperties"]
        defaulted |= {key for key, sub in entry["properties"].items() if "default" in sub}
    assert {"checkpoint_every", "prefix_batch", "allow_pickle", "label_variants"} <= defaulted
    found = []
    for path in Path(cuealign.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "spec"
                and len(node.args) == 2
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in defaulted
            ):
                found.append(f"{path.name}:{node.lineno} spec.get({node.args[0].value!r}, ...)")
    assert not found, "defaults written again in the code (read spec[key]):\n" + "\n".join(found)


def test_the_configuration_reference_is_the_schemas():
    """docs/configuration.md is generated from the schema; it fails here when either changed alone
    (run `python -m cuealign.workflow.reference`)."""
    import copy
    from pathlib import Path

    from cuealign.workflow.config import config_schema
    from cuealign.workflow.reference import TARGET, reference, rows

    committed = (Path(__file__).parents[2] / TARGET).read_text()
    assert committed == reference(), f"{TARGET} is stale: run `python -m cuealign.workflow.reference`"
    keys = {key for key, *_ in rows()}
    # every documented key, defaults and descriptions included, nested and per corpus type
    assert {"analysis.ci_method", "models.<name>.numerics", "finetune.<name>.architecture.audio_window_s"} <= keys
    assert {"corpora.<name>.sessions", "corpora.<name>.table", "conditions.corrupt_p"} <= keys
    row = next(r for r in rows() if r[0] == "analysis.ci_method")
    assert "'jackknife-t'" in row[1] and row[2] == "`'jackknife-t'`" and "coverage" in row[3]
    changed = copy.deepcopy(config_schema())
    changed["properties"]["analysis"]["properties"]["seed"]["description"] = "another text"
    assert reference(changed) != committed


def test_a_cache_dir_that_cannot_be_written_is_refused_naming_it(tmp_path, monkeypatch):
    """Tested with os.access refusing (as root, as CI runs, every folder is writable)."""
    from cuealign.workflow import checks

    checks._check_cache_dir({"cache_dir": str(tmp_path / "cache")})  # writable: nothing said
    monkeypatch.setattr(checks.os, "access", lambda path, mode: False)
    with pytest.raises(ValueError, match=rf"cache_dir '{tmp_path}/cache': '{tmp_path}' cannot be written"):
        checks._check_cache_dir({"cache_dir": str(tmp_path / "cache")})
