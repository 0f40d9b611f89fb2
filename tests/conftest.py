"""Shared fixtures: small corpora in their real layouts (built by tests/fakes.py)."""

import os
from pathlib import Path

import pytest

from tests.fakes import make_aibo, make_iemocap


@pytest.fixture(scope="session", autouse=True)
def slurm_clients_answer_at_once():
    """Every Snakemake start imports snakemake-executor-plugin-slurm (2.8.0), which runs
    ``scontrol show config`` for a help text; where SLURM's client is installed (CI installs it for
    the SLURM test) and no controller is up, scontrol waits 9-10 s for one, in every ``snakemake``
    the tests start. An empty SLURM_CONF makes scontrol fail at once ("Unable to process
    configuration file"); the SLURM test gives its cluster's own configuration back."""
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = os.devnull
    yield
    if before is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = before


@pytest.fixture
def iemocap_root(tmp_path: Path) -> Path:
    return make_iemocap(tmp_path / "IEMOCAP")


@pytest.fixture
def aibo_root(tmp_path: Path) -> Path:
    return make_aibo(tmp_path / "aibo")


PROMPT_TEXTS = [
    "What emotion does the speaker express? Answer with one word from: angry, happy, neutral, sad.",
    " Acoustic cues measured from the audio: ENERGY=VERY_HIGH; PITCH=MID; BRIGHTNESS=VERY_BRIGHT; "
    "DYNAMICS=VERY_DYNAMIC; FORMANTS=LOW; VOICE_QUALITY=BREATHY.",
    "VERY_LOW LOW MID HIGH VERY_HIGH VERY_DARK DARK BRIGHT VERY_STATIC STATIC DYNAMIC MODAL PRESSED ROUGH CREAKY",
    "angry happy neutral sad",
]


def _tiny(family, tmp_path_factory) -> Path:
    from cuealign.models.tiny import build_tiny_alm

    return build_tiny_alm(family, tmp_path_factory.mktemp("models") / family, PROMPT_TEXTS * 3)


@pytest.fixture(scope="session")
def tiny_qwen2_audio(tmp_path_factory) -> Path:
    """A ~0.5 MB random-weight Qwen2-Audio of the real class, saved with save_pretrained."""
    return _tiny("qwen2-audio", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_omni(tmp_path_factory) -> Path:
    """A random-weight Qwen2.5-Omni thinker whose folder names Omni's own processor, as released."""
    return _tiny("qwen2.5-omni", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_clap(tmp_path_factory) -> Path:
    """A ~1.5 MB random-weight CLAP (ClapModel, RoBERTa tokenizer, 48 kHz feature extractor)."""
    return _tiny("clap", tmp_path_factory)


@pytest.fixture(scope="session", params=["qwen2-audio", "qwen2.5-omni", "audio-flamingo-3"])
def tiny_alm(request, tmp_path_factory) -> tuple[str, Path]:
    """(family, path) of a tiny random-weight model of each registered audio-language family."""
    return request.param, _tiny(request.param, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> dict:
    """A small synthetic corpus taken through the real workflow up to its tokens: the inputs of
    the prompts and finetune stages (manifest, tokens, tokens_meta) and the default prompt."""
    import json

    import pandas as pd
    import yaml

    from cuealign.workflow.config import validate_config
    from tests.workflow.conftest import copy_workflow, snakemake

    workdir = copy_workflow(tmp_path_factory.mktemp("study"))
    corpus = {
        "type": "synthetic",
        "seed": 3,
        "female_speakers": 2,
        "male_speakers": 2,
        "utterances_per_class": 3,
        "test_speakers_per_gender": 1,
        "tokens": {"normalise": "speaker", "per_gender": []},
    }
    config = {"corpora": {"demo": corpus}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "--cores", "2", "results/demo/tokens.parquet")
    results = workdir / "results/demo"
    return {
        "manifest": pd.read_parquet(results / "manifest.parquet"),
        "tokens": pd.read_parquet(results / "tokens.parquet"),
        "meta": json.loads((results / "tokens_meta.json").read_text()),
        "prompt": validate_config(config)["prompt"],
    }
