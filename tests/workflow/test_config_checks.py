"""Every bad configuration value fails `snakemake -n`, before any job, with a message naming the
key (or file and line) and the fix."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from cuealign.workflow.checks import check_config, unprobed_corpora, unprobed_note
from cuealign.workflow.config import ConfigError, validate_config
from tests.workflow.conftest import REPO, snakemake, write_config

DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def _set(path: str, value):
    def change(config, tmp_path):
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return change


def _model_with_only_config_json(config, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    config["models"] = {"mine": {"family": "qwen2-audio", "path": str(folder)}}


def _table_corpus(config, tmp_path, table: str, label_map: dict) -> None:
    (tmp_path / "audio").mkdir()
    (tmp_path / "meta.csv").write_text(table)
    config["corpora"]["mine"] = {
        "type": "manifest",
        "root": str(tmp_path / "audio"),
        "table": str(tmp_path / "meta.csv"),
        "label_map": label_map,
    }


def _table_corpus_without_split(config, tmp_path):
    _table_corpus(config, tmp_path, "path,label,speaker\na.wav,ang,s1\n", {"ang": "angry"})


def _fine_tuning_a_table_corpus_on_dev(config, tmp_path):
    table = "path,label,speaker,split\na.wav,ang,s1,train\nb.wav,neu,s2,test\n"
    _table_corpus(config, tmp_path, table, {"ang": "angry", "neu": "neutral"})
    config["finetune"]["demo-alm"] |= {"corpus": "mine", "split": "dev"}


def _revision_on_a_local_folder(config, tmp_path):
    config["models"] = {"mine": {"family": "qwen2-audio", "path": str(tmp_path), "revision": "v2"}}


def _table_corpus_with(label_map):
    def change(config, tmp_path):
        _table_corpus_without_split(config, tmp_path)
        config["corpora"]["mine"]["label_map"] = label_map

    return change


def _cache_dir_under_a_file(config, tmp_path):
    (tmp_path / "a-file").write_text("")
    config["cache_dir"] = str(tmp_path / "a-file" / "cache")


BAD = {
    "corrupt p out of [0, 1]": (_set("conditions.corrupt_p", [0.0, 1.5]), r"conditions\.corrupt_p\.1: 1\.5 is greater"),
    "unknown swap concept": (_set("conditions.swap", ["LOUDNESS"]), r"conditions\.swap names 'LOUDNESS'.*concepts are"),
    "repeated shuffle seed": (_set("conditions.shuffle_seeds", [0, 0]), r"conditions\.shuffle_seeds: .*non-unique"),
    "repeated corrupt p": (_set("conditions.corrupt_p", [0.5, 0.5]), r"conditions\.corrupt_p: .*non-unique"),
    "template without cues": (_set("prompt.template", "{audio}Which emotion?"), r"prompt\.template needs one \{cues\}"),
    "template with an unknown slot": (
        _set("prompt.template", "{audio}Which {emotion}?{cues}"),
        r"prompt\.template has unknown slots \['emotion'\]",
    ),
    "cue block without tokens": (_set("prompt.cues", "Cues: none"), r"prompt\.cues needs exactly one \{tokens\}"),
    "per_gender names no concept": (
        _set("tokens.per_gender", ["LOUDNESS"]),
        r"tokens\.per_gender names \['LOUDNESS'\]",
    ),
    "finetune on an unknown corpus": (
        _set("finetune.demo-alm.corpus", "iemocap"),
        r"finetune\.demo-alm\.corpus 'iemocap'",
    ),
    "unknown model family": (
        _set("models", {"m": {"family": "qwen3-audio", "path": "/nonexistent"}}),
        r"model family 'qwen3-audio' is not in the registry",
    ),
    "model folder with config.json only": (_model_with_only_config_json, r"models\.mine\.path .* holds no weights"),
    "family names a condition the run lacks": (
        _set("analysis.families", {"mine": ["aligned - corrupt_p0.3_mean"]}),
        r"analysis\.families\.mine: 'aligned - corrupt_p0\.3_mean' names 'corrupt_p0\.3_mean', which this run",
    ),
    "family compares aligned with itself": (
        _set("analysis.families", {"mine": ["corrupt_p0_mean - aligned"]}),
        r"analysis\.families\.mine: 'corrupt_p0_mean - aligned' compares a condition with itself",
    ),
    "misspelt descriptor": (
        _set("tokens.concepts", {"ENERGY": {"descriptors": {"Loudnes_sma3": 1}, "labels": ["LOW", "HIGH"]}}),
        r"tokens\.concepts\.ENERGY\.descriptors names \['Loudnes_sma3'\]",
    ),
    "device gpu": (
        _set("finetune.demo-alm.device", "gpu"),
        r"finetune\.demo-alm\.device: 'gpu' does not match",
    ),
    "portable numerics on a GPU": (
        _set("finetune.demo-alm", DEFAULT["finetune"]["demo-alm"] | {"device": "cuda", "numerics": "portable"}),
        r"finetune\.demo-alm\.numerics: portable is for CPU jobs",
    ),
    "audio window of another family": (
        _set("finetune.demo-alm.family", "audio-flamingo-3"),
        r"finetune\.demo-alm\.architecture\.audio_window_s: 6 s is built for qwen2-audio only",
    ),
    "a concept named like the built-in VOICE_QUALITY": (
        _set(
            "tokens.concepts",
            {
                "ENERGY": {"descriptors": {"Loudness_sma3": 1}, "labels": ["LOW", "HIGH"]},
                "VOICE_QUALITY": {"descriptors": {"jitterLocal_sma3nz": 1}, "labels": ["LOW", "HIGH"]},
            },
        ),
        r"tokens\.concepts\.VOICE_QUALITY: VOICE_QUALITY is the built-in concept .*Rename yours",
    ),
    "repeated bin labels": (
        _set("tokens.concepts", {"ENERGY": {"descriptors": {"Loudness_sma3": 1}, "labels": ["LOW", "LOW", "HIGH"]}}),
        r"tokens\.concepts\.ENERGY\.labels repeats \['LOW'\]",
    ),
    "a revision on a local folder": (
        _revision_on_a_local_folder,
        r"models\.mine\.revision 'v2': a revision picks a snapshot of a hub id, but path .* is a local folder",
    ),
    "a label map leaving one class": (
        _table_corpus_with({"ang": "angry", "neu": None}),
        r"corpora\.mine\.label_map leaves 1 class \(\['angry'\]\)",
    ),
    "a label map dropping every label": (
        _table_corpus_with({"ang": None, "neu": None}),
        r"corpora\.mine\.label_map leaves 0 classes",
    ),
    "classes differing only in case": (
        _table_corpus_with({"ang": "Angry", "mad": "angry", "neu": "neutral"}),
        r"corpora\.mine\.label_map: classes \[\['Angry', 'angry'\]\] differ only in case",
    ),
    "fine-tuning on a dev split the corpus lacks": (
        _set("finetune.demo-alm.split", "dev"),
        r"finetune\.demo-alm\.split is 'dev', but corpus 'demo' has no dev split.*dev_speakers_per_gender: 1",
    ),
    "fine-tuning on a table corpus' dev split it lacks": (
        _fine_tuning_a_table_corpus_on_dev,
        r"finetune\.demo-alm\.split is 'dev', but corpus 'mine' has no dev split.*rows with split dev",
    ),
    "more shards than evaluated utterances": (
        _set("shards", 1000),
        r"shards is 1000, but corpus 'demo' lists 192 utterances in its evaluated split \('test'\).*at most 192",
    ),
    "a cache_dir under a file": (_cache_dir_under_a_file, r"cache_dir .*a-file' is a file, not a folder"),
    "table corpus without split": (
        _table_corpus_without_split,
        r"corpora\.mine\.table .* has no split column.*default_split",
    ),
}


def parse_time_problems(config: dict, folder) -> str:
    """What the Snakefile's parse-time checks (schema, then cross-checks) say of ``config``, in
    process: the same calls `snakemake -n` makes before it plans a job ('' when it passes)."""
    path = write_config(folder, config)
    try:
        check_config(validate_config(config), configfiles=[path])
    except ConfigError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize("change, message", BAD.values(), ids=BAD.keys())
def test_a_bad_value_is_refused_at_parse_time(tmp_path, change, message):
    config = copy.deepcopy(DEFAULT)
    change(config, tmp_path)
    problems = parse_time_problems(config, tmp_path)
    assert re.search(message, problems, re.S), problems


# A few of them through Snakemake itself: the Snakefile runs those checks before planning any job.
THROUGH_SNAKEMAKE = ("corrupt p out of [0, 1]", "unknown swap concept", "table corpus without split")


@pytest.mark.workflow
@pytest.mark.parametrize("name", THROUGH_SNAKEMAKE)
def test_a_bad_value_fails_the_dry_run(workflow, tmp_path, name):
    change, message = BAD[name]
    config = copy.deepcopy(DEFAULT)
    change(config, tmp_path)
    write_config(workflow, config)
    result = snakemake(workflow, "-n", check=False, timeout=120)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert re.search(message, output, re.S), output
    assert "Building DAG of jobs" not in output  # refused at parse, before any job is planned


def test_the_default_config_passes_the_checks(tmp_path):
    assert parse_time_problems(copy.deepcopy(DEFAULT), tmp_path) == ""


@pytest.mark.workflow
def test_a_key_written_twice_is_an_error_naming_both_lines(workflow):
    # What uncommenting the README's AF3/LoRA example does: a second finetune block.
    text = (REPO / "config.yaml").read_text() + "\nfinetune:\n  other:\n    corpus: demo\n    family: qwen2-audio\n"
    (workflow / "config.yaml").write_text(text)
    lines = text.splitlines()
    first, second = (1 + i for i, line in enumerate(lines) if line == "finetune:")
    result = snakemake(workflow, "-n", check=False, timeout=120)
    assert result.returncode != 0
    assert f"line {second}: key 'finetune' appears twice (first on line {first})" in result.stdout + result.stderr


@pytest.mark.workflow
def test_a_templated_config_is_refused_unless_opted_in(workflow):
    """__use_yte__: Snakemake would run the file's expressions. config.yaml is refused before it is
    evaluated; a --configfile file after Snakemake evaluated it (before any workflow code runs), and
    the run stops; CUEALIGN_ALLOW_YTE=1 lets a template the user wrote through."""
    default = (REPO / "config.yaml").read_text()
    marker = workflow / "expression-ran"
    write = f"__import__('pathlib').Path({str(marker)!r}).write_text('x')"
    payload = f"__use_yte__: true\nevaluate_split: ?str({write})[:0] + 'test'\n"
    (workflow / "config.yaml").write_text(payload + default)
    result = snakemake(workflow, "-n", check=False, timeout=120)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "config.yaml: __use_yte__: true makes Snakemake run the file's Python expressions" in output
    assert "CUEALIGN_ALLOW_YTE=1 snakemake" in output and not marker.exists()
    (workflow / "config.yaml").write_text(default)
    (workflow / "extra.yaml").write_text(payload)
    result = snakemake(workflow, "-n", "--configfile", "extra.yaml", check=False, timeout=120)
    assert result.returncode != 0 and "extra.yaml: __use_yte__: true" in result.stdout + result.stderr
    assert "Building DAG of jobs" not in result.stdout + result.stderr
    assert marker.exists()  # Snakemake ran it: said in the message and in docs/bad-input-and-security.md
    (workflow / "extra.yaml").write_text("__use_yte__: true\nevaluate_split: ?'te' + 'st'\n")
    snakemake(workflow, "-n", "--configfile", "extra.yaml", env={"CUEALIGN_ALLOW_YTE": "1"}, timeout=120)


@pytest.mark.workflow
def test_every_problem_is_reported_at_once(workflow):
    config = copy.deepcopy(DEFAULT)
    config["conditions"]["swap"] = ["LOUDNESS"]
    config["prompt"] = {"template": "{audio}Which emotion?"}
    write_config(workflow, config)
    result = snakemake(workflow, "-n", check=False, timeout=120)
    output = result.stdout + result.stderr
    assert "conditions.swap names 'LOUDNESS'" in output and "prompt.template needs one {cues}" in output


@pytest.mark.workflow
def test_the_default_config_passes(workflow):
    snakemake(workflow, "-n", "--quiet", timeout=120)


def test_a_corpus_no_model_runs_on_is_named():
    config = validate_config(copy.deepcopy(DEFAULT) | {"finetune": {}})
    assert unprobed_corpora(config) == ["demo"]
    assert "no model runs on corpus demo" in unprobed_note(config)
    assert unprobed_note(validate_config(copy.deepcopy(DEFAULT))) is None


@pytest.mark.workflow
def test_the_run_starts_with_the_note(workflow):
    config = copy.deepcopy(DEFAULT)
    config["finetune"] = {}
    config["corpora"]["demo"] |= {"female_speakers": 1, "male_speakers": 1, "utterances_per_class": 1}
    config["corpora"]["demo"] |= {"test_speakers_per_gender": 0}
    write_config(workflow, config)
    result = snakemake(workflow, "--cores", "1", "results/demo/manifest.parquet")
    assert "no model runs on corpus demo" in result.stderr


def test_shards_auto_follows_the_corpus_size_and_a_number_is_kept(workflow):
    """shards: auto (the default) gives a corpus one shard per 5,000 utterances (at least 2); a
    number in the config is that number, for every corpus."""
    from cuealign.workflow.resources import UTTERANCES_PER_SHARD

    big = {"type": "synthetic", "female_speakers": 40, "male_speakers": 40, "utterances_per_class": 40}
    small = {"type": "synthetic"}  # the generator's defaults: 8 speakers x 8 x 4 classes
    config = {"corpora": {"big": big, "small": small}}
    write_config(workflow, config)
    plan = snakemake(workflow, "-n", "--cores", "2", "--until", "extract_lld").stdout
    jobs = re.findall(r"wildcards: corpus=(\w+), shard=(\d+)", plan)
    per_corpus = {c: {int(s) for corpus, s in jobs if corpus == c} for c in ("big", "small")}
    assert 80 * 40 * 4 == 12_800 and UTTERANCES_PER_SHARD == 5000
    assert per_corpus == {"big": {0, 1, 2}, "small": {0, 1}}
    write_config(workflow, config | {"shards": 5})
    plan = snakemake(workflow, "-n", "--cores", "2", "--until", "extract_lld").stdout
    assert {s for _, s in re.findall(r"wildcards: corpus=(\w+), shard=(\d+)", plan)} == {str(i) for i in range(5)}


def test_shards_auto_gives_every_gpu_of_the_run_an_inference_job(workflow, tiny_qwen2_audio):
    """With a model on a GPU and --resources gpu=4, a corpus large enough gets 4 shards (so 4
    inference jobs side by side), not the 3 its size asks for; a small one keeps 100 utterances
    per shard; without GPUs the count is the size's."""
    big = {"type": "synthetic", "female_speakers": 40, "male_speakers": 40, "utterances_per_class": 40}
    model = {"family": "qwen2-audio", "path": str(tiny_qwen2_audio), "device": "cuda"}
    config = {"corpora": {"big": big, "small": {"type": "synthetic"}}, "models": {"gpu-model": model}}
    write_config(workflow, config)

    def shards(*options):
        plan = snakemake(workflow, "-n", "--cores", "2", "--until", "extract_lld", *options).stdout
        jobs = re.findall(r"wildcards: corpus=(\w+), shard=(\d+)", plan)
        return {c: len({s for corpus, s in jobs if corpus == c}) for c in ("big", "small")}

    assert shards("--resources", "gpu=4") == {"big": 4, "small": 2}  # small: 256 utterances
    assert shards() == {"big": 3, "small": 2}
    write_config(workflow, config | {"models": {"cpu-model": model | {"device": "cpu"}}})
    assert shards("--resources", "gpu=4") == {"big": 3, "small": 2}


# config/*.yaml to fill in (quick-demo.yaml needs nothing: test_default_study.py runs it)
STARTERS = sorted(path.name for path in (REPO / "config").glob("*.yaml") if path.name != "quick-demo.yaml")


def _fill_starter(name: str, tmp_path) -> dict:
    """A starter config with its placeholders pointed at small corpora of the real layouts and a
    tiny model of the family it names."""
    from cuealign.models.tiny import build_tiny_alm
    from tests.fakes import make_aibo, make_iemocap_sessions, write_tone

    config = yaml.safe_load((REPO / "config" / name).read_text())
    for corpus in config["corpora"].values():
        root = tmp_path / "corpus"
        if corpus["type"] == "iemocap":
            make_iemocap_sessions(root)
        elif corpus["type"] == "aibo":
            make_aibo(root)
        else:
            rows = ["path,label,speaker,split"]
            for i in range(16):
                write_tone(root / f"u{i}.wav", freq=150.0 + 10 * i, envelope=i)
                rows.append(f"u{i}.wav,{['ang', 'hap', 'neu', 'sad'][i % 4]},s{i % 4},{'test' if i >= 12 else 'train'}")
            (root / "meta.csv").write_text("\n".join(rows) + "\n")
            corpus["table"] = str(root / "meta.csv")
        corpus["root"] = str(root)
    for model in config["models"].values():
        model["path"] = str(build_tiny_alm(model["family"], tmp_path / "model", ["angry happy neutral sad"] * 3))
    return config


@pytest.mark.parametrize("name", STARTERS)
def test_a_starter_config_names_what_to_fill_and_then_passes(tmp_path, name):
    """config/*.yaml, the starters of a study of one's own: as shipped, the checks name each
    placeholder path to fill; filled, the config passes every parse-time check."""
    assert len(STARTERS) >= 3  # a table corpus, IEMOCAP, FAU-Aibo
    shipped = yaml.safe_load((REPO / "config" / name).read_text())
    problems = parse_time_problems(copy.deepcopy(shipped), tmp_path)
    # a placeholder or a model not fetched yet is named, with its key (a corpus root is named
    # when the plan reads the corpus, still before any job: test_corpus_stage.py)
    assert re.search(r"config: (models|corpora)\.\S+\.(path|root|table) '(/path/to/|nvidia/)", problems), problems
    assert parse_time_problems(_fill_starter(name, tmp_path), tmp_path) == ""


@pytest.mark.workflow
def test_a_starter_config_runs_that_study_alone(workflow, tmp_path):
    """--replace-workflow-config: the starter replaces config.yaml, so the plan holds its corpus and
    model and no demo job (merged into config.yaml, the demo corpus and its training would stay)."""
    config = _fill_starter("my-corpus.yaml", tmp_path)
    (workflow / "my-study.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    plan = snakemake(workflow, "-n", "--configfile", "my-study.yaml", "--replace-workflow-config", timeout=120)
    text = plan.stdout + plan.stderr
    corpora = set(re.findall(r"corpus=([\w-]+)", text))
    assert corpora == {"mycorpus"}, corpora
    for rule in (
        "build_manifest",
        "extract_lld",
        "bin_tokens",
        "build_prompts",
        "run_inference",
        "analyse_predictions",
    ):
        assert f"rule {rule}:" in text, rule
    assert "finetune" not in re.findall(r"rule (\w+):", text)


@pytest.mark.workflow
def test_the_slurm_profiles_dry_run_refuses_a_missing_partition_or_account(workflow):
    """`snakemake --workflow-profile profiles/slurm -n` as a user first types it: refused, naming
    what is missing and the command line that fixes it; with both given, the plan is made."""
    result = snakemake(workflow, "-n", "--workflow-profile", "profiles/slurm", check=False, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "a SLURM run without slurm_partition or slurm_account" in output
    assert "--default-resources slurm_partition=<partition> slurm_account=<account> runtime=60 mem_mb=2000" in output
    assert "Building DAG of jobs" not in output
    only_partition = ("--default-resources", "slurm_partition=cpu", "runtime=60", "mem_mb=2000")
    result = snakemake(workflow, "-n", "--workflow-profile", "profiles/slurm", *only_partition, check=False)
    assert result.returncode != 0 and "a SLURM run without slurm_account:" in result.stdout + result.stderr
    plan = snakemake(workflow, "-n", "--workflow-profile", "profiles/slurm", *only_partition, "slurm_account=lab")
    assert "rule finetune" in plan.stdout
    # the site's defaults, knowingly; and the same workflow on a workstation is not concerned
    snakemake(
        workflow, "-n", "--quiet", "--workflow-profile", "profiles/slurm", env={"CUEALIGN_SLURM_SITE_DEFAULTS": "1"}
    )
    snakemake(workflow, "-n", "--quiet")


def test_the_executor_is_read_as_snakemake_reads_it(tmp_path):
    from cuealign.workflow.cluster import executor

    (tmp_path / "site").mkdir()
    (tmp_path / "site/config.yaml").write_text("executor: slurm\njobs: 10\n")
    (tmp_path / "local").mkdir()
    (tmp_path / "local/config.yaml").write_text("cores: 2\n")
    cases = {
        ("snakemake", "-n"): None,
        ("snakemake", "--executor", "slurm"): "slurm",
        ("snakemake", "-e", "slurm", "-n"): "slurm",
        ("snakemake", "--executor=cluster-generic"): "cluster-generic",
        ("snakemake", "--profile", "site"): "slurm",
        ("snakemake", "--workflow-profile=site", "--cores", "2"): "slurm",
        ("snakemake", "--workflow-profile", "local"): None,
        ("snakemake", "--profile", "site", "--executor", "local"): "local",
    }
    for argv, expected in cases.items():
        assert executor(argv, {}, tmp_path) == expected, argv
    assert executor(("snakemake",), {"SNAKEMAKE_PROFILE": "site"}, tmp_path) == "slurm"


@pytest.mark.workflow
def test_a_changed_key_is_named_in_one_line_before_the_rerun(workflow):
    """After a completed run, changing one key: the dry run (and the run) say which key, in one
    line, instead of whole configs in every job's reason; nothing is said when nothing changed."""
    config = copy.deepcopy(DEFAULT)
    config["corpora"]["demo"] |= {"female_speakers": 1, "male_speakers": 1, "utterances_per_class": 1}
    config["corpora"]["demo"] |= {"test_speakers_per_gender": 0}
    write_config(workflow, config)
    snakemake(workflow, "--cores", "1", "results/demo/manifest.parquet")
    quiet = snakemake(workflow, "-n", "results/demo/manifest.parquet")
    assert "changed since the last completed run" not in quiet.stdout + quiet.stderr
    config["audio_checks"] = {"min_duration_s": 0.3}
    write_config(workflow, config)
    plan = snakemake(workflow, "-n", "results/demo/manifest.parquet")
    output = plan.stdout + plan.stderr
    line = "cuealign: 1 config key changed since the last completed run: audio_checks.min_duration_s."
    assert output.count(line) == 1 and "rule build_manifest" in output
    assert "'corpora'" not in output and "female_speakers" not in output  # no config printed


def test_changed_keys_ignore_the_order_of_keys_not_of_lists():
    from cuealign.workflow.config import change_summary, changed_keys

    before = {"a": {"x": 1, "y": [1, 2]}, "b": 2}
    assert changed_keys(before, {"b": 2, "a": {"y": [1, 2], "x": 1}}) == []
    assert changed_keys(before, {"a": {"x": 1, "y": [2, 1]}, "b": 2}) == ["a.y"]
    assert changed_keys(before, {"a": {"x": 1, "y": [1, 2]}, "c": 3}) == ["b", "c"]
    assert changed_keys(before, {"a": {"x": 1, "y": [1, 2], "z": {"deep": 0}}, "b": 2}) == ["a.z.deep"]
    assert change_summary(before, last="/nonexistent/last.json") is None  # no completed run yet


def test_the_remembered_config_is_the_one_compared(tmp_path):
    from cuealign.workflow.config import change_summary, remember_config

    last = tmp_path / ".snakemake/last.json"
    remember_config({"a": 1, "b": {"c": 2}}, last)
    assert change_summary({"a": 1, "b": {"c": 2}}, last) is None
    many = {"a": 2, "b": {"c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8}}
    assert change_summary(many, last).startswith(
        "cuealign: 7 config keys changed since the last completed run: a, b.c, b.d, b.e, b.f, b.g and 1 more."
    )
