"""The token stages as a user runs them on the synthetic corpus: content, cache, incremental reruns."""

import json

import pandas as pd
import pytest
import yaml

from tests.workflow.conftest import snakemake, write_config

SMALL_DEMO = {
    "type": "synthetic",
    "seed": 1,
    "female_speakers": 2,
    "male_speakers": 2,
    "utterances_per_class": 3,
    "test_speakers_per_gender": 1,
    "tokens": {"normalise": "speaker", "per_gender": []},
}


@pytest.mark.slow
def test_tokens_stage_end_to_end(workflow):
    # the same corpus twice under two names: the second must come from the LLD cache; openSMILE in
    # spawned processes (as auto chooses for a large shard), which import the job's script again
    write_config(workflow, {"corpora": {"demo": SMALL_DEMO, "twin": SMALL_DEMO}, "shards": 2, "lld_pool": "processes"})
    snakemake(workflow, "--cores", "2")

    manifest = pd.read_parquet(workflow / "results/demo/manifest.parquet")
    tokens = pd.read_parquet(workflow / "results/demo/tokens.parquet")
    assert sorted(tokens["utt_id"]) == sorted(manifest["utt_id"])  # every utterance, once
    concepts = ["ENERGY", "PITCH", "BRIGHTNESS", "DYNAMICS", "FORMANTS", "VOICE_QUALITY"]
    assert (
        tokens["token_string"]
        .str.split("; ")
        .map(lambda parts: [p.split("=")[0] for p in parts])
        .map(concepts.__eq__)
        .all()
    )
    shards = [pd.read_parquet(workflow / f"results/demo/lld/{i}.parquet") for i in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(manifest) // 2
    assert set(shards[0]["utt_id"]).isdisjoint(shards[1]["utt_id"])
    assert (shards[0]["voiced_fraction"] > 0.4).all()

    meta = json.loads((workflow / "results/demo/tokens_meta.json").read_text())
    assert meta["fit_split"] == "train" and meta["normalise"] == "speaker"
    assert meta["n_manifest"] == meta["n_tokenised"] == len(manifest)
    assert len(meta["bin_edges"]["ENERGY"]["all"]) == 4 and "opensmile" in meta["versions"]

    # tokens carry the label (the synthetic classes differ by construction)
    association = pd.read_csv(workflow / "results/demo/tokens/token_association.csv").set_index("token")
    assert association.loc["ENERGY", "cramers_v"] > 0.5
    correlations = pd.read_csv(workflow / "results/demo/tokens/token_correlations.csv", index_col=0)
    assert correlations.loc["ENERGY", "DYNAMICS"] > 0.8
    assert (workflow / "results/demo/tokens/token_distributions.svg").stat().st_size > 10_000

    # the twin corpus holds the same audio: its LLDs come from the cache, identical
    twin = pd.read_parquet(workflow / "results/twin/tokens.parquet")
    pd.testing.assert_frame_equal(twin, tokens)
    logs = [(workflow / f"logs/{c}/extract_lld/{i}.log").read_text() for c in ("demo", "twin") for i in range(2)]
    extracted = sum(int(log.split(" from the cache, ")[1].split(" to extract")[0]) for log in logs)
    assert extracted == len(manifest) and all("(2 processes)" in log for log in logs[:2])

    # prompts: every test utterance under every condition, each utterance in one shard only
    prompts = [pd.read_parquet(workflow / f"results/demo/prompts/{i}.parquet") for i in range(2)]
    test_ids = set(manifest.loc[manifest["split"] == "test", "utt_id"])
    both = pd.concat(prompts)
    assert set(both["utt_id"]) == test_ids
    assert both.groupby("utt_id")["condition"].nunique().eq(26).all() and len(both) == 26 * len(test_ids)
    assert set(prompts[0]["utt_id"]).isdisjoint(prompts[1]["utt_id"])
    aligned = both[both["condition"] == "aligned"].set_index("utt_id")["token_string"]
    assert aligned.to_dict() == tokens.set_index("utt_id").loc[sorted(test_ids), "token_string"].to_dict()
    assert (both.groupby("utt_id")["prefix_text"].nunique() == 1).all()

    # how the LLD jobs use their cores is not a result: changing it reruns no stage (the report's
    # page showing the config is made again, as for any config change)
    config = yaml.safe_load((workflow / "config.yaml").read_text())
    write_config(workflow, config | {"lld_pool": "threads"})
    plan = snakemake(workflow, "-n", "--quiet", "rules").stdout
    assert "write_config_page" in plan
    for rule in ("extract_lld", "bin_tokens", "build_prompts", "build_manifest"):
        assert rule not in plan, rule

    # a new corruption level reruns the prompts only
    config["conditions"] = {"corrupt_p": [0.0, 0.5, 1.0]}
    write_config(workflow, config)
    plan = snakemake(workflow, "-n", "--quiet", "rules").stdout
    assert "build_prompts" in plan and "bin_tokens" not in plan and "extract_lld" not in plan

    # changing a token option reruns the token stages only, not the extraction or the corpus
    config = yaml.safe_load((workflow / "config.yaml").read_text())
    config["corpora"]["demo"]["tokens"]["normalise"] = "dataset"
    write_config(workflow, config)
    plan = snakemake(workflow, "-n", "--quiet", "rules").stdout
    assert "bin_tokens" in plan and "plot_token_diagnostics" in plan
    for rule in ("extract_lld", "build_manifest", "synthesize_corpus"):
        assert rule not in plan, rule
