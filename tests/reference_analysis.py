"""The direct analysis, frozen as it was at a0f4f0b (before predictions were reduced to counts):
every statistic computed from the whole predictions table, the within-speaker resamples drawn as
one B x n matrix. tests/unit/test_sufficient_statistics.py checks that cuealign.analysis.answers, which
works from per-shard reductions, gives the same numbers. Do not change it to follow the package:
it is the independent computation the package is compared with."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon

from cuealign.analysis import intervals
from cuealign.analysis.answers import INVALID, NEUTRAL, UNPARSED, check_complete, comparison_plan
from cuealign.analysis.cue_following import COLUMNS as CUE_COLUMNS
from cuealign.analysis.stats import holm, label_distribution, mcnemar_exact, spearman_permutation
from cuealign.interventions import PAPER_FAMILIES, seeds_mean_name
from cuealign.tokens import TOKEN_PREFIX, token_column


def conditional_warning(n_speakers: int, min_speakers: int) -> str:
    """The warning text as it was (the package now words it by analysis.target)."""
    return (
        f"only {n_speakers} test speakers, fewer than analysis.min_speakers = {min_speakers} (below 4, no "
        "speaker-clustered interval both held its coverage and said anything in benchmarks/ci_coverage.py): the "
        f"intervals are within-speaker, conditional on these {n_speakers} speakers, and say nothing about other "
        "speakers; pool more test speakers (IEMOCAP: leave one session out) for intervals about speakers"
    )


def leave_one_out_matrix(totals: np.ndarray) -> np.ndarray:
    """A (G x G*C): the delete-one-speaker UARs as a linear map of the speaker x class recalls,
    written from the definition (speaker g left out: each class' recall is the utterance-weighted
    mean of the other speakers' recalls; UAR their mean over classes)."""
    g, c = totals.shape
    a = np.zeros((g, g, c))
    for left_out in range(g):
        for h in range(g):
            for k in range(c):
                rest = totals[:, k].sum() - totals[left_out, k]
                if h != left_out and rest > 0:
                    a[left_out, h, k] = totals[h, k] / rest / c
    return a.reshape(g, g * c)


def bell_mccaffrey_df(totals: np.ndarray) -> float:
    """Satterthwaite's df of the quadratic form J' P J (J = A y; P centres over speakers), y
    independent with variance 1 / n_hc (Bell and McCaffrey's working model of independent
    utterances), from the dense matrices: tr(PB)^2 / tr(PBPB), B = A Var(y) A'; within [1, G - 1]."""
    a = leave_one_out_matrix(totals)
    b = a @ np.diag(1 / np.maximum(totals.reshape(-1), 1)) @ a.T
    g = totals.shape[0]
    if g < 2:
        return 1.0
    pb = (np.eye(g) - 1 / g) @ b
    return float(np.clip(np.trace(pb) ** 2 / np.trace(pb @ pb), 1, g - 1))


class SpeakerDesign:
    """The resamples every condition of one evaluation shares: ``resamples`` speaker draws (with
    replacement), the G delete-one-speaker jackknife sets and ``resamples`` within-speaker
    utterance draws, all from ``seed``."""

    def __init__(
        self,
        truth: np.ndarray,
        speakers: np.ndarray,
        labels: list[str],
        *,
        resamples: int = 1000,
        seed: int = 0,
        studentize: bool = True,
        within: bool = True,
    ):
        truth = np.asarray(truth)
        self.classes = [label for label in labels if np.any(truth == label)]
        self.onehot = np.stack([truth == label for label in self.classes], axis=1).astype(np.float64)
        self.speakers, self.index = np.unique(np.asarray(speakers), return_inverse=True)
        self.n_speakers = len(self.speakers)
        self.studentize = studentize
        self.totals = self._per_speaker(self.onehot)  # (G, C)
        self.df = bell_mccaffrey_df(self.totals)
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, self.n_speakers, size=(resamples, self.n_speakers))
        self.counts = np.zeros((resamples, self.n_speakers))
        np.add.at(self.counts, (np.arange(resamples)[:, None], draws), 1.0)
        # within speaker: each speaker's utterances drawn with replacement, as many as it has
        # (B x n weights: made only when asked for)
        self.within = None
        if within:
            self.within = np.zeros((resamples, len(truth)))
            for g in range(self.n_speakers):
                members = np.flatnonzero(self.index == g)
                draws = rng.multinomial(members.size, np.full(members.size, 1 / members.size), resamples)
                self.within[:, members] = draws
            self.within_totals = self.within @ self.onehot

    def _per_speaker(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros((self.n_speakers, values.shape[1]))
        np.add.at(out, self.index, values)
        return out

    def replicates(self, correct: np.ndarray) -> intervals.Replicates:
        """A condition's UAR (given its per-utterance correctness) on the data and every resample."""
        hit = np.asarray(correct, dtype=np.float64)[:, None] * self.onehot
        hits = self._per_speaker(hit)  # (G, C)
        all_hits, all_totals = hits.sum(axis=0), self.totals.sum(axis=0)
        boot_hits, boot_totals = self.counts @ hits, self.counts @ self.totals  # (B, C)
        cluster_jackknife = None
        if self.studentize:
            # resample b less one draw of speaker g (NaN where g was not drawn)
            values = intervals._uar(boot_hits[:, None, :] - hits[None], boot_totals[:, None, :] - self.totals[None])
            cluster_jackknife = np.where(self.counts > 0, values, np.nan)
        return intervals.Replicates(
            estimate=float(intervals._uar(all_hits, all_totals)),
            cluster=intervals._uar(boot_hits, boot_totals),
            jackknife=intervals._uar(all_hits - hits, all_totals - self.totals),
            within=None if self.within is None else intervals._uar(self.within @ hit, self.within_totals),
            cluster_jackknife=cluster_jackknife,
            counts=self.counts,
            df=self.df,
        )


def analyse(
    predictions: pd.DataFrame,
    *,
    labels: list[str],
    expected_conditions: list[str],
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    ci_method: str = intervals.DEFAULT_METHOD,
    min_speakers: int = intervals.MIN_SPEAKERS,
    families: dict[str, list[str]] | None = None,
) -> dict[str, pd.DataFrame | dict]:
    """All tables of one corpus x model x split."""
    check_complete(predictions, expected_conditions)
    # the paper's families in the paper's order (a config may come back with its keys sorted)
    families = PAPER_FAMILIES if families is None else families
    wide_pred = predictions.pivot(index="utt_id", columns="condition", values="pred")
    truth_of = predictions.drop_duplicates("utt_id").set_index("utt_id")
    truth = truth_of.loc[wide_pred.index, "label"].to_numpy()
    speakers = truth_of.loc[wide_pred.index, "speaker"].to_numpy()
    conditions = list(expected_conditions)
    correct = {c: wide_pred[c].to_numpy() == truth for c in conditions}
    # with fewer speakers than any clustered interval needs, describe these speakers only
    used = ci_method if len(set(speakers)) >= min_speakers else intervals.CONDITIONAL
    design = SpeakerDesign(
        truth,
        speakers,
        labels,
        resamples=resamples,
        seed=seed,
        studentize=used == "studentized",
        within=used == intervals.CONDITIONAL,
    )
    if used == intervals.CONDITIONAL:
        pass
    replicates = {c: design.replicates(correct[c]) for c in conditions}

    def ci(rep: intervals.Replicates) -> dict:
        low, high = intervals.interval(rep, used, level)
        return dict(
            ci_low=low,
            ci_high=high,
            ci_level=level,
            ci_method=used,
            n_speakers=design.n_speakers,
            cluster="speaker",
            n_clusters=design.n_speakers,
            ci_zero_width=bool(high - low <= 1e-12),
        )

    what_of = predictions.drop_duplicates("condition").set_index("condition")
    changed_share = realised_changes(predictions)
    kinds = what_of.loc[conditions, ["kind", "p", "seed", "concept"]]
    rows = []
    for condition in conditions:
        pred = wide_pred[condition].to_numpy()
        what = kinds.loc[condition]
        rows.append(
            dict(
                condition=condition,
                kind=what["kind"],
                p=what["p"],
                seed=what["seed"],
                concept=what["concept"],
                n_seeds=1,
                n=len(pred),
                uar=replicates[condition].estimate,
                **ci(replicates[condition]),
                accuracy=float(np.mean(pred == truth)),
                unparsed_rate=float(np.mean(pred == UNPARSED)),
                invalid_rate=float(np.mean(pred == INVALID)),
            )
        )
    uar_table = pd.DataFrame(rows).astype({"p": "float64", "seed": "Int64"})
    uar_table["changed_share"] = [changed_share.get(c, np.nan) for c in uar_table["condition"]]
    # Conditions with seeds as their mean (the per-seed rows stay above): one row per shuffle and
    # per corruption level, its CI from the mean of the per-seed resamples.
    seeded = uar_table[uar_table["seed"].notna()]
    members = {}  # tested name -> the conditions it averages
    for (kind, p), group in seeded.groupby(["kind", "p"], dropna=False, sort=False):
        name = seeds_mean_name(kind, p)
        members[name] = list(group["condition"])
        replicates[name] = intervals.mean_of([replicates[c] for c in members[name]])
        correct[name] = np.mean([correct[c] for c in members[name]], axis=0)
        uar_table.loc[len(uar_table)] = dict(
            condition=name,
            kind=kind,
            p=p,
            seed=pd.NA,
            concept=None,
            n_seeds=len(group),
            n=int(group["n"].iloc[0]),
            uar=replicates[name].estimate,
            **ci(replicates[name]),
            accuracy=float(group["accuracy"].mean()),
            unparsed_rate=float(group["unparsed_rate"].mean()),
            invalid_rate=float(group["invalid_rate"].mean()),
            changed_share=float(group["changed_share"].mean()),
        )
    for condition in conditions:
        if pd.isna(kinds.loc[condition, "seed"]):
            members[condition] = [condition]
    same_as_aligned = {name for name, parts in members.items() if all(_asks_as_aligned(predictions, c) for c in parts)}
    pairs = comparison_plan(families, members, same_as_aligned)
    comparisons = []
    for family, a, b in pairs:
        single = len(members[a]) == 1 and len(members[b]) == 1
        difference = replicates[a] - replicates[b]
        row = dict(family=family, comparison=f"{a} - {b}", a=a, b=b, delta_uar=difference.estimate, **ci(difference))
        if single:  # one prediction per utterance on each side: the paper's exact McNemar
            a_only, b_only, pvalue = mcnemar_exact(correct[a].astype(bool), correct[b].astype(bool))
            row |= dict(test="exact McNemar", a_right_b_wrong=a_only, a_wrong_b_right=b_only, p_value=pvalue)
        else:  # every seed counts: speakers' UAR contributions, signs flipped
            pvalue, test = intervals.sign_flip_test(design, correct[a].astype(float) - correct[b].astype(float))
            row |= dict(test=test, a_right_b_wrong=np.nan, a_wrong_b_right=np.nan, p_value=pvalue)
        comparisons.append(row)
    columns = [
        "family", "comparison", "a", "b", "test", "delta_uar", "ci_low", "ci_high", "ci_level", "ci_method",
        "n_speakers", "cluster", "n_clusters", "ci_zero_width", "a_right_b_wrong", "a_wrong_b_right", "p_value",
    ]  # fmt: skip
    comparisons = pd.DataFrame(comparisons, columns=columns)
    comparisons["p_holm"] = np.nan
    for _, group in comparisons.groupby("family", sort=False):
        comparisons.loc[group.index, "p_holm"] = holm(group["p_value"].tolist())

    corrupt = uar_table[uar_table["kind"] == "corrupt"]
    curve = corrupt[corrupt["seed"].isna()].sort_values("p")  # one point per level: the mean over seeds
    rho = rho_p = None
    method = "undefined: fewer than 3 corruption levels, or a flat curve"
    if len(curve) >= 3 and curve["uar"].nunique() > 1:
        rho, rho_p, method = spearman_permutation(curve["p"].to_numpy(), curve["uar"].to_numpy())
    spearman_result = {
        "rho": rho,  # None (JSON null) where undefined
        "p_value": rho_p,
        "points": int(len(curve)),
        "over": "corruption levels, each the mean UAR over its seeds",
        "method": method,
        "audio_only_uar": float(uar_table.loc[uar_table["condition"] == "none", "uar"].iloc[0]),
    }

    confusion = predictions.groupby(["condition", "label", "pred"]).size().rename("count").reset_index()
    confusion["share"] = confusion["count"] / confusion.groupby(["condition", "label"])["count"].transform("sum")
    aligned_pred = wide_pred["aligned"].to_numpy()
    shifts = pd.DataFrame(
        [
            dict(
                condition=c,
                predicted_neutral=float(np.mean(wide_pred[c].to_numpy() == NEUTRAL)),
                neutral_shift=float(np.mean(wide_pred[c].to_numpy() == NEUTRAL) - np.mean(aligned_pred == NEUTRAL)),
                flip_rate_vs_aligned=float(np.mean(wide_pred[c].to_numpy() != aligned_pred)),
            )
            for c in conditions
        ]
    )
    logp_columns = [f"logprob_{label}" for label in labels]
    if predictions[logp_columns].notna().any().any():  # score mode
        aligned_probs = label_probabilities(predictions, "aligned", labels)
        # scipy gives the Jensen-Shannon distance; its square is the divergence (bits). An invalid
        # answer (non-finite scores) has none: the mean is over the utterances that have one.
        distance = {
            c: jensenshannon(label_probabilities(predictions, c, labels), aligned_probs, base=2, axis=1)
            for c in conditions
        }
        shifts["mean_js_vs_aligned"] = [
            float(np.nanmean(distance[c] ** 2)) if np.isfinite(distance[c]).any() else np.nan for c in conditions
        ]
    return {
        "intervals": {
            "method": used,
            "requested": ci_method,
            "n_speakers": design.n_speakers,
            "level": level,
            "resamples": resamples,
            "warning": conditional_warning(design.n_speakers, min_speakers) if used == intervals.CONDITIONAL else None,
        },
        "uar": uar_table,
        "comparisons": comparisons,
        "curve": curve,
        "spearman": spearman_result,
        "confusion": confusion,
        "shifts": shifts,
    }


def _asks_as_aligned(predictions: pd.DataFrame, condition: str) -> bool:
    """Whether ``condition`` showed every utterance aligned's own tokens with the original audio
    (corruption at p = 0 by definition; any condition whose token columns equal aligned's)."""
    rows = predictions[predictions["condition"] == condition]
    kind, p = rows["kind"].iloc[0], rows["p"].iloc[0]
    if kind in ("none", "tokens_only"):
        return False
    if kind == "corrupt" and p == 0:
        return True
    columns = [c for c in predictions.columns if c.startswith(TOKEN_PREFIX)]
    if kind == "aligned" or not columns:
        return kind == "aligned"
    aligned = predictions[predictions["condition"] == "aligned"].set_index("utt_id")[columns]
    shown = rows.set_index("utt_id")[columns]
    return bool((shown == aligned.loc[shown.index]).all().all())


def realised_changes(predictions: pd.DataFrame) -> dict[str, float]:
    """Per corruption condition, the share of its tokens (utterances x concepts) that differ from
    aligned: what corruption at p really did (with the paper's draw, less than p)."""
    columns = [c for c in predictions.columns if c.startswith(TOKEN_PREFIX)]
    if not columns:
        return {}
    aligned = predictions[predictions["condition"] == "aligned"].set_index("utt_id")[columns]
    out = {}
    for condition, rows in predictions[predictions["kind"] == "corrupt"].groupby("condition"):
        shown = rows.set_index("utt_id")[columns]
        out[condition] = float((shown != aligned.loc[shown.index]).to_numpy().mean())
    return out


def label_probabilities(predictions: pd.DataFrame, condition: str, labels: list[str]) -> np.ndarray:
    """Each utterance's distribution over the labels under ``condition`` (utt_id order): the
    label log-probs renormalised over the labels."""
    rows = predictions[predictions["condition"] == condition].sort_values("utt_id")
    return label_distribution(rows[[f"logprob_{label}" for label in labels]])


# cue following as it was (cuealign.analysis.cue_following before it was vectorised over conditions)
def _cue_pull(old: pd.DataFrame, new: pd.DataFrame, association: dict, labels: list[str]) -> np.ndarray:
    """(utterances, labels): the summed change of log P(class | token) over the concepts whose token
    changed (tokens the fit split never showed pull nowhere)."""
    pull = np.zeros((len(old), len(labels)))
    for concept, table in association.items():
        column = token_column(concept)
        if column not in old:
            continue
        table = table.reindex(columns=labels)
        before = table.reindex(old[column].to_numpy()).to_numpy()
        after = table.reindex(new[column].to_numpy()).to_numpy()
        changed = (old[column].to_numpy() != new[column].to_numpy())[:, None]
        pull += np.where(changed & np.isfinite(before) & np.isfinite(after), after - before, 0.0)
    return pull


def cue_following(
    predictions: pd.DataFrame,
    association: dict,
    *,
    labels: list[str],
    min_probability_moved: float = 0.05,
) -> pd.DataFrame:
    """One row per conflict or swap condition (COLUMNS), over the utterances whose tokens changed
    in a way the fit split gives a direction to. Needs label log-probs (score mode); without them
    (generate mode) the table is empty."""
    logp_columns = [f"logprob_{label}" for label in labels]
    if predictions[logp_columns].isna().all().all():  # generate mode: no label scores at all
        return pd.DataFrame(columns=CUE_COLUMNS)
    by_condition = {c: rows.set_index("utt_id").sort_index() for c, rows in predictions.groupby("condition")}
    aligned = by_condition["aligned"]
    kinds = predictions.drop_duplicates("condition").set_index("condition")["kind"]
    rows = []
    for condition in [c for c in kinds.index if kinds[c] in ("conflict", "swap")]:
        changed = by_condition[condition].loc[aligned.index]
        pull = _cue_pull(aligned, changed, association, labels)
        # utterances with a direction, whose answers both have finite scores (not 'invalid')
        finite = np.isfinite(changed[logp_columns].to_numpy(float)).all(axis=1)
        finite &= np.isfinite(aligned[logp_columns].to_numpy(float)).all(axis=1)
        keep = np.any(pull != 0, axis=1) & finite
        pull = pull[keep] - pull[keep].mean(axis=1, keepdims=True)
        after, before = changed.loc[keep, logp_columns].to_numpy(float), aligned.loc[keep, logp_columns].to_numpy(float)
        change = (after - before) - (after - before).mean(axis=1, keepdims=True)
        norms = np.linalg.norm(pull, axis=1) * np.linalg.norm(change, axis=1)
        cosines = np.divide(np.sum(pull * change, axis=1), norms, out=np.zeros(len(pull)), where=norms > 0)
        toward = change[np.arange(len(pull)), np.argmax(pull, axis=1)] > 0
        moved = label_distribution(after) - label_distribution(before)
        probability_moved = np.sum(np.where(pull > 0, moved, 0.0), axis=1)
        n = int(keep.sum())
        alignment = float(np.mean(cosines)) if n else float("nan")
        effect = float(np.mean(probability_moved)) if n else float("nan")
        rows.append(
            dict(
                condition=condition,
                utterances=n,
                cue_alignment=alignment,
                toward_pointed_class=float(np.mean(toward)) if n else float("nan"),
                probability_moved=effect,
                follows=bool(n and alignment > 0 and np.mean(toward) > 0.5 and effect >= min_probability_moved),
            )
        )
    return pd.DataFrame(rows, columns=CUE_COLUMNS)
