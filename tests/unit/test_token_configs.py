"""Configs the schema accepts run to the end: concept labels with digits, lower-case concept keys
and a token format without delimiters go through prompts, analysis and cue following (which read
the token columns, never the prompt's text)."""

import numpy as np
import pandas as pd

from cuealign.analysis.answers import analyse
from cuealign.analysis.cue_following import class_given_token, cue_following
from cuealign.interventions import Condition
from cuealign.prompts import prompt_table
from cuealign.tokens import fit_tokens, token_column
from cuealign.workflow.config import validate_config
from tests.unit.test_tokens import default_options, make_data

LABELS = ["a", "b"]


def test_digit_labels_lower_case_keys_and_a_bare_format_reach_the_tables():
    concepts = {
        "loud": {"descriptors": {"Loudness_sma3": 1}, "labels": ["Q1", "Q2", "Q3"]},
        "pitch2": {"descriptors": {"F0semitoneFrom27.5Hz_sma3nz": 1}, "labels": ["Q1", "Q2", "Q3"]},
    }
    options = default_options(
        concepts=concepts, per_gender=[], format={"template": "{concept}{token}", "separator": ""}
    )
    lld, manifest = make_data(n_train=100, n_test=40)
    manifest = manifest.assign(path=manifest["utt_id"] + ".wav", sha256=manifest["utt_id"], duration_s=2.0)
    tokens, meta = fit_tokens(lld, manifest, options)
    assert set(tokens["loud"]) == {"Q1", "Q2", "Q3"}
    conditions = [Condition("none"), Condition("aligned"), Condition("conflict"), Condition("swap", concept="loud")]
    prompt = validate_config({"corpora": {"demo": {"type": "synthetic"}}})["prompt"]
    prompts = prompt_table(tokens, manifest, meta, conditions=conditions, prompt=prompt, split="test")
    assert prompts.loc[prompts["condition"] == "aligned", "suffix_text"].str.contains(r"loudQ[123]pitch2Q[123]").all()
    # a model that follows the loud token: Q3 -> a, Q1 -> b
    rng = np.random.default_rng(0)
    rows = []
    for shown in prompts[token_column("loud")]:
        lean = {"Q3": 2.0, "Q1": -2.0}.get(shown, 0.0)  # none shows no token
        logp = np.array([lean, -lean]) + rng.normal(0, 0.1, 2)
        rows.append({"logprob_a": logp[0], "logprob_b": logp[1], "pred": LABELS[int(np.argmax(logp))]})
    predictions = pd.concat(
        [prompts.reset_index(drop=True), pd.DataFrame(rows)], axis=1
    )  # prompts carry label, speaker
    result = analyse(predictions, labels=LABELS, expected_conditions=[c.name for c in conditions], resamples=50)
    assert result["uar"]["uar"].between(0, 1).all()
    fitted = tokens.merge(manifest, on="utt_id")
    fitted = fitted[fitted["split"] == "train"]
    # a class association the model's lean agrees with: Q3 mostly a, Q1 mostly b
    association = class_given_token(fitted, np.where(fitted["loud"] == "Q3", "a", "b"), meta.names, LABELS)
    cues = cue_following(predictions, association, labels=LABELS).set_index("condition")
    assert cues.loc["swap_loud", "utterances"] > 0 and cues.loc["swap_loud", "cue_alignment"] > 0.5
