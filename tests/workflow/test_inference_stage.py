"""The inference stage through Snakemake, with a tiny Qwen2-Audio model built offline."""

import json
import re

import pandas as pd
import pytest
import yaml

from tests.workflow.conftest import snakemake, write_config

DEMO = {
    "type": "synthetic",
    "seed": 2,
    "female_speakers": 2,
    "male_speakers": 2,
    "utterances_per_class": 2,
    "test_speakers_per_gender": 1,
    "tokens": {"normalise": "speaker", "per_gender": []},
}
CONDITIONS = {"shuffle_seeds": [0], "corrupt_p": [0.5], "corrupt_seeds": [0], "swap": ["ENERGY"], "tokens_only": True}


@pytest.mark.slow
def test_inference_writes_a_prediction_for_every_prompt(workflow, short_window_alm):
    model = {"family": "qwen2-audio", "path": str(short_window_alm), "batch_size": 16}
    write_config(workflow, {"corpora": {"demo": DEMO}, "conditions": CONDITIONS, "models": {"tiny": model}})
    run = snakemake(workflow, "--cores", "2")
    prompts = pd.concat([pd.read_parquet(workflow / f"results/demo/prompts/{i}.parquet") for i in range(2)])
    predictions = pd.concat(
        [pd.read_parquet(workflow / f"results/demo/tiny/predictions/{i}.parquet") for i in range(2)]
    )
    assert len(predictions) == len(prompts) == 16 * 7  # 16 test utterances x 7 conditions
    merged = prompts.merge(predictions, on=["utt_id", "condition"], validate="1:1")
    assert len(merged) == len(prompts)
    assert set(predictions["condition"]) == {
        "none",
        "aligned",
        "conflict",
        "shuffle_s0",
        "corrupt_p0.5_s0",
        "swap_ENERGY",
        "tokens_only",
    }
    assert predictions["pred"].isin(["angry", "happy", "neutral", "sad"]).all()
    assert (predictions["model"] == str(short_window_alm)).all()
    log = (workflow / "logs/demo/tiny/run_inference/0.log").read_text()
    # a swap of a MID token asks what aligned asks: such rows take aligned's answer, computed once
    computed, same = map(
        int, re.search(r"56 predictions \((\d+) computed, 0 from the cache, (\d+) the same", log).groups()
    )
    shard = predictions[
        predictions["utt_id"].isin(pd.read_parquet(workflow / "results/demo/prompts/0.parquet")["utt_id"])
    ]
    asks_as_aligned = (
        shard[shard["condition"] == "swap_ENERGY"].set_index("utt_id")["token.ENERGY"]
        == shard[shard["condition"] == "aligned"].set_index("utt_id")["token.ENERGY"]
    )
    assert computed + same == 56 and same == int(asks_as_aligned.sum()) and "0 unparsed" in log

    # the analysis accounts for every utterance x condition and writes its tables and figures
    uar = pd.read_csv(workflow / "results/demo/tiny/analysis/uar.csv").set_index("condition")
    assert (uar.loc[["none", "aligned", "conflict", "tokens_only"], "n"] == 16).all()
    assert uar["uar"].between(0, 1).all() and "shuffle_mean" in uar.index
    comparisons = pd.read_csv(workflow / "results/demo/tiny/analysis/comparisons.csv")
    assert len(comparisons) == 1 + 2 * 5 and comparisons["p_holm"].between(0, 1).all()
    assert re.search(
        r"^\|\s*demo\s*\|\s*tiny\s*\|", (workflow / "results/demo/tiny/analysis/table_main.md").read_text(), re.M
    )
    cues = pd.read_csv(workflow / "results/demo/tiny/analysis/cue_following.csv").set_index("condition")
    assert set(cues.index) == {"conflict", "swap_ENERGY"} and cues["cue_alignment"].between(-1, 1).all()
    assert cues.loc["conflict", "utterances"] > 0
    models = pd.read_csv(workflow / "results/models_table.csv")
    assert models[["corpus", "model"]].values.tolist() == [["demo", "tiny"]]
    assert models["UAR with tokens"].iloc[0] == round(uar.loc["aligned", "uar"], 3)
    assert models["unparsed (none / aligned)"].iloc[0] == "0.000 / 0.000"
    for figure in ("confusion", "corruption_curve"):
        assert (workflow / f"results/demo/tiny/figures/{figure}.png").stat().st_size > 5_000

    # every utterance accounted for, and said where the user looks
    accounting = pd.read_csv(workflow / "results/demo/tiny/analysis/accounting.csv").set_index("step")["count"]
    manifest = pd.read_parquet(workflow / "results/demo/manifest.parquet")
    assert accounting["manifest"] == len(manifest) and accounting["usable"] == (manifest["status"] == "ok").sum()
    assert accounting["evaluated"] == 16 and accounting["prompts"] == accounting["predictions"] == 16 * 7
    assert (
        f"demo / tiny: {len(manifest)} in the manifest -> 0 failed audio checks -> {len(manifest)} usable -> "
        "16 evaluated x 7 conditions = 112 prompts -> 112 predictions -> 16 per condition"
    ) in run.stderr

    # provenance: every table names the config, versions, model and seeds; RUN.json reproduces the run
    record = json.loads((workflow / "results/demo/tiny/RUN.json").read_text())
    card = json.loads((workflow / "results/demo/tiny/analysis/protocol_card.json").read_text())
    assert record["protocol_card"] == card and card["evaluated"]["utterances"] == accounting["evaluated"]
    assert card["splits"]["test"] == {"utterances": 16, "speakers": 2} and card["raw_labels_dropped"] == {}
    assert "protocol card" in (workflow / "results/demo/tiny/analysis/protocol_card.html").read_text()
    for table in ("uar.csv", "comparisons.csv", "table_main.csv"):
        stamped = pd.read_csv(workflow / "results/demo/tiny/analysis" / table)
        assert (stamped["config_hash"] == record["config_hash"]).all(), table
        assert stamped["model_revision"].str.startswith("local folder ").all()
        assert stamped["seeds"].iloc[0] == "shuffle 0; corrupt 0; bootstrap 0; corpus 2"
    assert record["model_source"]["path"] == str(short_window_alm) and record["versions"]["cuealign"]
    # what was used, not what was asked: dtype auto loaded the tiny checkpoint's float32, on CPU portably
    source = record["model_source"]
    assert (source["dtype_asked"], source["dtype"], source["numerics"]) == ("auto", "float32", "portable")
    from transformers import AutoTokenizer  # the tokens each label was scored as

    tokenizer = AutoTokenizer.from_pretrained(short_window_alm)
    assert record["model_source"]["label_tokens"] == {
        label: tokenizer.convert_ids_to_tokens(tokenizer(label, add_special_tokens=False)["input_ids"])
        for label in ["angry", "happy", "neutral", "sad"]
    }
    assert "config_hash" in models.columns and "config_hash" not in (workflow / "results/models_table.md").read_text()
    # as RUN.json says: keep the key order (the concepts' order is the prompt's)
    (workflow / "run_config.yaml").write_text(yaml.safe_dump(record["config"], sort_keys=False))
    again = snakemake(workflow, "--cores", "2", "--configfile", "run_config.yaml")  # the config RUN.json holds
    assert "Nothing to be done" in again.stdout + again.stderr

    # a new corruption level: the prompts are rebuilt, and only the new rows are computed (here
    # with the prefixes of up to 3 utterances in one forward pass)
    config = yaml.safe_load((workflow / "config.yaml").read_text())
    config["conditions"]["corrupt_p"] = [0.5, 1.0]
    config["models"]["tiny"]["prefix_batch"] = 3
    write_config(workflow, config)
    snakemake(workflow, "--cores", "2")
    log = (workflow / "logs/demo/tiny/run_inference/0.log").read_text()
    assert "64 predictions (8 computed, 56 from the cache, 0 the same" in log
    assert "prefixes of up to 3 utterances encoded in one forward pass" in log
    # how a job batches its prefixes is not a result: changing it reruns no inference job
    config["models"]["tiny"]["prefix_batch"] = 1
    write_config(workflow, config)
    plan = snakemake(workflow, "-n", "--quiet", "rules").stdout
    assert "run_inference" not in plan and "analyse_predictions" in plan  # the config's hash is in every table

    # the model's files change (here only their times, as a re-download or a copy back would):
    # a plain rerun reruns inference, and the answers, keyed by the weights' content, are reused
    import os

    for weights in short_window_alm.glob("*.safetensors"):
        os.utime(weights)
    dry = snakemake(workflow, "-n")
    assert "rule run_inference:" in dry.stdout and "Params have changed" in dry.stdout
    snakemake(workflow, "--cores", "2")
    log = (workflow / "logs/demo/tiny/run_inference/0.log").read_text()
    assert "64 predictions (0 computed, 64 from the cache, 0 the same" in log


@pytest.mark.slow
def test_the_clap_baseline_runs_through_the_same_stages(workflow, tiny_clap, tmp_path):
    # no token channel: every condition but tokens_only (silence) gets the audio-only answer, and
    # the analysis says so (no token effect) rather than failing on a flat curve; both zero-shot
    # baselines and an entered reference (the paper's Pengi) land in the models table
    from cuealign.models.tiny import build_tiny_msclap, build_tiny_paraclap

    words = ["this", "person", "is", "feeling", "anger", "happy", "neutral", "sadness"]
    models = {
        "clap": {"family": "clap", "path": str(tiny_clap), "label_prompt": "a {label} voice"},
        "paraclap": {"family": "paraclap", "path": str(build_tiny_paraclap(tmp_path / "paraclap", words))},
        "msclap": {"family": "msclap", "path": str(build_tiny_msclap(tmp_path / "msclap", "2022", words))},
    }
    pengi = {"corpus": "demo", "model": "Pengi", "uar": 0.345, "source": "the paper, Table III"}
    config = {"corpora": {"demo": DEMO}, "conditions": CONDITIONS, "models": models, "reference_results": [pengi]}
    write_config(workflow, config)
    snakemake(workflow, "--cores", "2")
    table = pd.read_csv(workflow / "results/models_table.csv", dtype=str, keep_default_na=False).set_index("model")
    assert list(table.index) == ["clap", "msclap", "paraclap", "Pengi (entered)"]
    assert set(table["corpus"]) == {"demo"}
    for name in ("clap", "msclap", "paraclap"):  # computed from this run's predictions
        uar = pd.read_csv(workflow / f"results/demo/{name}/analysis/uar.csv").set_index("condition")
        assert table.loc[name, "UAR without tokens"] == f"{uar.loc['none', 'uar']:.3f}"
        assert table.loc[name, "delta"] == "0.000" and "speaker" in table.loc[name, "CI method"]
    assert table.loc["Pengi (entered)", "UAR without tokens"] == "0.345"
    assert table.loc["Pengi (entered)", "CI method"] == "entered from the paper, Table III; not computed here"
    assert table.loc["Pengi (entered)", "delta"] == ""
    paraclap = pd.concat(
        [pd.read_parquet(workflow / f"results/demo/paraclap/predictions/{i}.parquet") for i in range(2)]
    )
    assert len(paraclap) == 16 * 7 and set(paraclap["backend"]) == {"transformers:paraclap"}
    msclap = pd.concat([pd.read_parquet(workflow / f"results/demo/msclap/predictions/{i}.parquet") for i in range(2)])
    assert len(msclap) == 16 * 7 and set(msclap["backend"]) == {"transformers:msclap"}
    predictions = pd.concat(
        [pd.read_parquet(workflow / f"results/demo/clap/predictions/{i}.parquet") for i in range(2)]
    )
    assert len(predictions) == 16 * 7 and set(predictions["backend"]) == {"transformers:clap"}
    columns = [f"logprob_{label}" for label in ("angry", "happy", "neutral", "sad")]
    with_audio = predictions[predictions["condition"] != "tokens_only"]
    assert (with_audio.groupby("utt_id")[columns].nunique() == 1).all().all()
    assert set(predictions["audio_policy"]) == {"full"}  # the synthetic clips are under CLAP's 10 s
    uar = pd.read_csv(workflow / "results/demo/clap/analysis/uar.csv").set_index("condition")
    assert uar.loc["aligned", "uar"] == uar.loc["none", "uar"] == uar.loc["conflict", "uar"]
    comparisons = pd.read_csv(workflow / "results/demo/clap/analysis/comparisons.csv").set_index(["a", "b"])
    gain = comparisons.loc[("aligned", "none")]
    assert gain["delta_uar"] == 0 and gain["a_right_b_wrong"] == gain["a_wrong_b_right"] == 0 and gain["p_value"] == 1.0
    assert (workflow / "results/demo/clap/figures/corruption_curve.png").stat().st_size > 5_000


def test_unknown_model_family_fails_before_any_job(workflow, short_window_alm):
    write_config(
        workflow, {"corpora": {"demo": DEMO}, "models": {"m": {"family": "qwen3-audio", "path": str(short_window_alm)}}}
    )
    out = snakemake(workflow, "-n", check=False)
    assert out.returncode != 0 and "'qwen3-audio' is not in the registry" in out.stdout + out.stderr


def test_inference_jobs_declare_the_gpus_their_device_uses(workflow, short_window_alm):
    # Snakemake (--resources gpu=N) and SLURM (--gpus) schedule on the declared count
    path = str(short_window_alm)
    models = {
        "on-cpu": {"family": "qwen2-audio", "path": path},
        "one-gpu": {"family": "qwen2-audio", "path": path, "device": "cuda"},
        "spread": {"family": "qwen2-audio", "path": path, "device": "auto", "gpus": 2},
    }
    write_config(workflow, {"corpora": {"demo": DEMO}, "models": models})
    out = snakemake(workflow, "-n", "--cores", "2", "--forceall").stdout
    declared = {}
    for job in out.split("\nrule ")[1:]:
        if job.startswith("run_inference:"):
            model = re.search(r"model=([\w.-]+)", job).group(1)
            declared.setdefault(model, set()).add(int(re.search(r"\bgpu=(\d+)", job).group(1)))
    assert declared == {"on-cpu": {0}, "one-gpu": {1}, "spread": {2}}
