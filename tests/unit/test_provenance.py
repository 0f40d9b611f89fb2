"""Provenance stamps and the manifest-to-table accounting."""

import copy

import pandas as pd
import pytest
import torch

from cuealign.analysis import provenance
from cuealign.analysis.accounting import accounting, accounting_line
from cuealign.workflow.config import load_config


def test_config_hash_follows_values_not_key_order():
    config = load_config("config.yaml")
    reordered = {key: config[key] for key in reversed(list(config))}
    assert provenance.config_hash(reordered) == provenance.config_hash(config)
    changed = copy.deepcopy(config)
    changed["analysis"]["seed"] = 1
    assert provenance.config_hash(changed) != provenance.config_hash(config)


def test_a_config_hash_reads_back_from_csv_as_the_same_string(tmp_path):
    """A digest of digits around one 'e' (or of digits only) is a number to a CSV reader; found
    by a search over small configs, it must still read back as the hash written."""
    import hashlib
    import json
    import re

    numeric = next(
        config
        for config in ({"seed": i} for i in range(100_000))
        if re.fullmatch(r"\d+e\d+|\d+", hashlib.sha256(json.dumps(config).encode()).hexdigest()[:12])
    )
    table = pd.DataFrame({"config_hash": [provenance.config_hash(numeric)]})
    table.to_csv(tmp_path / "t.csv", index=False)
    assert pd.read_csv(tmp_path / "t.csv")["config_hash"].tolist() == [provenance.config_hash(numeric)]
    assert re.fullmatch(r"cfg-[0-9a-f]{12}", provenance.config_hash(numeric))


def test_record_and_stamp_name_the_seeds_versions_and_model(tmp_path):
    config = load_config("config.yaml")
    spec = {
        "path": str(tmp_path),
        "revision": None,
        "adapter": None,
        "family": "qwen2-audio",
        "dtype": "float32",
        "mode": "score",
    }
    run = provenance.record(
        config, corpus="demo", model="demo-alm", spec=spec, fingerprint="abc123", workflow_dir=tmp_path
    )
    assert run["seeds"] == {
        "shuffle": config["conditions"]["shuffle_seeds"],
        "corrupt": config["conditions"]["corrupt_seeds"],
        "bootstrap": config["analysis"]["seed"],
        "corpus": config["corpora"]["demo"]["seed"],
        "finetune": config["finetune"]["demo-alm"]["seed"],
    }
    assert run["versions"]["torch"] == torch.__version__ and run["config"] == config
    assert run["workflow_commit"] is None  # tmp_path is not a git checkout
    table = provenance.stamp(pd.DataFrame({"condition": ["none", "aligned"]}), run)
    assert list(table.columns) == ["condition"] + provenance.COLUMNS
    assert (table["config_hash"] == run["config_hash"]).all()
    assert table["model_revision"].iloc[0] == "local folder abc123"
    assert f"torch {torch.__version__}" in table["versions"].iloc[0]
    assert table["seeds"].iloc[0].startswith("shuffle " + ",".join(map(str, config["conditions"]["shuffle_seeds"])))


def test_run_json_records_the_dtype_loaded_not_the_one_asked(tmp_path):
    config = load_config("config.yaml")
    spec = {"path": str(tmp_path), "family": "qwen2-audio", "dtype": "auto", "numerics": "auto", "mode": "score"}

    def source(ran_as=frozenset()):
        run = provenance.record(
            config, corpus="demo", model="m", spec=spec, fingerprint="f", workflow_dir=tmp_path, ran_as=ran_as
        )
        return run["model_source"]

    assert (source()["dtype"], source()["numerics"]) == ("auto", "auto")  # nothing ran
    ran = source({("bfloat16", "native")})
    assert (ran["dtype"], ran["dtype_asked"], ran["numerics"]) == ("bfloat16", "auto", "native")
    # folds loaded differently: every one listed
    assert source({("bfloat16", "native"), ("float32", "native")})["dtype"] == ["bfloat16", "float32"]


def manifest_prompts_predictions():
    manifest = pd.DataFrame(
        {
            "utt_id": ["a", "b", "c", "d", "e"],
            "status": ["ok", "ok", "ok", "silent", "ok"],
            "split": ["test", "test", "test", "test", "train"],
        }
    )
    prompts = pd.DataFrame(
        [(u, c, "test") for u in "abc" for c in ("none", "aligned")], columns=["utt_id", "condition", "split"]
    )
    predictions = prompts.assign(pred=["sad", "unparsed", "sad", "sad", "happy", "sad"])
    uar = pd.DataFrame({"condition": ["none", "aligned"], "n": [3, 3]})
    return manifest, prompts, predictions, uar


def answered(manifest, prompts, predictions, uar):
    """The accounting's arguments: the predictions counted by answer."""
    return manifest, prompts, predictions["pred"].value_counts(), uar


def test_accounting_reconciles_every_utterance():
    table = accounting(*answered(*manifest_prompts_predictions()))
    counts = dict(zip(table["step"], table["count"], strict=True))
    assert counts == {
        "manifest": 5,
        "failed audio check: silent": 1,
        "usable": 4,
        "evaluated": 3,
        "conditions": 2,
        "prompts": 6,
        "predictions": 6,
        "per condition in uar.csv": 3,
    }
    assert "1 unparsed" in table.set_index("step").loc["predictions", "note"]
    assert accounting_line(table) == (
        "5 in the manifest -> 1 failed audio checks -> 4 usable -> 3 evaluated x 2 "
        "conditions = 6 prompts -> 6 predictions -> 3 per condition in uar.csv"
    )


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda m, p, r, u: (m, p, r.iloc[1:], u), "predictions 5 != prompts 6"),
        (lambda m, p, r, u: (m, p.iloc[1:], r.iloc[1:], u), r"prompts 5 != 3 x 2"),
        (lambda m, p, r, u: (m, p, r, u.assign(n=[3, 2])), r"uar.csv n \[2, 3\] != 3"),
    ],
)
def test_accounting_refuses_a_lost_row(break_it, message):
    with pytest.raises(ValueError, match="do not reconcile.*" + message):
        accounting(*answered(*break_it(*manifest_prompts_predictions())))


def test_model_identity_is_content_not_file_times(tmp_path):
    import os
    import shutil

    from cuealign.cache import KeyedJsonCache
    from cuealign.models.identity import model_fingerprint, model_identity

    memo = KeyedJsonCache(tmp_path, "file-hashes")
    a = tmp_path / "a"
    a.mkdir()
    (a / "model.safetensors").write_bytes(b"\x00" * 1000)
    (a / "config.json").write_text("{}")
    first = model_identity(str(a), memo=memo)
    # a bit-identical copy elsewhere, with other times: the same model
    b = tmp_path / "b"
    shutil.copytree(a, b)
    assert model_identity(str(b), memo=memo) == first
    # weights replaced by others of the same size, with the old modification time kept (cp -p)
    weights = a / "model.safetensors"
    times = (weights.stat().st_atime_ns, weights.stat().st_mtime_ns)
    weights.write_bytes(b"\x01" * 1000)
    os.utime(weights, ns=times)
    assert model_identity(str(a), memo=memo) != first
    assert model_fingerprint(str(a)) != model_fingerprint(str(b))  # the cheap sign changes too (ctime)
    # remembered: an unchanged file is not read again
    entries = len(list(memo.root.rglob("*.json")))
    model_identity(str(a), memo=memo)
    assert len(list(memo.root.rglob("*.json"))) == entries


def test_a_hub_model_is_the_snapshot_its_cache_resolves_to_now(tmp_path):
    from cuealign.models.identity import hub_commit, model_identity

    repo = tmp_path / "models--org--alm"
    for commit in ("a" * 40, "b" * 40):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    before = model_identity("org/alm", cache_dir=tmp_path)
    assert before == f"org/alm@{'a' * 40}" and hub_commit("org/alm", None, cache_dir=tmp_path) == "a" * 40
    (repo / "refs" / "main").write_text("b" * 40)  # `hf download` of a new revision
    assert model_identity("org/alm", cache_dir=tmp_path) == f"org/alm@{'b' * 40}"
