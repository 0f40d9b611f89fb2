"""Concept tokens: robust standardisation, concept scores, quantile bins and VOICE_QUALITY.

Fitting (centres, scales, bin edges, voice-quality thresholds) uses one split only (train by
default) and the fitted values are applied unchanged to every split, so nothing of the test
labels or test distribution leaks into the tokens. Everything fitted goes into tokens_meta.json,
enough to tokenise new audio the same way.

VOICE_QUALITY rules, on the standardised descriptors; thresholds are quantiles of the voiced
utterances of the fit split (per gender when VOICE_QUALITY is in per_gender); first rule wins:
  UNVOICED  voiced_fraction < min_voiced_fraction
  BREATHY   HNR below its low quantile and the harmonic relation H1-A3 above its median
  ROUGH     jitter and shimmer both above their high quantiles
  CREAKY    PITCH in its lowest bin and jitter above its high quantile
  PRESSED   H1-A3 below its low quantile and HNR above its median
  MODAL     otherwise
Why H1-A3 and not H1-H2: on harmonic complexes (tests/unit/test_features.py) openSMILE's
``logRelF0-H1-H2_sma3nz`` follows the 2nd harmonic against the 3rd, not H1 against H2, so it
mostly tracks where F1 falls between harmonics; ``logRelF0-H1-A3_sma3nz`` also follows the 2nd
harmonic, but against the F3 region, so it measures the overall tilt of the source: high for a
steep, lax (breathy) source, low for a pressed one. That is how the rules use it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

VOICE_QUALITY = "VOICE_QUALITY"
VQ_LABELS = ("MODAL", "BREATHY", "PRESSED", "ROUGH", "CREAKY", "UNVOICED")
UNVOICED = "UNVOICED"
JITTER, SHIMMER, HNR = "jitterLocal_sma3nz", "shimmerLocaldB_sma3nz", "HNRdBACF_sma3nz"
# What a concept can average: openSMILE's 25 eGeMAPSv02 LLDs, in its order, and the voiced-frame
# spectral means (cuealign.features.summary_columns; a test checks the two lists agree). Kept here
# so that the config checks need not load openSMILE.
DESCRIPTORS = (
    "Loudness_sma3",
    "alphaRatio_sma3",
    "hammarbergIndex_sma3",
    "slope0-500_sma3",
    "slope500-1500_sma3",
    "spectralFlux_sma3",
    "mfcc1_sma3",
    "mfcc2_sma3",
    "mfcc3_sma3",
    "mfcc4_sma3",
    "F0semitoneFrom27.5Hz_sma3nz",
    "jitterLocal_sma3nz",
    "shimmerLocaldB_sma3nz",
    "HNRdBACF_sma3nz",
    "logRelF0-H1-H2_sma3nz",
    "logRelF0-H1-A3_sma3nz",
    "F1frequency_sma3nz",
    "F1bandwidth_sma3nz",
    "F1amplitudeLogRelF0_sma3nz",
    "F2frequency_sma3nz",
    "F2bandwidth_sma3nz",
    "F2amplitudeLogRelF0_sma3nz",
    "F3frequency_sma3nz",
    "F3bandwidth_sma3nz",
    "F3amplitudeLogRelF0_sma3nz",
    "alphaRatioV_sma3nz",
    "hammarbergIndexV_sma3nz",
    "slopeV0-500_sma3nz",
    "slopeV500-1500_sma3nz",
)
HARMONIC_RELATION = "logRelF0-H1-A3_sma3nz"
ALL = "all"


@dataclass(frozen=True)
class Concept:
    """A scalar concept: signed descriptors averaged after standardisation, cut into ordered bins."""

    name: str
    descriptors: dict[str, int]  # descriptor -> +1 or -1 so that higher means more of the concept
    labels: tuple[str, ...]  # bin labels, lowest first


@dataclass(frozen=True, kw_only=True)
class TokenOptions:
    """How tokens are fitted (config: tokens, with a corpus' own tokens block merged over it)."""

    concepts: tuple[Concept, ...]
    fit_split: Literal["train", "dev", "test", "all"] = "train"
    normalise: Literal["dataset", "speaker"] = "dataset"
    per_gender: tuple[str, ...] = ()
    min_speaker_utterances: int = 5
    min_voiced_fraction: float = 0.05
    vq_low_quantile: float = 0.2
    vq_high_quantile: float = 0.8
    template: str = "{concept}={token}"
    separator: str = "; "

    @classmethod
    def from_config(cls, options: dict[str, Any]) -> TokenOptions:
        concepts = tuple(
            Concept(name, dict(spec["descriptors"]), tuple(spec["labels"]))
            for name, spec in options["concepts"].items()
        )
        for concept in concepts:
            where = f"config: tokens.concepts.{concept.name}"
            if concept.name == VOICE_QUALITY:
                raise ValueError(
                    f"{where}: {VOICE_QUALITY} is the built-in concept (set by tokens.voice_quality, always in "
                    "the token block); a concept of that name would appear twice in every prompt. Rename yours "
                    "(e.g. VOICE_QUALITY_LLD)"
                )
            if repeated := sorted({label for label in concept.labels if concept.labels.count(label) > 1}):
                raise ValueError(
                    f"{where}.labels repeats {repeated}: each bin needs a label of its own (two bins with one "
                    "label would be one token for two ranges); name every bin once, lowest first"
                )
            if misspelt := sorted(set(concept.descriptors) - set(DESCRIPTORS)):
                raise ValueError(
                    f"{where}.descriptors names {misspelt}, which are not eGeMAPSv02 "
                    f"LLDs or their voiced-frame spectral means; the descriptors are {list(DESCRIPTORS)}"
                )
        unknown = sorted(set(options["per_gender"]) - {c.name for c in concepts} - {VOICE_QUALITY})
        if unknown:
            raise ValueError(f"config: tokens.per_gender names {unknown}, which are not in tokens.concepts")
        vq = options["voice_quality"]
        return cls(
            concepts=concepts,
            fit_split=options["fit_split"],
            normalise=options["normalise"],
            min_speaker_utterances=options["min_speaker_utterances"],
            per_gender=tuple(options["per_gender"]),
            min_voiced_fraction=vq["min_voiced_fraction"],
            vq_low_quantile=vq["low_quantile"],
            vq_high_quantile=vq["high_quantile"],
            template=options["format"]["template"],
            separator=options["format"]["separator"],
        )

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.concepts] + [VOICE_QUALITY]

    def descriptors(self) -> list[str]:
        used = {d for c in self.concepts for d in c.descriptors} | {JITTER, SHIMMER, HNR, HARMONIC_RELATION}
        return sorted(used)


@dataclass
class Standardiser:
    """Robust z-scores: (x - median) / IQR, fitted per descriptor (and per speaker if chosen)."""

    centre: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, table: pd.DataFrame, columns: list[str]) -> Standardiser:
        centre, scale = {}, {}
        for column in columns:
            values = table[column].dropna().to_numpy(dtype=float)
            if values.size == 0:
                centre[column], scale[column] = 0.0, 1.0
                log.warning("%s: no values to standardise on; left unscaled", column)
                continue
            q25, q50, q75 = np.quantile(values, [0.25, 0.5, 0.75])
            iqr = q75 - q25
            if iqr <= 0:
                # A (nearly) constant descriptor: fall back to the SD, then to 1, so scores stay finite.
                iqr = float(values.std()) or 1.0
                log.warning("%s: interquartile range is 0; scaled by %.3g instead", column, iqr)
            centre[column], scale[column] = float(q50), float(iqr)
        return cls(centre, scale)

    def apply(self, table: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {c: (table[c].to_numpy(dtype=float) - self.centre[c]) / self.scale[c] for c in self.centre},
            index=table.index,
        )


TOKEN_PREFIX = "token."  # prompts and predictions: one column token.<CONCEPT> per concept


def token_column(concept: str) -> str:
    """The prompts' and predictions' column holding a concept's token under a condition."""
    return TOKEN_PREFIX + concept


@dataclass(frozen=True)
class TokensMeta:
    """tokens_meta.json: everything tokenisation fitted, and the one reader of it that later
    stages (prompts, interventions, fine-tuning, diagnostics, cue following) use."""

    data: dict

    @classmethod
    def of(cls, meta: TokensMeta | dict) -> TokensMeta:
        return meta if isinstance(meta, TokensMeta) else cls(meta)

    @classmethod
    def read(cls, path: str | Path) -> TokensMeta:
        with open(path) as stream:
            return cls(json.load(stream))

    def write(self, path: str | Path) -> None:
        with open(path, "w") as stream:
            json.dump(self.data, stream, indent=2)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def names(self) -> list[str]:
        """Every concept in prompt order, VOICE_QUALITY last."""
        return [*self.data["concepts"], VOICE_QUALITY]

    @property
    def columns(self) -> list[str]:
        """The token columns of prompts and predictions, in prompt order."""
        return [token_column(name) for name in self.names]

    def vocabularies(self, *, unvoiced: bool = False) -> dict[str, list[str]]:
        """Each concept's tokens, lowest bin first. Without ``unvoiced`` (what interventions draw
        from), UNVOICED is left out: it says that nothing was measured, not a value."""
        out = {name: list(spec["labels"]) for name, spec in self.data["concepts"].items()}
        out[VOICE_QUALITY] = [v for v in self.data["voice_quality"]["labels"] if v != UNVOICED]
        if unvoiced:
            out = {name: [*labels, UNVOICED] for name, labels in out.items()}
        return out

    def serialise(self, tokens: pd.DataFrame) -> list[str]:
        """Token strings of a table with one column per concept (named by the concept)."""
        return serialise(tokens, self.names, **self.data["format"])

    def fit_rows(self, frame: pd.DataFrame) -> pd.Series:
        """Which rows of a table with a split column the tokens were fitted on."""
        return _fit_rows(frame, self.data["fit_split"])


def _fit_rows(frame: pd.DataFrame, fit_split: str) -> pd.Series:
    return pd.Series(True, index=frame.index) if fit_split == ALL else frame["split"] == fit_split


def _fit_standardisation(frame: pd.DataFrame, options: TokenOptions, fit: pd.Series) -> dict:
    columns = options.descriptors()
    if options.normalise == "dataset":
        fitted = Standardiser.fit(frame[fit], columns)
        return {ALL: {"centre": fitted.centre, "scale": fitted.scale}}
    # Per speaker: each speaker's own utterances of every split (label-free), so a test speaker
    # unseen in training is normalised by itself. A median and IQR of a handful of utterances say
    # nothing (one utterance scores 0 on everything: all tokens MID), so too few is an error.
    counts = frame["speaker"].value_counts()
    if len(few := counts[counts < options.min_speaker_utterances]):
        shown = ", ".join(f"{speaker} ({n})" for speaker, n in few.sort_index().head(10).items())
        raise ValueError(
            f"tokens.normalise: speaker standardises each speaker on their own utterances, and {len(few)} "
            f"speakers have fewer than tokens.min_speaker_utterances = {options.min_speaker_utterances}: {shown}. "
            "Use normalise: dataset for this corpus, or lower min_speaker_utterances knowingly"
        )
    return {
        str(speaker): vars(Standardiser.fit(rows, columns)) for speaker, rows in frame.groupby("speaker", sort=True)
    }


def _standardise(frame: pd.DataFrame, standardisation: dict, normalise: str, columns: list[str]) -> pd.DataFrame:
    """z-scores with fitted centres and scales; a speaker not seen at fitting (speaker mode) is
    standardised on its own utterances, as the fitted speakers were."""
    if normalise == "dataset":
        return Standardiser(**standardisation[ALL]).apply(frame)
    parts = []
    for speaker, rows in frame.groupby("speaker", sort=True):
        fitted = standardisation.get(str(speaker))
        standardiser = Standardiser(**fitted) if fitted else Standardiser.fit(rows, columns)
        parts.append(standardiser.apply(rows))
    return pd.concat(parts).loc[frame.index]


def concept_scores(z: pd.DataFrame, concepts: tuple[Concept, ...]) -> pd.DataFrame:
    """Each concept's score: the mean of its signed standardised descriptors (NaN ones skipped)."""
    scores = {}
    for concept in concepts:
        signed = np.column_stack([sign * z[d].to_numpy() for d, sign in concept.descriptors.items()])
        with np.errstate(all="ignore"):
            count = np.sum(~np.isnan(signed), axis=1)
            scores[concept.name] = np.where(count > 0, np.nansum(signed, axis=1) / np.maximum(count, 1), np.nan)
    return pd.DataFrame(scores, index=z.index)


def quantile_edges(scores: np.ndarray, n_bins: int) -> list[float]:
    """Inner edges of ``n_bins`` equal-count bins of the finite scores."""
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        raise ValueError("no finite scores to fit bin edges on")
    return [float(q) for q in np.quantile(finite, np.arange(1, n_bins) / n_bins)]


def assign_bins(scores: np.ndarray, edges: list[float]) -> np.ndarray:
    """Bin index of each score (a score equal to an edge goes to the upper bin; NaN -> -1)."""
    index = np.searchsorted(np.asarray(edges), scores, side="right")
    return np.where(np.isfinite(scores), index, -1)


def _groups(frame: pd.DataFrame, per_gender: bool, concept: str) -> dict[str, pd.Series]:
    if not per_gender:
        return {ALL: pd.Series(True, index=frame.index)}
    gender = frame["gender"]
    if gender.isna().any():
        missing = frame.loc[gender.isna(), "utt_id"].head(5).tolist()
        raise ValueError(
            f"{concept} has gender-specific bin edges (tokens.per_gender) but {int(gender.isna().sum())} "
            f"utterances have no gender (e.g. {missing}); give the corpus genders or set its tokens.per_gender: []"
        )
    return {str(g): gender == g for g in sorted(gender.unique())}


def _merge(lld: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    return lld.merge(
        manifest[["utt_id", "label", "speaker", "gender", "split"]], on="utt_id", how="left", validate="1:1"
    )


def fit_tokens(lld: pd.DataFrame, manifest: pd.DataFrame, options: TokenOptions) -> tuple[pd.DataFrame, TokensMeta]:
    """Fit on ``options.fit_split`` and tokenise every utterance of ``lld`` with what was fitted.

    Returns (tokens, meta): tokens has utt_id, one ``<CONCEPT>_score`` and one ``<CONCEPT>``
    column per concept, VOICE_QUALITY and token_string; meta is tokens_meta.json, from which
    apply_tokens alone gives the same tokens.
    """
    usable = manifest.loc[manifest["status"] == "ok", "utt_id"]
    if missing := sorted(set(usable) - set(lld["utt_id"])):
        raise ValueError(
            f"{len(missing)} usable utterances of the manifest have no LLDs (e.g. {missing[:5]}); rerun extract_lld"
        )
    if stray := sorted(set(lld["utt_id"]) - set(usable)):
        raise ValueError(f"{len(stray)} LLD rows are not usable utterances of the manifest (e.g. {stray[:5]})")
    log.info(
        "tokens: %d utterances in the manifest, %d usable, %d left out for failed audio checks (bad_files.csv)",
        len(manifest),
        len(usable),
        len(manifest) - len(usable),
    )
    meta = fit_token_meta(_merge(lld, manifest), options)
    tokens = apply_tokens(lld, manifest, meta)
    meta |= {"n_manifest": len(manifest), "n_tokenised": len(tokens)}
    return tokens, TokensMeta(meta)


def fit_token_meta(frame: pd.DataFrame, options: TokenOptions) -> dict:
    """Everything tokenisation needs, fitted on the fit split of ``frame`` (LLDs + manifest columns)."""
    fit = _fit_rows(frame, options.fit_split)
    if not fit.any():
        raise ValueError(
            f"tokens.fit_split is {options.fit_split!r} but no utterance of that split passed its checks; "
            f"splits present: {sorted(frame['split'].unique())}"
        )
    standardisation = _fit_standardisation(frame, options, fit)
    z = _standardise(frame, standardisation, options.normalise, options.descriptors())
    scores = concept_scores(z, options.concepts)
    voiced = frame["voiced_fraction"] >= options.min_voiced_fraction
    edges = {
        concept.name: {
            group: quantile_edges(scores.loc[rows & fit, concept.name].to_numpy(), len(concept.labels))
            for group, rows in _groups(frame, concept.name in options.per_gender, concept.name).items()
        }
        for concept in options.concepts
    }
    thresholds = {
        group: _fit_vq_thresholds(z[rows & fit & voiced], options)
        for group, rows in _groups(frame, VOICE_QUALITY in options.per_gender, VOICE_QUALITY).items()
    }
    return {
        "fit_split": options.fit_split,
        "normalise": options.normalise,
        "per_gender": list(options.per_gender),
        "n_fit": int(fit.sum()),
        "standardisation": standardisation,
        "concepts": {c.name: {"descriptors": c.descriptors, "labels": list(c.labels)} for c in options.concepts},
        "bin_edges": edges,
        "voice_quality": {
            "thresholds": thresholds,
            "min_voiced_fraction": options.min_voiced_fraction,
            "labels": list(VQ_LABELS),
        },
        "format": {"template": options.template, "separator": options.separator},
        "versions": package_versions(),
    }


def _group_of(frame: pd.DataFrame, fitted_groups: dict, what: str) -> pd.Series:
    """Which fitted group (gender, or all) each utterance's edges or thresholds come from."""
    if list(fitted_groups) == [ALL]:
        return pd.Series(ALL, index=frame.index)
    group = frame["gender"].astype(object)
    if group.isna().any() or not set(group).issubset(fitted_groups):
        found = sorted(map(str, set(group)))
        raise ValueError(
            f"{what} was fitted per gender {sorted(fitted_groups)}; these utterances have genders {found}: "
            "give every utterance a fitted gender, or fit without per_gender"
        )
    return group


def apply_tokens(lld: pd.DataFrame, manifest: pd.DataFrame, meta: TokensMeta | dict) -> pd.DataFrame:
    """Tokenise LLD rows with a fitted tokens_meta.json (also for audio that was not fitted on)."""
    meta = TokensMeta.of(meta).data
    frame = _merge(lld, manifest)
    concepts = tuple(Concept(n, spec["descriptors"], tuple(spec["labels"])) for n, spec in meta["concepts"].items())
    descriptors = sorted(next(iter(meta["standardisation"].values()))["centre"])
    z = _standardise(frame, meta["standardisation"], meta["normalise"], descriptors)
    scores = concept_scores(z, concepts)
    tokens = pd.DataFrame({"utt_id": frame["utt_id"]}, index=frame.index)
    lowest_pitch = pd.Series(False, index=frame.index)
    for concept in concepts:
        fitted = meta["bin_edges"][concept.name]
        group = _group_of(frame, fitted, concept.name)
        index = np.full(len(frame), -1)
        for name, edges in fitted.items():
            rows = (group == name).to_numpy()
            index[rows] = assign_bins(scores.loc[rows, concept.name].to_numpy(), edges)
        tokens[f"{concept.name}_score"] = scores[concept.name]
        tokens[concept.name] = np.array(concept.labels + (UNVOICED,))[index]  # -1 (no voiced frame) -> UNVOICED
        if concept.name == "PITCH":
            lowest_pitch[:] = index == 0
    vq = meta["voice_quality"]
    voiced = (frame["voiced_fraction"] >= vq["min_voiced_fraction"]).to_numpy()
    group = _group_of(frame, vq["thresholds"], VOICE_QUALITY)
    quality = np.full(len(frame), "MODAL", dtype=object)
    for name, thresholds in vq["thresholds"].items():
        rows = (group == name).to_numpy()
        quality[rows] = _voice_quality(
            z[rows], thresholds, voiced=voiced[rows], lowest_pitch=lowest_pitch.to_numpy()[rows]
        )
    tokens[VOICE_QUALITY] = quality
    tokens["token_string"] = TokensMeta(meta).serialise(tokens)
    return tokens.reset_index(drop=True)


def _fit_vq_thresholds(fit: pd.DataFrame, options: TokenOptions) -> dict[str, dict[str, float]]:
    if fit.empty:
        raise ValueError("no voiced utterance in the fit split (of this gender) to fit voice-quality thresholds on")
    quantiles = {"low": options.vq_low_quantile, "median": 0.5, "high": options.vq_high_quantile}
    return {
        column: {name: float(np.nanquantile(fit[column], q)) for name, q in quantiles.items()}
        for column in (JITTER, SHIMMER, HNR, HARMONIC_RELATION)
    }


def _voice_quality(
    frame: pd.DataFrame, t: dict[str, dict[str, float]], *, voiced: np.ndarray, lowest_pitch: np.ndarray
) -> np.ndarray:
    jitter, shimmer = frame[JITTER].to_numpy(), frame[SHIMMER].to_numpy()
    hnr, relation = frame[HNR].to_numpy(), frame[HARMONIC_RELATION].to_numpy()
    conditions = [
        ~voiced,
        (hnr < t[HNR]["low"]) & (relation > t[HARMONIC_RELATION]["median"]),
        (jitter > t[JITTER]["high"]) & (shimmer > t[SHIMMER]["high"]),
        lowest_pitch & (jitter > t[JITTER]["high"]),
        (relation < t[HARMONIC_RELATION]["low"]) & (hnr > t[HNR]["median"]),
    ]
    return np.select(conditions, ["UNVOICED", "BREATHY", "ROUGH", "CREAKY", "PRESSED"], default="MODAL")


def serialise(tokens: pd.DataFrame, names: list[str], *, template: str, separator: str) -> list[str]:
    """``ENERGY=HIGH; PITCH=LOW; ...`` (template and separator from config), in ``names`` order."""
    return [
        separator.join(template.format(concept=name, token=token) for name, token in zip(names, row, strict=True))
        for row in tokens[names].itertuples(index=False)
    ]


def package_versions() -> dict[str, str]:
    versions = {}
    for name in ("cuealign", "opensmile", "numpy", "pandas", "scipy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
