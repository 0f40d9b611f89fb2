"""Every check of the configuration that can run before any job, in one place.

The Snakefile calls :func:`check_config` right after the schema validation (ranges, types,
uniqueness and misspelt keys live in the schema itself). What is checked here needs code: the
conditions against the concepts, the prompt template, the token options, the models and
fine-tuning entries against the files on disk, duplicate keys in the config files (YAML keeps
the last one silently) and a corpus table's columns. Every problem is collected and reported
at once, each naming the key or file and the fix.

Nothing here imports torch or transformers: each cluster job parses the workflow again.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from cuealign.models.registry import check_finetune_spec, check_model_spec
from cuealign.workflow.config import ConfigError, model_entries
from cuealign.workflow.resources import UTTERANCES_PER_SHARD


class _DuplicateKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a mapping key written twice (plain YAML keeps the last)."""


def _construct_mapping(loader: _DuplicateKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(
                f"{key_node.start_mark.name}: line {line}: key {key!r} appears twice (first on line {seen[key]}); "
                "YAML keeps only the last one, so everything under the first would be silently ignored. "
                "Merge the two blocks into one"
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_DuplicateKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def check_duplicate_keys(path: str | Path) -> None:
    """Raise ConfigError naming the line of any key that a mapping of ``path`` holds twice."""
    try:
        with open(path) as stream:
            yaml.load(stream, Loader=_DuplicateKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(str(exc)) from None  # without the YAML parser's frames


def token_options(config: dict, corpus: str) -> dict:
    """The top-level tokens block with the corpus' own overrides on top."""
    return config["tokens"] | config["corpora"][corpus].get("tokens", {})


def corpus_setting(config: dict, corpus: str, key: str) -> Any:
    """A corpus' own value of a top-level setting, else the top-level one."""
    return config["corpora"][corpus].get(key, config[key])


def _check_conditions(config: dict) -> None:
    from cuealign.interventions import conditions_from_config
    from cuealign.tokens import VOICE_QUALITY

    conditions_from_config(config["conditions"], [*config["tokens"]["concepts"], VOICE_QUALITY])


def _check_families(config: dict) -> None:
    """User-declared comparison families (the paper's default leaves out what a run lacks)."""
    from cuealign.interventions import PAPER_FAMILIES, check_families, conditions_from_config
    from cuealign.tokens import VOICE_QUALITY

    families = config["analysis"]["families"]
    if families == PAPER_FAMILIES:
        return
    conditions = conditions_from_config(config["conditions"], [*config["tokens"]["concepts"], VOICE_QUALITY])
    check_families(families, conditions)


def _check_finetune_split(config: dict, name: str, spec: dict) -> None:
    """A model trained on the utterances it is then evaluated on measures memory, not cue use."""
    if spec["corpus"] not in config["corpora"]:
        return  # named by check_finetune_spec
    evaluated = corpus_setting(config, spec["corpus"], "evaluate_split")
    if spec.get("allow_evaluated_split"):
        return
    if spec["split"] == "dev" and not _has_dev_split(config["corpora"][spec["corpus"]]):
        raise ValueError(
            f"config: finetune.{name}.split is 'dev', but corpus {spec['corpus']!r} has no dev split: train on "
            f"'train', or give the corpus one ({_DEV_SETTING[config['corpora'][spec['corpus']]['type']]})"
        )
    if spec["split"] == evaluated or "all" in (spec["split"], evaluated):
        raise ValueError(
            f"config: finetune.{name}.split is {spec['split']!r} and corpus {spec['corpus']!r} evaluates split "
            f"{evaluated!r}: the model would be tested on utterances it was trained on. Train on train (and "
            "evaluate test), or set finetune." + name + ".allow_evaluated_split: true knowingly"
        )


_DEV_SETTING = {
    "synthetic": "dev_speakers_per_gender: 1 or more",
    "iemocap": "dev_sessions, e.g. [4]",
    "aibo": "dev_fraction above 0, or dev_speakers",
    "manifest": "rows with split dev in its table",
}


def _has_dev_split(spec: dict) -> bool:
    """Whether a corpus' settings (and, for a table corpus, its split column) give a dev split."""
    kind = spec["type"]
    if kind == "synthetic":
        return spec["dev_speakers_per_gender"] > 0
    if kind == "iemocap":
        return bool(spec["dev_sessions"]) and spec["folds"] == "none"
    if kind == "aibo":
        return bool(spec.get("dev_speakers")) or spec["dev_fraction"] > 0
    listed = _listed(spec)
    return listed is None or bool((listed["split"] == "dev").any())  # None: the corpus' own check names it


def _listed(spec: dict):
    """The utterances a (non-synthetic) corpus lists, as its reader reads them, or None when it
    cannot be read (its own check names why)."""
    from cuealign.corpora import CorpusError, read_corpus

    try:
        return read_corpus({k: v for k, v in spec.items() if k not in ("tokens", "evaluate_split", "folds")}).table
    except (CorpusError, OSError):
        return None


def _check_shards(config: dict) -> None:
    """A number of shards no larger than any corpus' evaluated utterances: each shard is an
    inference job that loads the model (shards: auto follows each corpus' size)."""
    if config["shards"] == "auto":
        return
    from cuealign.corpora.synthetic import synthetic_split_size

    for name, spec in config["corpora"].items():
        split = corpus_setting(config, name, "evaluate_split")
        if spec["type"] == "synthetic":
            evaluated = synthetic_split_size(spec, split)
        elif (listed := _listed(spec)) is None:
            continue  # its own check names what is wrong with the corpus
        else:
            evaluated = len(listed) if split == "all" else int((listed["split"] == split).sum())
        if config["shards"] > evaluated:
            raise ValueError(
                f"config: shards is {config['shards']}, but corpus {name!r} lists {evaluated} utterances in its "
                f"evaluated split ({split!r}): every shard is an inference job that loads the model. Set shards "
                f"to at most {max(evaluated, 1)}, or shards: auto (one per {UTTERANCES_PER_SHARD} utterances)"
            )


def _check_folds(config: dict) -> None:
    import copy

    from cuealign.workflow.folds import expand_folds

    expand_folds(copy.deepcopy(config))


def _check_prompt(config: dict) -> None:
    from cuealign.prompts import MAIN_VARIANT, PromptTemplate, prompt_variants

    variants = prompt_variants(config["prompt"])
    seen: dict[tuple[str, str], str] = {}
    for name, (template, cues) in variants.items():
        where = "prompt" if name == MAIN_VARIANT else f"prompt.variants.{name}"
        try:
            filled = PromptTemplate(template, cues, ("angry", "sad"))
        except ValueError as exc:
            raise ValueError(str(exc).replace("config: prompt.", f"config: {where}.")) from None
        try:
            filled.parts("ENERGY=HIGH")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"config: {where}.template or {where}.cues cannot be filled in ({exc!r}); "
                "use only {audio}, {labels}, {cues} and {tokens}, and write a literal brace as {{ or }}"
            ) from None
        if (template, cues) in seen:
            raise ValueError(
                f"config: {where} is the same prompt as {seen[(template, cues)]}: a variant must change the "
                "wording (template) or the token format (cues)"
            )
        seen[(template, cues)] = where


def _check_tokens(config: dict, corpus: str | None) -> None:
    """The top-level tokens block (corpus None: also when every corpus overrides part of it) or
    one corpus' merged options."""
    from cuealign.tokens import TokenOptions

    TokenOptions.from_config(config["tokens"] if corpus is None else token_options(config, corpus))


def _check_table_corpus(name: str, spec: dict) -> None:
    """A manifest corpus: its root and table exist, and a table without a split column says
    what its rows are (otherwise every utterance would silently become test)."""
    where = f"config: corpora.{name}"
    if not Path(spec["root"]).expanduser().is_dir():
        raise ValueError(f"{where}.root {spec['root']!r} is not a folder")
    table = Path(spec["table"]).expanduser()
    if not table.is_file():
        raise ValueError(f"{where}.table {spec['table']!r} does not exist")
    with open(table, newline="", encoding="utf-8", errors="replace") as stream:
        header = next(csv.reader(stream, delimiter="\t" if table.suffix.lower() in {".tsv", ".tab"} else ","), [])
    if "split" not in [column.strip() for column in header] and spec.get("default_split") is None:
        raise ValueError(
            f"{where}.table {spec['table']!r} has no split column, so nothing says which utterances train the "
            "tokens (and any fine-tuning) and which are evaluated. Add a split column (train/dev/test, "
            "speaker-disjoint), or set default_split: test to evaluate every row (then set tokens.fit_split: test "
            "or all in the corpus' tokens block, since there is no train split)"
        )


def _check_label_map(name: str, spec: dict) -> None:
    """A label map leaves at least two classes, none two that differ only in case (an answer
    could not tell them apart)."""
    if "label_map" not in spec:
        return
    where = f"config: corpora.{name}.label_map"
    classes = sorted({str(label) for label in spec["label_map"].values() if label is not None})
    if len(classes) < 2:
        raise ValueError(
            f"{where} leaves {len(classes)} class{'' if len(classes) == 1 else 'es'} ({classes}): nothing to "
            "recognise; map at least two raw labels to different classes (null drops a raw label)"
        )
    folded: dict[str, list[str]] = {}
    for label in classes:
        folded.setdefault(label.casefold().strip(), []).append(label)
    if clashes := [group for group in folded.values() if len(group) > 1]:
        raise ValueError(f"{where}: classes {clashes} differ only in case; a generated answer cannot tell them apart")


def _check_cache_dir(config: dict) -> None:
    """The cache folder (or the folder it will be made in) can be written."""
    folder = Path(config["cache_dir"]).expanduser()
    existing = next(p for p in [folder, *folder.absolute().parents] if p.exists())
    if not existing.is_dir():
        raise ValueError(f"config: cache_dir {str(folder)!r}: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"config: cache_dir {str(folder)!r}: {str(existing)!r} cannot be written; point cache_dir at a "
            "folder you can write (it holds LLDs and answers shared by every run)"
        )


def unprobed_corpora(config: dict) -> list[str]:
    """Corpora that no model (probed or fine-tuned) is run on."""
    probed = set()
    for spec in model_entries(config).values():
        probed |= set(spec.get("corpora") or config["corpora"])
    # a fold corpus (IEMOCAP leave-one-session-out) is probed through its corpus
    return [c for c, spec in config["corpora"].items() if c not in probed and "fold_of" not in spec]


def unprobed_note(config: dict) -> str | None:
    """One line for the start of a run: corpora that get tokens and prompts but no results."""
    names = unprobed_corpora(config)
    if not names:
        return None
    return (
        f"cuealign: no model runs on corpus {', '.join(names)}: it gets a manifest, tokens and prompts but no "
        "predictions or analysis. To probe it, add a model under models: (family, path, and corpora: "
        f"[{names[0]}] or leave corpora out to run on every corpus), or a finetune: entry with corpus: {names[0]}"
    )


def check_config(config: dict, *, configfiles: Iterable[str | Path] = ()) -> None:
    """Every check that needs more than the schema, on a schema-validated ``config``.

    Raises ConfigError listing every problem found, each with the key (or file and line) and the fix.
    """
    for path in configfiles:
        check_duplicate_keys(path)  # the first problem to fix: it changes what the rest sees
    checks: list = [
        lambda: _check_conditions(config),
        lambda: _check_families(config),
        lambda: _check_folds(config),
        lambda: _check_prompt(config),
        lambda: _check_tokens(config, None),
    ]
    checks.append(lambda: _check_cache_dir(config))
    checks.append(lambda: _check_shards(config))
    for name, spec in config["corpora"].items():
        checks.append(lambda name=name: _check_tokens(config, name))
        checks.append(lambda name=name, spec=spec: _check_label_map(name, spec))
        if spec["type"] == "manifest":
            checks.append(lambda name=name, spec=spec: _check_table_corpus(name, spec))
    corpora = list(config["corpora"])
    for name, spec in config["finetune"].items():
        checks.append(lambda name=name, spec=spec: check_finetune_spec(name, spec, corpora))
        checks.append(lambda name=name, spec=spec: _check_finetune_split(config, name, spec))

    def check_models() -> None:
        for name, spec in model_entries(config).items():
            check_model_spec(name, spec, corpora, finetuned=name in config["finetune"])

    checks.append(check_models)
    problems = []
    for check in checks:
        try:
            check()
        except (ValueError, KeyError) as exc:  # ConfigError is a ValueError
            problems.append(str(exc).strip("'\""))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(dict.fromkeys(problems)))
