"""The default config: its whole DAG, and a scaled-down run of it end to end with the report."""

import json
import re

import pandas as pd
import yaml

from tests.workflow.conftest import snakemake, write_config


def planned_jobs(workflow) -> dict[str, int]:
    """The jobs a dry run would run, by rule."""
    result = snakemake(workflow, "--dry-run", "--cores", "2")
    return {
        rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.MULTILINE) if rule != "total"
    }


def test_default_config_dry_runs_the_whole_study(workflow):
    jobs = planned_jobs(workflow)
    for rule in (
        "synthesize_corpus",
        "bin_tokens",
        "build_prompts",
        "finetune",
        "run_inference",
        "analyse_predictions",
        "plot_results",
        "collect_main_tables",
    ):
        assert jobs.get(rule, 0) >= 1, f"{rule} is not in the default run: {jobs}"


def test_scaled_down_default_study_runs_end_to_end_with_its_report(scaled_default_study):
    workflow = scaled_default_study
    results = workflow / "results/demo"
    manifest = pd.read_parquet(results / "manifest.parquet")
    test = manifest[manifest["split"] == "test"]
    assert len(test) == 2 * 4 * 2  # 2 test speakers x 4 classes x 2 utterances

    # the cue block lists the concepts in config order (tokens.concepts), voice quality last
    aligned = pd.read_parquet(results / "prompts/0.parquet").query("condition == 'aligned'")["suffix_text"].iloc[0]
    assert re.findall(r"([A-Z_]+)=", aligned) == [
        "ENERGY",
        "PITCH",
        "BRIGHTNESS",
        "DYNAMICS",
        "FORMANTS",
        "VOICE_QUALITY",
    ]

    history = pd.read_csv(results / "demo-alm/finetune/training_log.csv")
    assert history["epoch"].max() == 2 and history["loss"].notna().all()
    assert (results / "demo-alm/finetune/model/model.safetensors").is_file()

    predictions = pd.concat(pd.read_parquet(p) for p in sorted((results / "demo-alm/predictions").glob("*.parquet")))
    conditions = set(predictions["condition"])
    assert len(conditions) == 33 and {"none", "aligned", "conflict", "tokens_only", "swap_PITCH"} <= conditions
    assert len(predictions) == len(test) * 33 and not predictions.duplicated(["utt_id", "condition"]).any()
    assert (predictions["model"] == "results/demo/demo-alm/finetune/model").all()  # the trained model was probed
    uar = pd.read_csv(results / "demo-alm/analysis/uar.csv").set_index("condition")
    assert uar["uar"].between(0, 1).all() and (uar.loc[["none", "aligned"], "n"] == len(test)).all()
    assert json.loads((results / "demo-alm/analysis/spearman.json").read_text())["points"] == 6 * 3

    report = (workflow / "report.html").read_text()
    for name in (
        "token_distributions.png",
        "loss_curve.png",
        "confusion.png",
        "corruption_curve.png",
        "uar.csv",
        "comparisons.csv",
        "models_table.csv",
    ):
        assert name in report, f"{name} is not in the report"

    # nothing changed: a rerun does nothing
    rerun = snakemake(workflow, "--cores", "2")
    assert "Nothing to be done" in rerun.stdout + rerun.stderr

    # what reruns when one setting changes (the README's table)
    def after(change) -> set[str]:
        config = yaml.safe_load((workflow / "config.yaml").read_text())
        change(config)
        write_config(workflow, config)
        jobs = set(planned_jobs(workflow)) - {"all"}
        write_config(workflow, original)
        return jobs

    original = yaml.safe_load((workflow / "config.yaml").read_text())
    (workflow / "config.yaml").write_text(yaml.safe_dump(original, sort_keys=True))  # keys moved: nothing reruns
    assert after(lambda c: None) == set()
    analysis_only = {"analyse_predictions", "plot_results", "collect_main_tables"}
    assert after(lambda c: c["analysis"].update(resamples=300)) == analysis_only
    assert after(lambda c: c["finetune"]["demo-alm"].update(epochs=3)) == {"finetune", "run_inference"} | analysis_only
    assert (
        after(lambda c: c["conditions"].update(corrupt_p=[0.0, 0.5]))
        == {"build_prompts", "run_inference"} | analysis_only
    )
    assert (
        after(lambda c: c["corpora"]["demo"]["tokens"].update(normalise="dataset"))
        == {"bin_tokens", "plot_token_diagnostics", "build_prompts", "finetune", "run_inference"} | analysis_only
    )
