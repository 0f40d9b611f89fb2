"""From predictions to the study's statistics: UAR per condition with speaker-clustered CIs,
paired comparisons with exact McNemar and Holm, the corruption curve with Spearman, confusion
and shifts. Conditions are read from their columns (kind, p, seed, concept), never from names.

The predictions are read one shard at a time and reduced to ``Answers`` (each utterance's class,
speaker and a 2-byte answer code per condition, plus per-condition sums of what needs scores or
tokens); every table is computed from those: the clustered intervals from per-speaker x class
hits, McNemar from discordant counts, confusion and shifts from counts. Memory grows with
utterances x conditions at 2 bytes, not with the predictions table; the numbers are the direct
analysis' (tests/unit/test_sufficient_statistics.py).

Formatting is cuealign.analysis.tables, cue following cuealign.analysis.cue_following, the utterance accounting
cuealign.analysis.accounting."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy.spatial.distance import jensenshannon

from cuealign.analysis import intervals
from cuealign.analysis.stats import holm, label_distribution, mcnemar_exact, spearman_permutation
from cuealign.interventions import EXPLORATORY, PAPER_FAMILIES, parse_comparison, seeds_mean_name
from cuealign.prompts import MAIN_VARIANT
from cuealign.tokens import TOKEN_PREFIX

log = logging.getLogger(__name__)

NEUTRAL = "neutral"
UNPARSED = "unparsed"
INVALID = "invalid"  # non-finite label scores (cuealign.models.inference)


def _cells(predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Each row's utterance and condition as codes: (utterance codes, sorted utterances, condition
    codes, conditions in order of appearance, rows per utterance x condition (conditions, utterances))."""
    utt_codes, utt_ids = pd.factorize(predictions["utt_id"], sort=True)
    condition_codes, present = pd.factorize(predictions["condition"])
    n = len(utt_ids)
    counts = np.bincount(condition_codes * n + utt_codes, minlength=len(present) * n).reshape(len(present), n)
    return utt_codes, np.asarray(utt_ids, dtype=object), condition_codes, [str(c) for c in present], counts


def check_complete(predictions: pd.DataFrame, expected_conditions: list[str], cells=None) -> None:
    """Every utterance under every expected condition, exactly once; else an error naming the gap."""
    _, utt_ids, _, present, counts = cells or _cells(predictions)
    if missing := [c for c in expected_conditions if c not in present]:
        raise ValueError(f"conditions missing from the predictions: {missing}; rerun run_inference for them")
    if (counts > 1).any():
        condition, utterance = np.nonzero(counts > 1)
        examples = [[utt_ids[u], present[c]] for c, u in zip(condition[:3], utterance[:3], strict=True)]
        raise ValueError(
            f"{int((counts[counts > 1] - 1).sum())} utterance x condition rows appear twice, e.g. {examples}"
        )
    per_condition = (counts > 0).sum(axis=1)
    utterances = len(utt_ids)
    if short := {c: int(n) for c, n in zip(present, per_condition, strict=True) if n != utterances}:
        raise ValueError(f"conditions without a prediction for every one of the {utterances} utterances: {short}")


@dataclass
class Answers:
    """One wording's predictions reduced to what every statistic needs (``reduce_predictions``):
    per utterance its class, speaker and answer under each condition (a code, 2 bytes), and per
    condition the sums that need the answers' scores or tokens (Jensen-Shannon against aligned,
    tokens changed), the count of rows. Shards reduce on their own and concatenate
    (``Answers.concat``): the analysis never holds the predictions table."""

    conditions: list[str]
    what: pd.DataFrame  # index condition: kind, p, seed, concept
    utt_ids: np.ndarray  # (n,)
    truth: np.ndarray  # (n,) class labels
    speakers: np.ndarray  # (n,)
    answers: np.ndarray  # (n, K) codes into vocabulary
    vocabulary: list[str]
    js_sum: np.ndarray  # (K,) sum of the squared JS distance to aligned over finite utterances
    js_n: np.ndarray  # (K,) how many utterances have one
    score_mode: bool  # any label scores at all (else generate mode: no JS)
    changed: np.ndarray  # (K,) token cells that differ from aligned's (corrupt conditions)
    cells: np.ndarray  # (K,) token cells compared
    as_aligned: np.ndarray  # (K,) bool: the condition showed every utterance aligned's own tokens
    label_tokens: set[str]
    # how the model ran, as the inference jobs recorded it: the dtype its weights were loaded in
    # (dtype: auto resolved) and the numerics (portable or native); empty for older predictions
    ran_as: set[tuple[str, str]] = dataclasses.field(default_factory=set)

    @classmethod
    def concat(cls, parts: list[Answers]) -> Answers:
        """Shards' reductions as one (utterances sorted; a shard's utterances are its own)."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        if any(p.conditions != first.conditions for p in parts):
            raise ValueError("shards were reduced with different conditions")
        vocabulary = sorted(set().union(*(p.vocabulary for p in parts)))
        answers = np.concatenate(
            [np.array([vocabulary.index(v) for v in p.vocabulary], dtype=np.int16)[p.answers] for p in parts]
        )
        utt_ids = np.concatenate([p.utt_ids for p in parts])
        if len(set(utt_ids)) != len(utt_ids):
            raise ValueError("an utterance appears in two shards' predictions")
        order = np.argsort(utt_ids, kind="stable")
        return cls(
            conditions=first.conditions,
            what=first.what,
            utt_ids=utt_ids[order],
            truth=np.concatenate([p.truth for p in parts])[order],
            speakers=np.concatenate([p.speakers for p in parts])[order],
            answers=answers[order],
            vocabulary=vocabulary,
            js_sum=sum(p.js_sum for p in parts),
            js_n=sum(p.js_n for p in parts),
            score_mode=any(p.score_mode for p in parts),
            changed=sum(p.changed for p in parts),
            cells=sum(p.cells for p in parts),
            as_aligned=np.logical_and.reduce([p.as_aligned for p in parts]),
            label_tokens=set().union(*(p.label_tokens for p in parts)),
            ran_as=set().union(*(p.ran_as for p in parts)),
        )

    def pred(self, condition: str) -> np.ndarray:
        """The answers under ``condition`` as labels (utterance order)."""
        return np.asarray(self.vocabulary, dtype=object)[self.answers[:, self.conditions.index(condition)]]

    def is_answer(self, condition: str, answer: str) -> np.ndarray:
        if answer not in self.vocabulary:
            return np.zeros(len(self.utt_ids), dtype=bool)
        return self.answers[:, self.conditions.index(condition)] == self.vocabulary.index(answer)

    def correct(self, condition: str) -> np.ndarray:
        return self.pred(condition) == self.truth


def reduce_predictions(predictions: pd.DataFrame, *, labels: list[str], conditions: list[str]) -> Answers:
    """One shard's (or a whole wording's) predictions as ``Answers``: every utterance under every
    condition, checked (check_complete), then kept as codes."""
    cells = _cells(predictions)
    check_complete(predictions, conditions, cells)
    row_utt, utt_ids, condition_codes, present, _ = cells
    row_condition = np.asarray(pd.Index(conditions).get_indexer(present))[condition_codes]
    if (row_condition < 0).any():  # conditions no longer asked for (a shard made before a config change)
        keep = row_condition >= 0
        predictions, row_utt, row_condition = predictions[keep], row_utt[keep], row_condition[keep]
    n, k = len(utt_ids), len(conditions)
    first = np.unique(row_utt, return_index=True)[1]
    answer_codes, vocabulary = pd.factorize(predictions["pred"], sort=True)
    if (answer_codes < 0).any():
        raise ValueError(f"predictions without an answer (pred is empty): {utt_ids[row_utt[answer_codes < 0]][:3]}")
    answers = np.empty((n, k), dtype=np.int16)
    answers[row_utt, row_condition] = answer_codes
    what = (
        predictions.drop_duplicates("condition")
        .set_index("condition")
        .loc[conditions, ["kind", "p", "seed", "concept"]]
    )
    aligned = conditions.index("aligned")
    # label scores against aligned's, utterance by utterance (score mode)
    logp_columns = [f"logprob_{label}" for label in labels]
    score_mode = bool(predictions[logp_columns].notna().any().any())
    js_sum, js_n = np.zeros(k), np.zeros(k, dtype=np.int64)
    if score_mode:
        probs = np.full((n, k, len(labels)), np.nan)
        probs[row_utt, row_condition] = label_distribution(predictions[logp_columns])
        # scipy gives the Jensen-Shannon distance; its square is the divergence (bits). An invalid
        # answer (non-finite scores) has none: the mean is over the utterances that have one.
        for j in range(k):
            distance = jensenshannon(probs[:, j], probs[:, aligned], base=2, axis=1)
            finite = np.isfinite(distance)
            js_sum[j], js_n[j] = float(np.sum(distance[finite] ** 2)), int(finite.sum())
    # tokens against aligned's: what corruption changed, and which conditions asked what aligned asks
    token_columns = [c for c in predictions.columns if c.startswith(TOKEN_PREFIX)]
    differs = np.zeros((n, k), dtype=np.int64)
    for column in token_columns:
        codes = np.full((n, k), -1, dtype=np.int64)
        codes[row_utt, row_condition] = pd.factorize(predictions[column])[0]  # missing: -1
        # a missing token differs from anything, itself included (as pandas' != has it)
        differs += (codes != codes[:, [aligned]]) | (codes < 0) | (codes[:, [aligned]] < 0)
    kinds = what["kind"].to_numpy()
    corrupt = kinds == "corrupt"
    changed = np.where(corrupt, differs.sum(axis=0), 0).astype(float)
    cells = np.where(corrupt, n * len(token_columns), 0).astype(float)
    as_aligned = np.array(
        [
            False
            if kind in ("none", "tokens_only")
            else True
            if kind == "aligned" or (kind == "corrupt" and p == 0)
            else bool(token_columns) and not differs[:, j].any()
            for j, (kind, p) in enumerate(zip(kinds, what["p"], strict=True))
        ]
    )
    recorded = predictions["label_tokens"].dropna().unique() if "label_tokens" in predictions else []
    return Answers(
        conditions=list(conditions),
        what=what,
        utt_ids=utt_ids,
        truth=predictions["label"].to_numpy(dtype=object)[first],
        speakers=predictions["speaker"].to_numpy(dtype=object)[first],
        answers=answers,
        vocabulary=[str(v) for v in vocabulary],
        js_sum=js_sum,
        js_n=js_n,
        score_mode=score_mode,
        changed=changed,
        cells=cells,
        as_aligned=as_aligned,
        label_tokens={str(t) for t in recorded if t},
        ran_as=_ran_as(predictions),
    )


def _ran_as(predictions: pd.DataFrame) -> set[tuple[str, str]]:
    """(loaded dtype, numerics) pairs of these predictions, where the shard recorded them."""
    if "dtype" not in predictions:
        return set()
    numerics = predictions["numerics"] if "numerics" in predictions else pd.Series("", index=predictions.index)
    pairs = pd.DataFrame({"dtype": predictions["dtype"].astype(str), "numerics": numerics.fillna("").astype(str)})
    return set(pairs.drop_duplicates().itertuples(index=False, name=None))


# what the analysis reads of a predictions shard (not the raw outputs, model and timing columns)
READ_COLUMNS = (
    "utt_id", "condition", "kind", "p", "seed", "concept", "variant", "label", "speaker", "pred", "label_tokens",
    "dtype", "numerics",
)  # fmt: skip


def read_shard(
    path: str | Path, columns=READ_COLUMNS, prefixes: tuple[str, ...] = (TOKEN_PREFIX, "logprob_")
) -> pd.DataFrame:
    """The named columns of one parquet shard (and those starting with ``prefixes``) that it has."""
    names = pq.ParquetFile(path).schema_arrow.names
    return pd.read_parquet(path, columns=[c for c in names if c in columns or c.startswith(prefixes)])


def reduce_shards(
    paths: list[str],
    *,
    labels: list[str],
    conditions: list[str],
    wordings: list[str],
    each: Callable[[pd.DataFrame], None] | None = None,
) -> tuple[dict[str, Answers], pd.Series]:
    """Every wording's ``Answers`` from prediction shards read one at a time (memory bounded by a
    shard), and the predictions counted by answer (every wording). ``each`` is called with each
    shard's main-wording rows (cue following works per shard)."""
    parts, answered = {}, Counter()
    for number, path in enumerate(paths, start=1):
        shard = read_shard(path)
        if "variant" not in shard.columns:  # predictions made before prompt variants existed
            shard = shard.assign(variant=MAIN_VARIANT)
        answered.update(shard["pred"].value_counts().to_dict())
        for variant, rows in shard.groupby("variant", sort=False):
            if variant in wordings:
                parts.setdefault(variant, []).append(reduce_predictions(rows, labels=labels, conditions=conditions))
        if each is not None:
            each(shard[shard["variant"] == MAIN_VARIANT])
        log.info("predictions shard %d of %d read and reduced (%d rows)", number, len(paths), len(shard))
        del shard
    answers = {variant: Answers.concat(parts.pop(variant)) for variant in wordings if variant in parts}
    return answers, pd.Series(answered, dtype="int64")


def analyse(predictions: pd.DataFrame, *, labels: list[str], expected_conditions: list[str], **options) -> dict:
    """All tables of one corpus x model x split from its predictions (``analyse_answers``)."""
    answers = reduce_predictions(predictions, labels=labels, conditions=list(expected_conditions))
    return analyse_answers(answers, labels=labels, **options)


def analyse_answers(
    answers: Answers,
    *,
    labels: list[str],
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    ci_method: str = intervals.DEFAULT_METHOD,
    min_speakers: int = intervals.MIN_SPEAKERS,
    families: dict[str, list[str]] | None = None,
    target: str = "auto",
    folds: dict | pd.Series | None = None,
    cluster: str = "auto",
) -> dict[str, pd.DataFrame | dict]:
    """All tables of one corpus x model x split from its reduced predictions. The clustered
    intervals need only per-speaker x class hits; McNemar the discordant counts; the confusion
    and shift tables counts per condition.

    ``target`` (analysis.target) is what every interval and test is about: ``speakers`` (the
    population of speakers: speaker-clustered intervals by ``ci_method``, sign-flip tests over
    speakers for every comparison), ``utterances`` (these speakers' utterances: within-speaker
    intervals, exact McNemar where each side is one condition, a sign-flip test over utterances
    pooled over seeds otherwise) or ``auto``: speakers from ``min_speakers`` test speakers up.

    ``folds`` ({utt_id: fold}, for a corpus pooled over folds) and ``cluster`` (analysis.cluster):
    about speakers, what one resample draws: each ``speaker``, or each ``fold`` with all its
    speakers (they share the fold's tokens and fine-tuned model, so their errors move together);
    ``auto``: fold where ``folds`` is given. Then G counts folds (min_speakers, the sign-flip
    tests' smallest p, the t degrees of freedom)."""
    # the families in the order given (cuealign.workflow.config keeps it); the paper's by default
    families = PAPER_FAMILIES if families is None else families
    units = Units.of(answers.speakers, _per_utterance(folds, answers.utt_ids), cluster)
    chosen = resolve_target(target, units, min_speakers)
    if chosen == UTTERANCES:  # conditional on the speakers: resampled within each speaker
        units = Units.of(answers.speakers, None, SPEAKER)
    used = ci_method if chosen == SPEAKERS else intervals.CONDITIONAL
    design = intervals.SpeakerDesign(
        answers.truth,
        units.labels,
        labels,
        resamples=resamples,
        seed=seed,
        studentize=used == "studentized",
        within=used == intervals.CONDITIONAL,
    )
    warning = target_warning(chosen, target, units, min_speakers, level)
    log.info("%s", target_line(chosen, target, units, min_speakers))
    if warning:
        log.warning("%s", warning)
    study = _Resampled(answers, design, used, level, chosen, units)
    uar_table, members = study.uar_table()
    as_aligned = dict(zip(answers.conditions, answers.as_aligned, strict=True))
    same_as_aligned = {name for name, parts in members.items() if all(as_aligned[c] for c in parts)}
    comparisons = study.comparisons(comparison_plan(families, members, same_as_aligned), members)
    curve, spearman_result = _corruption_curve(uar_table)
    return {
        "intervals": {
            "method": used,
            "requested": ci_method,
            "target": chosen,
            "target_requested": target,
            "about": about_words(chosen, units),
            "n_speakers": units.n_speakers,
            "cluster": units.unit,
            "n_clusters": units.n,
            "df": design.df if used == "jackknife-t" else None,
            "level": level,
            "resamples": resamples,
            "warning": warning,
        },
        "uar": uar_table,
        "comparisons": comparisons,
        "curve": curve,
        "spearman": spearman_result,
        "confusion": confusion_table(answers),
        "shifts": shifts_table(answers),
    }


SPEAKERS, UTTERANCES = "speakers", "utterances"
SPEAKER, FOLD = "speaker", "fold"


def _per_utterance(folds: dict | pd.Series | None, utt_ids: np.ndarray) -> np.ndarray | None:
    if folds is None:
        return None
    found = pd.Series(folds, dtype=object).reindex(utt_ids)
    if found.isna().any():
        missing = list(found.index[found.isna()][:3])
        raise ValueError(f"{int(found.isna().sum())} evaluated utterances have no fold, e.g. {missing}")
    return found.to_numpy(dtype=object)


@dataclass(frozen=True)
class Units:
    """What one speaker-clustered resample draws (analysis.cluster): each speaker, or each fold of a
    corpus pooled over folds, with every speaker in it."""

    unit: str  # SPEAKER or FOLD
    labels: np.ndarray  # (n,) each utterance's speaker or fold
    n: int  # how many units (G)
    n_speakers: int

    @classmethod
    def of(cls, speakers: np.ndarray, folds: np.ndarray | None, cluster: str) -> Units:
        if cluster not in ("auto", SPEAKER, FOLD):
            raise ValueError(f"analysis.cluster must be auto, speaker or fold, not {cluster!r}")
        if cluster == FOLD and folds is None:
            raise ValueError(
                "analysis.cluster: fold needs a corpus pooled over folds (corpora.<name>.folds); this one is "
                "not: set analysis.cluster: auto or speaker"
            )
        unit = FOLD if folds is not None and cluster != SPEAKER else SPEAKER
        labels = np.asarray(folds if unit == FOLD else speakers, dtype=object)
        return cls(unit, labels, len(set(labels)), len(set(speakers)))

    @property
    def plural(self) -> str:
        return f"{self.unit}s"


def resolve_target(target: str, units: Units, min_speakers: int) -> str:
    """analysis.target as applied: auto is speakers from min_speakers test speakers (folds, when
    folds are what is resampled) up."""
    if target == "auto":
        return SPEAKERS if units.n >= min_speakers else UTTERANCES
    if target not in (SPEAKERS, UTTERANCES):
        raise ValueError(f"analysis.target must be auto, speakers or utterances, not {target!r}")
    if target == SPEAKERS and units.n < 2:
        raise ValueError(
            f"analysis.target: speakers with {units.n} test {units.unit}: nothing can be said about speakers from "
            "one; set analysis.target: utterances (or auto)"
        )
    return target


def about_words(target: str, units: Units) -> str:
    """What every number of an analysis is about, as a reader says it."""
    if target == SPEAKERS and units.unit == FOLD:
        return (
            f"about speakers like these, the population the {units.n_speakers} test speakers come from, resampled "
            f"fold by fold ({units.n} folds: a fold's speakers share its tokens and model)"
        )
    if target == SPEAKERS:
        return f"about speakers like these, the population the {units.n_speakers} test speakers come from"
    return f"about these {units.n_speakers} speakers' utterances, conditional on them, not about other speakers"


def target_line(chosen: str, requested: str, units: Units, min_speakers: int) -> str:
    how = (
        f"analysis.target: auto, {units.n} test {units.plural} {'>=' if chosen == SPEAKERS else '<'} "
        f"analysis.min_speakers {min_speakers}"
        if requested == "auto"
        else f"analysis.target: {requested}"
    )
    return f"every interval and test is {about_words(chosen, units)} ({how})"


def target_warning(chosen: str, requested: str, units: Units, min_speakers: int, level: float) -> str | None:
    """What a reader must be told about the target at hand."""
    if chosen == UTTERANCES:
        return (
            f"the intervals and tests are about these {units.n_speakers} speakers' utterances: they say nothing "
            f"about other speakers; for claims about speakers pool at least {min_speakers} test speakers (IEMOCAP: "
            "leave one session out) and set analysis.target: speakers or auto"
        )
    notes = []
    if units.n < min_speakers:
        notes.append(
            f"analysis.target: speakers with {units.n} test {units.plural}, fewer than analysis.min_speakers = "
            f"{min_speakers}: below 4 no speaker-clustered interval held its coverage (benchmarks/ci_coverage.py)"
        )
    smallest = intervals.smallest_sign_flip_p(units.n)
    if smallest > 1 - level:
        why = (
            " (the folds are resampled whole: a fold's speakers share its tokens and model)"
            if units.unit == FOLD
            else ""
        )
        notes.append(
            f"with {units.n} test {units.plural} a sign-flip test over {units.plural} can give no p below "
            f"{smallest:.3g}, so no comparison is testable about speakers at {1 - level:.2g} (reported as not "
            f"testable){why}; analysis.target: utterances tests these speakers' utterances"
        )
    return "; ".join(notes) or None


class _Resampled:
    """One analysis' speaker resamples: every condition's (and seed mean's) replicates and
    per-utterance correctness, and the interval each gets."""

    def __init__(
        self, answers: Answers, design: intervals.SpeakerDesign, used: str, level: float, target: str, units: Units
    ):
        self.answers, self.design, self.used, self.level, self.target = answers, design, used, level, target
        self.units = units
        conditions = answers.conditions
        self.correct = {c: answers.correct(c) for c in conditions}
        every = design.replicates_many(np.stack([self.correct[c] for c in conditions], axis=1))
        self.replicates = dict(zip(conditions, every, strict=True))

    def ci(self, rep: intervals.Replicates) -> dict:
        low, high = intervals.interval(rep, self.used, self.level)
        return dict(
            ci_low=low,
            ci_high=high,
            ci_level=self.level,
            ci_method=self.used,
            n_speakers=self.units.n_speakers,
            cluster=self.units.unit,
            n_clusters=self.units.n,
            ci_zero_width=bool(high - low <= 1e-12),
        )

    def uar_table(self) -> tuple[pd.DataFrame, dict[str, list[str]]]:
        """One row per condition, then one per seeded condition's mean over its seeds (its CI
        from the mean of the per-seed resamples); and the conditions each tested name averages."""
        answers, conditions = self.answers, self.answers.conditions
        kinds = answers.what
        rows = []
        for condition in conditions:
            what = kinds.loc[condition]
            rows.append(
                dict(
                    condition=condition,
                    kind=what["kind"],
                    p=what["p"],
                    seed=what["seed"],
                    concept=what["concept"],
                    n_seeds=1,
                    n=len(answers.truth),
                    uar=self.replicates[condition].estimate,
                    **self.ci(self.replicates[condition]),
                    accuracy=float(np.mean(self.correct[condition])),
                    unparsed_rate=float(np.mean(answers.is_answer(condition, UNPARSED))),
                    invalid_rate=float(np.mean(answers.is_answer(condition, INVALID))),
                )
            )
        table = pd.DataFrame(rows).astype({"p": "float64", "seed": "Int64"})
        # per corruption condition, the share of its tokens (utterances x concepts) that differ from
        # aligned: what corruption at p really did (with the paper's draw, less than p)
        changed_share = {
            c: float(answers.changed[j] / answers.cells[j]) for j, c in enumerate(conditions) if answers.cells[j] > 0
        }
        table["changed_share"] = [changed_share.get(c, np.nan) for c in table["condition"]]
        members = self._seed_means(table)
        for condition in conditions:
            if pd.isna(kinds.loc[condition, "seed"]):
                members[condition] = [condition]
        if (table["ci_zero_width"]).any():
            log.warning(
                "zero-width intervals (every resample gives the same UAR; the data cannot show uncertainty): %s",
                ", ".join(table.loc[table["ci_zero_width"], "condition"]),
            )
        return table, members

    def _seed_means(self, table: pd.DataFrame) -> dict[str, list[str]]:
        """Rows appended to ``table`` for each shuffle and corruption level as the mean over its
        seeds (the per-seed rows stay above); the conditions each averages."""
        members = {}
        seeded = table[table["seed"].notna()]
        for (kind, p), group in seeded.groupby(["kind", "p"], dropna=False, sort=False):
            name = seeds_mean_name(kind, p)
            members[name] = list(group["condition"])
            self.replicates[name] = intervals.mean_of([self.replicates[c] for c in members[name]])
            self.correct[name] = np.mean([self.correct[c] for c in members[name]], axis=0)
            table.loc[len(table)] = dict(
                condition=name,
                kind=kind,
                p=p,
                seed=pd.NA,
                concept=None,
                n_seeds=len(group),
                n=int(group["n"].iloc[0]),
                uar=self.replicates[name].estimate,
                **self.ci(self.replicates[name]),
                accuracy=float(group["accuracy"].mean()),
                unparsed_rate=float(group["unparsed_rate"].mean()),
                invalid_rate=float(group["invalid_rate"].mean()),
                changed_share=float(group["changed_share"].mean()),
            )
        return members

    def comparisons(self, pairs: list[tuple[str, str, str]], members: dict[str, list[str]]) -> pd.DataFrame:
        """Every planned test, about the analysis' target (analyse_answers); Holm within each family
        over the testable comparisons."""
        rows = []
        for family, a, b in pairs:
            difference = self.replicates[a] - self.replicates[b]
            row = dict(
                family=family, comparison=f"{a} - {b}", a=a, b=b, delta_uar=difference.estimate, **self.ci(difference)
            )
            rows.append(row | self._test(a, b, single=len(members[a]) == 1 and len(members[b]) == 1))
        columns = [
            "family", "comparison", "a", "b", "test", "delta_uar", "ci_low", "ci_high", "ci_level", "ci_method",
            "n_speakers", "cluster", "n_clusters", "ci_zero_width", "a_right_b_wrong", "a_wrong_b_right", "p_value",
        ]  # fmt: skip
        comparisons = pd.DataFrame(rows, columns=columns)
        comparisons["p_holm"] = np.nan
        for _, group in comparisons.groupby("family", sort=False):
            testable = group[group["p_value"].notna()]
            comparisons.loc[testable.index, "p_holm"] = holm(testable["p_value"].tolist())
        return comparisons

    def _test(self, a: str, b: str, *, single: bool) -> dict:
        """One comparison's test: about utterances, the paper's exact McNemar where each side is one
        prediction per utterance, else a sign-flip test over utterances with every seed counted;
        about speakers, a sign-flip test over speakers (not testable where it cannot reach the level)."""
        counts = dict(a_right_b_wrong=np.nan, a_wrong_b_right=np.nan)
        change = self.correct[a].astype(float) - self.correct[b].astype(float)
        if self.target == UTTERANCES and single:
            a_only, b_only, pvalue = mcnemar_exact(self.correct[a].astype(bool), self.correct[b].astype(bool))
            return dict(test="exact McNemar", a_right_b_wrong=a_only, a_wrong_b_right=b_only, p_value=pvalue)
        if self.target == UTTERANCES:
            pvalue, test = intervals.utterance_sign_flip_test(self.design, change)
            return counts | dict(test=test, p_value=pvalue)
        units = self.units
        smallest = intervals.smallest_sign_flip_p(units.n)
        if smallest > 1 - self.level:
            test = f"not testable about speakers: {units.n} {units.plural} give no p below {smallest:.3g}"
            return counts | dict(test=test, p_value=np.nan)
        pvalue, test = intervals.sign_flip_test(self.design, change)
        return counts | dict(test=f"{test} over {units.plural}", p_value=pvalue)


def _corruption_curve(uar_table: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """One point per corruption level (the mean over its seeds) and Spearman's rho over them."""
    corrupt = uar_table[uar_table["kind"] == "corrupt"]
    curve = corrupt[corrupt["seed"].isna()].sort_values("p")
    rho = rho_p = None
    method = "undefined: fewer than 3 corruption levels, or a flat curve"
    if len(curve) >= 3 and curve["uar"].nunique() > 1:
        rho, rho_p, method = spearman_permutation(curve["p"].to_numpy(), curve["uar"].to_numpy())
    return curve, {
        "rho": rho,  # None (JSON null) where undefined
        "p_value": rho_p,
        "points": int(len(curve)),
        "over": "corruption levels, each the mean UAR over its seeds",
        "method": method,
        "audio_only_uar": float(uar_table.loc[uar_table["condition"] == "none", "uar"].iloc[0]),
    }


def shifts_table(answers: Answers) -> pd.DataFrame:
    """Per condition: the share predicted neutral and its shift from aligned, the flip rate
    against aligned, and (score mode) the mean Jensen-Shannon divergence from aligned."""
    conditions = answers.conditions
    aligned_pred = answers.pred("aligned")
    shifts = pd.DataFrame(
        [
            dict(
                condition=c,
                predicted_neutral=float(np.mean(answers.is_answer(c, NEUTRAL))),
                neutral_shift=float(np.mean(answers.is_answer(c, NEUTRAL)) - np.mean(aligned_pred == NEUTRAL)),
                flip_rate_vs_aligned=float(np.mean(answers.pred(c) != aligned_pred)),
            )
            for c in conditions
        ]
    )
    if answers.score_mode:
        shifts["mean_js_vs_aligned"] = [
            float(answers.js_sum[j] / answers.js_n[j]) if answers.js_n[j] else np.nan for j in range(len(conditions))
        ]
    return shifts


def confusion_table(answers: Answers) -> pd.DataFrame:
    """(condition, label, pred, count, share): every pair that occurs, in sorted order; share of the
    class's utterances."""
    v = len(answers.vocabulary)
    classes = sorted(set(answers.truth))
    truth_code = pd.Index(classes).get_indexer(answers.truth)
    parts = []
    for j, condition in enumerate(answers.conditions):
        counts = np.bincount(truth_code * v + answers.answers[:, j], minlength=len(classes) * v)
        label, pred = np.divmod(np.flatnonzero(counts), v)
        parts.append(
            pd.DataFrame(
                {
                    "condition": condition,
                    "label": np.asarray(classes, dtype=object)[label],
                    "pred": np.asarray(answers.vocabulary, dtype=object)[pred],
                    "count": counts[counts > 0].astype(np.int64),
                }
            )
        )
    confusion = pd.concat(parts, ignore_index=True).sort_values(["condition", "label", "pred"], ignore_index=True)
    confusion["share"] = confusion["count"] / confusion.groupby(["condition", "label"])["count"].transform("sum")
    return confusion


def comparison_plan(
    families: dict[str, list[str]], members: dict[str, list[str]], same_as_aligned: set[str]
) -> list[tuple[str, str, str]]:
    """(family, a, b) for every test: the declared families' comparisons whose conditions ran (a
    declared comparison with a condition that did not run is left out, logged), then an
    exploratory family of aligned - X and X - none for every other condition or seed mean X.
    A condition that asks what aligned asks (corruption at p = 0) is aligned: comparing it with
    aligned would compare a condition with itself, and with none would repeat aligned - none.
    No pair is tested twice."""
    plan, seen = [], set()

    def same(x):
        return "aligned" if x in same_as_aligned else x

    for family, texts in families.items():
        for text in texts:
            a, b = parse_comparison(text)
            if missing := [x for x in (a, b) if x not in members]:
                log.info("comparison %r (family %r) left out: %s did not run", text, family, missing[0])
                continue
            if same(a) == same(b):
                raise ValueError(f"analysis.families: {text!r} compares a condition with itself")
            if {(same(a), same(b)), (same(b), same(a))} & seen:
                raise ValueError(f"analysis.families: {text!r} repeats a test already in a family")
            seen.add((same(a), same(b)))
            plan.append((family, a, b))
    for x in members:
        if same(x) in ("none", "aligned"):
            continue
        for a, b in (("aligned", x), (x, "none")):
            if not {(a, b), (b, a)} & seen:
                seen.add((a, b))
                plan.append((EXPLORATORY, a, b))
    return plan
