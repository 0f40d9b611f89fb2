"""Load and validate the workflow configuration against its JSON schema, filling defaults."""

from __future__ import annotations

import copy
import json
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cuealign.models.registry import finetune_dtype


class ConfigError(ValueError):
    """A configuration value is missing, misspelt or out of range."""


@cache
def config_schema() -> dict[str, Any]:
    """The configuration schema shipped with the package."""
    text = resources.files("cuealign").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def _extend_with_defaults(validator_class):
    # The jsonschema FAQ recipe: fill a property's default before validating it, so that
    # defaults nested inside if/then branches are filled too.
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _extend_with_defaults(jsonschema.Draft202012Validator)


def _where(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    return f"config: {path}" if path else "config"


def _alternative(schema: dict) -> str:
    """One branch of a oneOf/anyOf in words, e.g. 'a whole number >= 1' or "'auto'"."""
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(map(repr, schema["enum"]))
    kind = {"integer": "a whole number", "number": "a number", "string": "a string", "boolean": "true or false"}
    words = kind.get(schema.get("type"), f"a {schema.get('type', 'value')}")
    if "minimum" in schema:
        words += f" >= {schema['minimum']}"
    if "maximum" in schema:
        words += f" <= {schema['maximum']}"
    return words


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config`` in place, fill its defaults and return it.

    Raises ConfigError listing every problem with the key it concerns.
    """
    validator = _Validator(config_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for error in errors:
            # if/then failures repeat the branch's own errors; report the leaves only.
            if error.validator in {"if", "allOf"}:
                continue
            message = f"{_where(error)}: {error.message}"
            if error.validator == "additionalProperties":
                allowed = sorted(error.schema.get("properties", {}))
                message += f"; allowed keys here: {', '.join(allowed)}"
            if error.validator in {"oneOf", "anyOf"}:
                message = f"{_where(error)}: {error.instance!r} is not " + " or ".join(
                    map(_alternative, error.validator_value)
                )
            lines.append(message)
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(dict.fromkeys(lines)))
    ordered = _sorted_keys(config, ())
    config.clear()  # in place: Snakemake's config object is the one the rules read
    config.update(ordered)
    return config


# Mappings whose order means something, kept as written: the concepts' order is their order in
# the prompt's cue block; the comparison families' is the order of the tables' families.
ORDERED = {("tokens", "concepts"), ("analysis", "families")}


def _sorted_keys(value: Any, path: tuple[str, ...]) -> Any:
    """``value`` with every mapping's keys in sorted order, except under ORDERED (lists keep
    theirs). Snakemake reruns a job when the repr of its params changes, and a dict's repr follows
    its key order: without this, moving a key in config.yaml would rerun every stage reading it."""
    if path[-2:] in ORDERED:
        return value
    if isinstance(value, dict):
        return {key: _sorted_keys(value[key], path + (str(key),)) for key in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted_keys(item, path) for item in value]
    return value


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML configuration file and validate it."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return validate_config(config)


FINETUNED_MODEL_DIR = "results/{corpus}/{model}/finetune/model"


def model_entries(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every model to probe: config: models, and one entry per config: finetune model, which
    points at what the finetune rule saves (the whole model, or base + the adapter for LoRA) and
    is probed on its own corpus only. Entries get the models schema's defaults."""
    clash = sorted(set(config["models"]) & set(config["finetune"]))
    if clash:
        raise ConfigError(f"config: finetune names {clash} are also in models; a model name must be unique")
    entries = dict(config["models"])
    for name, spec in config["finetune"].items():
        folder = FINETUNED_MODEL_DIR.format(corpus=spec["corpus"], model=name)
        entry = {
            "family": spec["family"],
            "device": spec["device"],
            "dtype": finetune_dtype(spec),  # probed as trained
            "numerics": spec["numerics"],
            "allow_pickle": spec["allow_pickle"],
            "known_training_overlap": spec["known_training_overlap"],
            **spec["probe"],
        }
        entry |= {"path": spec["base"], "adapter": folder} if spec["method"] == "lora" else {"path": folder}
        entry["corpora"] = [spec["corpus"]]
        _Validator(config_schema()["properties"]["models"]["additionalProperties"]).validate(entry)
        entries[name] = entry
    return entries


def model_entry(path: str | Path, family: str = "qwen2-audio", **settings: Any) -> dict[str, Any]:
    """config: models.<name> for the model at ``path`` as the workflow makes it: validated, every
    default filled from the schema (the code reads each key and has no defaults of its own). For
    scripts, benchmarks and tests that load a model outside the workflow."""
    entry = {"path": str(path), "family": family, **settings}
    try:
        config = validate_config({"corpora": {"demo": {"type": "synthetic"}}, "models": {"model": entry}})
    except ConfigError as error:
        raise ConfigError(str(error).replace("config: models.model", "model entry")) from None
    return config["models"]["model"]


ALLOW_TEMPLATES = "CUEALIGN_ALLOW_YTE"


def refuse_templates(paths, *, environ=None) -> None:
    """Refuse config files that ask Snakemake to evaluate them as YTE templates (a top-level
    ``__use_yte__: true``): their Python expressions run when Snakemake loads the file, so a config
    file received from someone else could run anything. Opting in: ``CUEALIGN_ALLOW_YTE=1`` on the
    command line. Read as plain YAML (nothing evaluated); files that are not there or not YAML are
    left to Snakemake's own messages.

    Called before the workflow's ``configfile:`` line, so config.yaml is refused before Snakemake
    evaluates it; a file given with --configfile Snakemake loads (and evaluates) before any
    workflow code runs, so for it the refusal stops the run, not the expressions.
    """
    environ = os.environ if environ is None else environ
    if environ.get(ALLOW_TEMPLATES) == "1":
        return
    templated = []
    for path in paths:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("__use_yte__"):
            templated.append(str(path))
    if templated:
        raise ConfigError(
            f"{', '.join(templated)}: __use_yte__: true makes Snakemake run the file's Python expressions (YTE "
            "templates) when it loads it, so a config file could run any code. cuealign refuses templated "
            f"configs unless you opt in: {ALLOW_TEMPLATES}=1 snakemake ... (only for a file you wrote or have "
            "read). A file given with --configfile was loaded, and its expressions run, by Snakemake before "
            "this check; nothing else ran. Or remove __use_yte__ and write the values out."
        )


LAST_CONFIG = ".snakemake/cuealign-last-config.json"  # the config of the last run that completed


def _flat(value, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out |= _flat(inner, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix: value}


_MISSING = object()


def changed_keys(previous: dict, current: dict) -> list[str]:
    """The dotted keys whose value differs (added, removed or changed); the order of keys in a
    mapping does not count, the order of a list does."""
    before, after = (
        _flat(json.loads(json.dumps(previous, default=str))),
        _flat(json.loads(json.dumps(current, default=str))),
    )
    return sorted(key for key in before.keys() | after.keys() if before.get(key, _MISSING) != after.get(key, _MISSING))


def change_summary(config: dict, last: str | Path = LAST_CONFIG) -> str | None:
    """One line naming the config keys changed since the last completed run (None when none did,
    or when there was no such run): what a rerun will be about, instead of whole configs."""
    try:
        previous = json.loads(Path(last).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (keys := changed_keys(previous, config)):
        return None
    shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
    return (
        f"cuealign: {len(keys)} config key{'s' if len(keys) > 1 else ''} changed since the last completed run: "
        f"{shown}. The stages that read {'them' if len(keys) > 1 else 'it'} rerun; `snakemake -n --quiet rules` "
        "counts the jobs before you start."
    )


def remember_config(config: dict, last: str | Path = LAST_CONFIG) -> None:
    """Keep ``config`` as the last completed run's (written then renamed: never half a file)."""
    target = Path(last)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(config, sort_keys=True, default=str), encoding="utf-8")
    partial.replace(target)
