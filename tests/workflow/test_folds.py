"""IEMOCAP leave-one-session-out through Snakemake: one corpus per fold (fit on the other
sessions), pooled in one analysis of all 10 speakers."""

import json

import pandas as pd
import pytest

from cuealign.tokens import TokensMeta
from tests.fakes import make_iemocap_sessions
from tests.workflow.conftest import snakemake, write_config

CONDITIONS = {"shuffle_seeds": [0, 1], "corrupt_p": [1.0], "corrupt_seeds": [0], "swap": [], "tokens_only": False}


@pytest.fixture
def iemocap_five(tmp_path):
    return make_iemocap_sessions(tmp_path / "IEMOCAP")


@pytest.mark.slow
def test_leave_one_session_out_fits_per_fold_and_pools_the_analysis(workflow, iemocap_five, short_window_alm):
    corpus = {"type": "iemocap", "root": str(iemocap_five), "folds": "sessions"}
    model = {"family": "qwen2-audio", "path": str(short_window_alm), "batch_size": 16}
    config = {"corpora": {"iemocap": corpus}, "conditions": CONDITIONS, "models": {"tiny": model}, "shards": 1}
    write_config(workflow, config)
    run = snakemake(workflow, "--cores", "2", timeout=900)
    whole = pd.read_parquet(workflow / "results/iemocap/manifest.parquet")
    assert len(whole) == 80 and (whole["status"] == "ok").all()
    tested = []
    for session in range(1, 6):
        fold = f"iemocap-s{session}"
        manifest = pd.read_parquet(workflow / f"results/{fold}/manifest.parquet")
        in_session = manifest["utt_id"].str.startswith(f"Ses{session:02d}")
        assert (manifest.loc[in_session, "split"] == "test").all() and (
            manifest.loc[~in_session, "split"] == "train"
        ).all()
        # the fold's tokens are fitted on its train sessions only: no test speaker among them
        meta = TokensMeta.read(workflow / f"results/{fold}/tokens_meta.json")
        tokens = pd.read_parquet(workflow / f"results/{fold}/tokens.parquet").merge(manifest, on="utt_id")
        fitted = tokens[meta.fit_rows(tokens)]
        test_speakers = set(manifest.loc[in_session, "speaker"])
        assert len(fitted) == 64 and not set(fitted["speaker"]) & test_speakers and len(test_speakers) == 2
        prompts = pd.read_parquet(workflow / f"results/{fold}/prompts/0.parquet")
        assert set(prompts["utt_id"]) == set(manifest.loc[in_session, "utt_id"])
        tested += sorted(set(prompts["utt_id"]))
        # no analysis of a fold on its own (2 speakers): only the pooled one
        assert not (workflow / f"results/{fold}/tiny/analysis").exists()
    assert sorted(tested) == sorted(whole["utt_id"])  # every utterance tested once
    uar = pd.read_csv(workflow / "results/iemocap/tiny/analysis/uar.csv").set_index("condition")
    assert (uar["n"] == 80).all() and (uar["n_speakers"] == 10).all() and (uar["ci_method"] == "jackknife-t").all()
    accounting = pd.read_csv(workflow / "results/iemocap/tiny/analysis/accounting.csv").set_index("step")["count"]
    assert accounting["manifest"] == accounting["usable"] == accounting["evaluated"] == 80
    assert (
        accounting["prompts"] == accounting["predictions"] == 80 * 6
    )  # none, aligned, conflict, 2 shuffles, 1 corrupt
    assert "iemocap / tiny: 80 in the manifest -> 0 failed audio checks -> 80 usable -> 80 evaluated" in run.stderr
    record = json.loads((workflow / "results/iemocap/tiny/RUN.json").read_text())
    assert record["folds"] == [f"iemocap-s{k}" for k in range(1, 6)]
    card = record["protocol_card"]
    assert card["protocol"].startswith("leave one session out, pooled over 5 folds")
    assert card["evaluated"] == {
        "utterances": 80,
        "speakers": 10,
        "per_class": {c: 20 for c in ("angry", "happy", "neutral", "sad")},
        "conditions": 6,
    }
    assert card["merged"] == {"happy": ["exc", "hap"]}
    assert (workflow / "results/iemocap/tiny/figures/corruption_curve.png").exists()


def test_a_finetuned_model_is_trained_per_fold(workflow, iemocap_five):
    corpus = {"type": "iemocap", "root": str(iemocap_five), "folds": "sessions"}
    finetune = {"corpus": "iemocap", "family": "qwen2-audio", "architecture": {"hidden_size": 32, "layers": 1}}
    write_config(workflow, {"corpora": {"iemocap": corpus}, "finetune": {"ft": finetune}})
    dry = snakemake(workflow, "-n", timeout=120)
    for session in range(1, 6):
        assert f"results/iemocap-s{session}/ft/finetune/model" in dry.stdout
        assert f"results/iemocap-s{session}/ft/predictions/0.parquet" in dry.stdout
    assert "results/iemocap/ft/analysis/uar.csv" in dry.stdout
    assert "results/iemocap/ft/finetune" not in dry.stdout  # nothing trained on the pooled corpus


def test_folds_need_a_plain_iemocap_split(workflow, iemocap_five):
    corpus = {"type": "iemocap", "root": str(iemocap_five), "folds": "sessions", "dev_sessions": [4]}
    write_config(workflow, {"corpora": {"iemocap": corpus}})
    result = snakemake(workflow, "-n", check=False, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "corpora.iemocap: folds: sessions holds out each session" in output
