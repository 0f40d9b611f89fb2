"""How the demo ALM's training recipe decides what the default study shows.

Trains the demo model (finetune.train on a small Qwen2-Audio initialised from a config) on the
train speakers of a corpus the workflow has already taken to its tokens, then scores the test
speakers under a few conditions and prints the UAR of each, with the training time:

    snakemake --cores 2 results/demo/tokens.parquet        # the default corpus, once
    python benchmarks/demo_training.py --results results/demo --mix none=0.4,aligned=0.4,tokens_only=0.2

Other recipes: --mix none=0.5,aligned=0.5, --epochs, --hidden, --learning-rate.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cuealign.corpora.audio import load_model_audio
from cuealign.interventions import conditions_from_config
from cuealign.models.finetune import finetune
from cuealign.models.loader import load_backend
from cuealign.prompts import prompt_table
from cuealign.tokens import TokensMeta
from cuealign.workflow.config import model_entry, validate_config

CONDITIONS = dict(conflict=True, shuffle_seeds=[0], corrupt_p=[0.5, 1.0], corrupt_seeds=[0], swap=[], tokens_only=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results/demo"))
    parser.add_argument("--mix", default="none=0.4,aligned=0.4,tokens_only=0.2")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    args = parser.parse_args()
    torch.set_num_threads(2)

    manifest = pd.read_parquet(args.results / "manifest.parquet")
    tokens = pd.read_parquet(args.results / "tokens.parquet")
    meta = json.loads((args.results / "tokens_meta.json").read_text())
    mix = {name: float(weight) for name, weight in (part.split("=") for part in args.mix.split(","))}
    config = validate_config(
        {
            "corpora": {"demo": {"type": "synthetic"}},
            "finetune": {
                "demo-alm": {
                    "corpus": "demo",
                    "family": "qwen2-audio",
                    "mix": mix,
                    "epochs": args.epochs,
                    "batch_size": 16,
                    "learning_rate": args.learning_rate,
                    "architecture": {"hidden_size": args.hidden},
                }
            },
        }
    )
    spec = config["finetune"]["demo-alm"]
    labels = sorted(manifest.loc[manifest["status"] == "ok", "label"].unique())
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        finetune(spec, tokens=tokens, manifest=manifest, meta=meta, prompt=config["prompt"], out_dir=folder)
        seconds = time.perf_counter() - start
        alm = load_backend(model_entry(folder, dtype="float32"))
        conditions = conditions_from_config(CONDITIONS, TokensMeta.of(meta).names)
        prompts = prompt_table(tokens, manifest, meta, conditions=conditions, prompt=config["prompt"], split="test")
        rows = []
        for (_, kind), group in prompts.groupby(["utt_id", "audio"]):
            audio, _ = load_model_audio(group["path"].iloc[0], rate=16000, window_s=30, silence=kind == "silence")
            scores = alm.score(audio, group["prefix_text"].iloc[0], list(group["suffix_text"]), labels)
            triples = zip(group["condition"], group["label"], scores, strict=True)
            rows += [(c, y, labels[int(np.argmax(s))]) for c, y, s in triples]
    table = pd.DataFrame(rows, columns=["condition", "label", "pred"])
    uar = table.groupby("condition").apply(
        lambda d: np.mean([np.mean(d["pred"][d["label"] == label] == label) for label in labels]), include_groups=False
    )
    speakers = manifest.groupby("split")["speaker"].nunique().to_dict()
    print(f"mix {mix}, hidden {args.hidden}, {args.epochs} epochs, speakers {speakers}: trained in {seconds:.0f} s")
    print(uar.round(3).to_string())


if __name__ == "__main__":
    main()
