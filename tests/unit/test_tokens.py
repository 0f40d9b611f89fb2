"""Concept tokens: binning and fitting rules by hand-made tables, and known answers on the synthetic corpus."""

import copy
import json
import logging

import numpy as np
import pandas as pd
import pytest

from cuealign.features import summary_columns
from cuealign.tokens import (
    HARMONIC_RELATION,
    HNR,
    JITTER,
    SHIMMER,
    TokenOptions,
    apply_tokens,
    assign_bins,
    fit_tokens,
    quantile_edges,
)
from cuealign.workflow.config import config_schema

DEFAULTS = config_schema()["properties"]["tokens"]["properties"]
LOUD, F0 = "Loudness_sma3", "F0semitoneFrom27.5Hz_sma3nz"


def default_options(**overrides) -> TokenOptions:
    options = {name: copy.deepcopy(spec["default"]) for name, spec in DEFAULTS.items()}
    for nested in ("voice_quality", "format"):
        options[nested] = {k: v["default"] for k, v in DEFAULTS[nested]["properties"].items()}
    options.update(overrides)
    return TokenOptions.from_config(options)


def make_data(n_train=100, n_test=20, *, seed=0, genders=("F", "M")):
    """Random LLD table and a manifest: first n_train rows train, the rest test."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    lld = pd.DataFrame(rng.normal(size=(n, len(summary_columns()))), columns=summary_columns())
    lld["voiced_fraction"], lld["n_frames"] = 0.7, 200
    utt = [f"u{i:03d}" for i in range(n)]
    lld.insert(0, "utt_id", utt)
    manifest = pd.DataFrame(
        {
            "utt_id": utt,
            "label": rng.choice(["a", "b"], n),
            "speaker": [f"s{i % 10}" for i in range(n)],
            "gender": [genders[i % len(genders)] if genders else None for i in range(n)],
            "split": ["train"] * n_train + ["test"] * n_test,
            "status": "ok",
        }
    )
    return lld, manifest


def test_quantile_bins_have_equal_counts_and_edges_go_up():
    scores = np.arange(100, dtype=float)
    edges = quantile_edges(scores, 5)
    assert edges == sorted(edges)
    assert np.bincount(assign_bins(scores, edges)).tolist() == [20] * 5
    assert assign_bins(np.array([np.nan, -1e9, 1e9]), edges).tolist() == [-1, 0, 4]


def test_edges_fitted_on_train_are_applied_unchanged_to_test():
    lld, manifest = make_data()
    tokens, meta = fit_tokens(lld, manifest, default_options(per_gender=[]))
    # change the test utterances completely: nothing fitted may move
    moved = lld.copy()
    test = manifest["split"] == "test"
    moved.loc[test, LOUD] = 1e6
    moved.loc[test, F0] = -1e6
    tokens2, meta2 = fit_tokens(moved, manifest, default_options(per_gender=[]))
    assert meta2["bin_edges"] == meta["bin_edges"] and meta2["standardisation"] == meta["standardisation"]
    assert meta["n_fit"] == 100
    pd.testing.assert_frame_equal(tokens2[~test], tokens[~test])
    assert (tokens2.loc[test, "ENERGY"] == "VERY_HIGH").all() and (tokens2.loc[test, "PITCH"] == "VERY_LOW").all()
    # the train split itself falls into equal bins
    assert tokens.loc[~test, "ENERGY"].value_counts().tolist() == [20] * 5


def test_meta_alone_tokenises_new_audio_the_same_way():
    """tokens_meta.json (through JSON) applied to the utterances gives the same tokens, and
    applied to new audio uses the fitted values unchanged."""
    lld, manifest = make_data(n_train=100, n_test=20)
    for overrides in ({"per_gender": ["PITCH", "VOICE_QUALITY"]}, {"normalise": "speaker", "per_gender": []}):
        tokens, meta = fit_tokens(lld, manifest, default_options(**overrides))
        meta = json.loads(json.dumps(meta.data))
        pd.testing.assert_frame_equal(apply_tokens(lld, manifest, meta), tokens)
    # new audio from a new speaker, dataset normalisation: one loud file gets the top bin
    tokens, meta = fit_tokens(lld, manifest, default_options(per_gender=[]))
    new = lld.iloc[[0]].assign(utt_id="new", **{LOUD: 50.0})
    info = manifest.iloc[[0]].assign(utt_id="new", speaker="stranger", split="test")
    assert apply_tokens(new, info, json.loads(json.dumps(meta.data)))["ENERGY"].item() == "VERY_HIGH"
    # speaker normalisation: a speaker the fit never saw is standardised on its own utterances,
    # exactly as a fitted speaker was (so renaming a speaker changes none of its tokens)
    tokens, meta = fit_tokens(lld, manifest, default_options(normalise="speaker", per_gender=[]))
    speaker = manifest["speaker"].iloc[0]
    rows = manifest["speaker"] == speaker
    renamed = manifest[rows].assign(speaker="stranger")
    moved = apply_tokens(lld[lld["utt_id"].isin(renamed["utt_id"])], renamed, json.loads(json.dumps(meta.data)))
    pd.testing.assert_frame_equal(
        moved.reset_index(drop=True), tokens[tokens["utt_id"].isin(renamed["utt_id"])].reset_index(drop=True)
    )
    # a gender that was not fitted is an error, not a silent guess
    _, per_gender = fit_tokens(lld, manifest, default_options(per_gender=["PITCH"]))
    with pytest.raises(ValueError, match="fitted per gender"):
        apply_tokens(new, info.assign(gender="X"), per_gender)


def test_fit_split_all_uses_every_utterance():
    lld, manifest = make_data()
    _, meta = fit_tokens(lld, manifest, default_options(fit_split="all", per_gender=[]))
    assert meta["n_fit"] == 120 and meta["fit_split"] == "all"


def test_tied_scores_share_one_token():
    lld, manifest = make_data()
    lld[LOUD] = np.repeat([1.0, 2.0, 3.0], 40)  # only three distinct values
    tokens, _ = fit_tokens(lld, manifest, default_options(per_gender=[]))
    by_value = tokens.groupby(lld[LOUD])["ENERGY"].nunique()
    assert (by_value == 1).all()  # equal scores, equal tokens
    assert tokens["ENERGY"].nunique() == 3


def test_constant_descriptor_gives_finite_scores_and_a_warning(caplog):
    lld, manifest = make_data()
    lld[LOUD] = 0.5
    with caplog.at_level(logging.WARNING):
        tokens, meta = fit_tokens(lld, manifest, default_options(per_gender=[]))
    assert np.isfinite(tokens["ENERGY_score"]).all() and tokens["ENERGY"].nunique() == 1
    assert meta["standardisation"]["all"]["scale"][LOUD] == 1.0
    assert "interquartile range is 0" in caplog.text


def test_per_gender_edges_balance_each_gender():
    lld, manifest = make_data(n_train=200, n_test=0)
    female = manifest["gender"] == "F"
    lld.loc[female, F0] += 10.0  # female voices an octave-ish higher
    per_gender, meta = fit_tokens(lld, manifest, default_options(per_gender=["PITCH"]))
    assert set(meta["bin_edges"]["PITCH"]) == {"F", "M"} and set(meta["bin_edges"]["ENERGY"]) == {"all"}
    for gender in ("F", "M"):
        counts = per_gender.loc[manifest["gender"] == gender, "PITCH"].value_counts()
        assert counts.tolist() == [20] * 5, gender
    pooled, _ = fit_tokens(lld, manifest, default_options(per_gender=[]))
    # pooled edges put every female voice in the upper half and every male one in the lower
    assert not pooled.loc[female, "PITCH"].isin(["VERY_LOW", "LOW"]).any()
    assert not pooled.loc[~female, "PITCH"].isin(["HIGH", "VERY_HIGH"]).any()


def test_per_gender_without_genders_is_an_error_naming_the_fix():
    lld, manifest = make_data(genders=())
    with pytest.raises(ValueError, match=r"PITCH has gender-specific bin edges.*tokens.per_gender: \[\]"):
        fit_tokens(lld, manifest, default_options())


def test_per_gender_must_name_a_concept():
    with pytest.raises(ValueError, match=r"tokens.per_gender names \['PICH'\]"):
        default_options(per_gender=["PICH"])


def test_unvoiced_utterance_gets_unvoiced_tokens():
    lld, manifest = make_data()
    lld.loc[0, "voiced_fraction"] = 0.0
    nz = [c for c in summary_columns() if c.endswith("_sma3nz")]
    lld.loc[0, nz] = np.nan
    tokens, _ = fit_tokens(lld, manifest, default_options(per_gender=[]))
    row = tokens.iloc[0]
    assert row["VOICE_QUALITY"] == "UNVOICED" and row["PITCH"] == "UNVOICED" and row["FORMANTS"] == "UNVOICED"
    assert row["ENERGY"] != "UNVOICED"


def test_voice_quality_rules():
    lld, manifest = make_data(n_train=100, n_test=4)
    test = manifest.index[manifest["split"] == "test"]
    # breathy: very low HNR, steep tilt; rough: high jitter and shimmer; pressed: flat tilt, clean voice
    lld.loc[test[0], [HNR, HARMONIC_RELATION, JITTER, SHIMMER]] = [-5, 5, 0, 0]
    lld.loc[test[1], [HNR, HARMONIC_RELATION, JITTER, SHIMMER]] = [0, 0, 5, 5]
    lld.loc[test[2], [HNR, HARMONIC_RELATION, JITTER, SHIMMER]] = [5, -5, 0, 0]
    lld.loc[test[3], [HNR, HARMONIC_RELATION, JITTER, SHIMMER]] = [0, 0, 0, 0]
    tokens, meta = fit_tokens(lld, manifest, default_options(per_gender=[]))
    assert tokens.loc[test, "VOICE_QUALITY"].tolist() == ["BREATHY", "ROUGH", "PRESSED", "MODAL"]
    assert set(meta["voice_quality"]["thresholds"]["all"]) == {JITTER, SHIMMER, HNR, HARMONIC_RELATION}


def test_token_string_format():
    lld, manifest = make_data()
    tokens, _ = fit_tokens(lld, manifest, default_options(per_gender=[]))
    row = tokens.iloc[0]
    expected = "; ".join(
        f"{name}={row[name]}" for name in ["ENERGY", "PITCH", "BRIGHTNESS", "DYNAMICS", "FORMANTS", "VOICE_QUALITY"]
    )
    assert row["token_string"] == expected
    custom, _ = fit_tokens(
        lld, manifest, default_options(per_gender=[], format={"template": "<{concept}:{token}>", "separator": " "})
    )
    assert custom["token_string"].iloc[0].startswith(f"<ENERGY:{row['ENERGY']}> <PITCH:")


def test_every_usable_utterance_is_accounted_for():
    lld, manifest = make_data()
    with pytest.raises(ValueError, match="1 usable utterances of the manifest have no LLDs"):
        fit_tokens(lld.iloc[1:], manifest, default_options(per_gender=[]))
    manifest.loc[0, "status"] = "silent: peak 0"
    with pytest.raises(ValueError, match="1 LLD rows are not usable"):
        fit_tokens(lld, manifest, default_options(per_gender=[]))
    tokens, meta = fit_tokens(lld.iloc[1:], manifest, default_options(per_gender=[]))
    assert meta["n_manifest"] == 120 and meta["n_tokenised"] == 119 == len(tokens)


# --- known answers on the synthetic corpus -------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from cuealign.corpora import read_corpus
    from cuealign.corpora.manifest import build_manifest
    from cuealign.corpora.synthesis import generate_corpus
    from cuealign.features import extract_lld_means

    root = tmp_path_factory.mktemp("syn")
    generate_corpus(root, seed=7, female_speakers=3, male_speakers=3, utterances_per_class=4).to_csv(
        root / "ground_truth.csv", index=False
    )
    manifest, _ = build_manifest(read_corpus({"type": "synthetic", "root": str(root)}), progress=False)
    return extract_lld_means(manifest, threads=2, progress=False), manifest


def _shares(tokens, manifest, concept, labels):
    d = tokens.merge(manifest[["utt_id", "label"]], on="utt_id")
    top = d[concept].isin(labels[-2:])
    bottom = d[concept].isin(labels[:2])
    rank = d[concept].map({label: i for i, label in enumerate(labels)})
    return top.groupby(d["label"]).mean(), bottom.groupby(d["label"]).mean(), rank.groupby(d["label"]).mean()


@pytest.mark.parametrize(
    "overrides",
    [
        {"normalise": "speaker", "per_gender": []},  # the demo's setting
        {"normalise": "dataset", "per_gender": ["PITCH", "FORMANTS", "BRIGHTNESS", "VOICE_QUALITY"]},
    ],
    ids=["speaker", "dataset-per-gender"],
)
def test_tokens_follow_the_directions_the_corpus_was_generated_with(synthetic, overrides):
    lld, manifest = synthetic
    tokens, meta = fit_tokens(lld, manifest, default_options(**overrides))
    for concept in ("ENERGY", "BRIGHTNESS", "DYNAMICS"):
        top, bottom, _ = _shares(tokens, manifest, concept, meta["concepts"][concept]["labels"])
        assert top["angry"] >= 0.8, (concept, top["angry"])
        assert bottom["sad"] >= 0.8, (concept, bottom["sad"])
    for concept in ("PITCH", "FORMANTS"):
        _, bottom, rank = _shares(tokens, manifest, concept, meta["concepts"][concept]["labels"])
        assert rank["angry"] > rank["neutral"] > rank["sad"], (concept, rank.to_dict())
        assert bottom["sad"] >= 0.8, (concept, bottom["sad"])
    _, _, pitch_rank = _shares(tokens, manifest, "PITCH", meta["concepts"]["PITCH"]["labels"])
    assert pitch_rank["happy"] > pitch_rank["neutral"]
    quality = tokens.merge(manifest[["utt_id", "label"]], on="utt_id")
    breathy = (quality["VOICE_QUALITY"] == "BREATHY").groupby(quality["label"]).mean()
    assert breathy["sad"] >= 0.3 and breathy["sad"] > 2 * breathy.drop("sad").max()


def test_per_speaker_normalisation_refuses_a_speaker_with_too_few_utterances():
    lld, manifest = make_data(n_train=100, n_test=20)
    manifest.loc[0, "speaker"] = "lonely"  # one utterance: its own median and IQR would make every token MID
    with pytest.raises(ValueError, match=r"fewer than tokens.min_speaker_utterances = 5: lonely \(1\)"):
        fit_tokens(lld, manifest, default_options(normalise="speaker", per_gender=[]))
    # the dataset's median/IQR has no such limit; lowering the minimum is the user's informed choice
    fit_tokens(lld, manifest, default_options(normalise="dataset", per_gender=[]))
    fit_tokens(lld, manifest, default_options(normalise="speaker", per_gender=[], min_speaker_utterances=1))


def test_descriptor_names_are_the_extracted_ones_and_a_misspelt_one_is_named():
    from cuealign.tokens import DESCRIPTORS

    assert list(DESCRIPTORS) + ["voiced_fraction", "n_frames"] == summary_columns()  # openSMILE's own list
    concepts = {"ENERGY": {"descriptors": {"Loudnes_sma3": 1}, "labels": ["LOW", "HIGH"]}}
    with pytest.raises(ValueError, match=r"tokens.concepts.ENERGY.descriptors names \['Loudnes_sma3'\]"):
        default_options(concepts=concepts)
