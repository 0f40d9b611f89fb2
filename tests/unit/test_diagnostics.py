import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cuealign.diagnostics import concept_correlations, label_association, write_diagnostics


def _cramers_v_by_hand(x, y):
    table = pd.crosstab(x, y).to_numpy().astype(float)
    n = table.sum()
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = ((table - expected) ** 2 / expected).sum()
    return np.sqrt(chi2 / (n * (min(table.shape) - 1)))


def _mutual_information_by_hand(x, y):
    n = len(x)
    mi = 0.0
    for a in set(x):
        for b in set(y):
            pab = np.sum((x == a) & (y == b)) / n
            if pab:
                mi += pab * np.log2(pab / ((np.sum(x == a) / n) * (np.sum(y == b) / n)))
    return mi


def test_association_matches_independent_computation():
    rng = np.random.default_rng(0)
    labels = pd.Series(rng.choice(["angry", "sad", "neutral"], 300))
    informative = labels.map({"angry": "HIGH", "sad": "LOW", "neutral": "MID"}).where(rng.random(300) > 0.3, "MID")
    noise = pd.Series(rng.choice(["LOW", "MID", "HIGH"], 300))
    tokens = pd.DataFrame({"A": informative, "B": noise})
    table = label_association(tokens, labels, ["A", "B"]).set_index("token")
    for name in ("A", "B"):
        assert table.loc[name, "cramers_v"] == pytest.approx(_cramers_v_by_hand(tokens[name], labels))
        assert table.loc[name, "mutual_information_bits"] == pytest.approx(
            _mutual_information_by_hand(tokens[name].to_numpy(), labels.to_numpy())
        )
    assert table.loc["A", "cramers_v"] > 0.5 > 0.2 > table.loc["B", "cramers_v"]
    assert table.loc["A", "chi2_p"] < 1e-10 and table.loc["B", "chi2_p"] > 0.01
    # a token with one value carries nothing
    constant = label_association(pd.DataFrame({"C": ["MID"] * 300}), labels, ["C"]).iloc[0]
    assert constant["cramers_v"] == 0.0 and constant["mutual_information_bits"] == 0.0


def test_correlations_are_spearman():
    rng = np.random.default_rng(1)
    energy = rng.normal(size=50)
    tokens = pd.DataFrame({"ENERGY_score": energy, "DYNAMICS_score": energy**3 + 0.1 * rng.normal(size=50)})
    corr = concept_correlations(tokens, ["ENERGY", "DYNAMICS"])
    assert corr.loc["ENERGY", "DYNAMICS"] == pytest.approx(
        stats.spearmanr(tokens["ENERGY_score"], tokens["DYNAMICS_score"]).statistic
    )


def test_write_diagnostics_writes_every_file(tmp_path):
    rng = np.random.default_rng(2)
    n = 40
    levels = ["VERY_LOW", "LOW", "MID", "HIGH", "VERY_HIGH"]
    tokens = pd.DataFrame(
        {
            "utt_id": [f"u{i}" for i in range(n)],
            "ENERGY_score": rng.normal(size=n),
            "ENERGY": rng.choice(levels, n),
            "VOICE_QUALITY": rng.choice(["MODAL", "BREATHY"], n),
        }
    )
    manifest = pd.DataFrame({"utt_id": tokens["utt_id"], "label": rng.choice(["a", "b"], n)})
    meta = {"concepts": {"ENERGY": {"labels": levels}}, "voice_quality": {"labels": ["MODAL", "BREATHY", "UNVOICED"]}}
    out = {k: tmp_path / f"x.{k}" for k in ("png", "svg", "corr", "assoc")}
    write_diagnostics(
        tokens,
        manifest,
        meta,
        figure_png=out["png"],
        figure_svg=out["svg"],
        correlations_csv=out["corr"],
        association_csv=out["assoc"],
        corpus="c",
    )
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in out["svg"].read_text()[:500] and "VOICE_QUALITY" in out["svg"].read_text()
    assert pd.read_csv(out["assoc"])["token"].tolist() == ["ENERGY", "VOICE_QUALITY"]
    assert pd.read_csv(out["corr"], index_col=0).loc["ENERGY", "ENERGY"] == 1.0
