"""Train a small demo model and score with it in a fresh process, as the finetune and inference
jobs do, and print what came out as hashes: the trained weights, the training losses and the
label log-probabilities of a few test prompts. tests/unit/test_numerics.py runs it under several
CPU kernel paths (environment variables) and on an emulated CPU of another maker, and compares the
bits.

    python -m tests.numerics_probe STUDY.pkl OUT_DIR NUMERICS THREADS
"""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
from pathlib import Path


def main(study_file: str, out_dir: str, numerics: str, threads: int) -> dict:
    from cuealign.models.numerics import numerics_in_use, setup_numerics

    setup_numerics(numerics, "cpu", threads=threads)  # first, as in the job scripts

    from cuealign.cache import AnswerStore
    from cuealign.interventions import Condition
    from cuealign.models.finetune import finetune
    from cuealign.models.inference import predict_shard
    from cuealign.models.loader import load_backend
    from cuealign.prompts import prompt_table
    from cuealign.workflow.config import model_entries, validate_config

    study = pickle.loads(Path(study_file).read_bytes())
    config = validate_config(
        {
            "corpora": {"demo": {"type": "synthetic"}},
            # the demo ALM's architecture and mix, a shorter training
            "finetune": {
                "ft": {
                    "corpus": "demo",
                    "family": "qwen2-audio",
                    "architecture": {"hidden_size": 32, "layers": 2, "vocab_size": 600, "audio_window_s": 4},
                    "mix": {"none": 0.4, "aligned": 0.4, "tokens_only": 0.2},
                    "epochs": 2,
                    "batch_size": 8,
                    "learning_rate": 0.003,
                    "numerics": numerics,
                }
            },
        }
    )
    out = Path(out_dir)
    history, _ = finetune(config["finetune"]["ft"], out_dir=out / "model", **study)
    spec = model_entries(config)["ft"] | {"path": str(out / "model")}
    conditions = [Condition("none"), Condition("aligned"), Condition("conflict")]
    prompts = prompt_table(
        study["tokens"], study["manifest"], study["meta"], conditions=conditions, prompt=study["prompt"], split="test"
    )
    labels = sorted(study["manifest"]["label"].unique())
    scores = predict_shard(
        prompts, load_backend(spec), labels=labels, spec=spec, cache=AnswerStore(out / "cache", "p"), progress=False
    )
    logprobs = scores.sort_values(["utt_id", "condition"])[[f"logprob_{label}" for label in labels]]

    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()[:16]

    import torch

    # The control: square roots through MKL's vector math (torch.sqrt on CPU), whose last bits
    # depend on how the CPU computes its approximate instructions (rsqrtps): a CPU that computes
    # them otherwise gives other bits here (tests/unit/test_numerics.py).
    control = torch.sqrt(torch.linspace(0.1, 10.0, 4097)).numpy().tobytes()
    return {
        "control": digest(control),
        "numerics": numerics_in_use(),
        "weights": digest((out / "model/model.safetensors").read_bytes()),
        "losses": digest(history["loss"].to_numpy().tobytes()),
        "logprobs": digest(logprobs.to_numpy().tobytes()),
        "prompts": len(scores),
    }


if __name__ == "__main__":
    study_file, out_dir, numerics, threads = sys.argv[1:5]
    print(json.dumps(main(study_file, out_dir, numerics, int(threads))))
