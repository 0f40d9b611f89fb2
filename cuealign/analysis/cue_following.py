"""Does the model follow the tokens? Under conflict and swap conditions, compare how each
utterance's label distribution moved (against aligned) with where the changed tokens point.

Where the tokens point comes from the fit split alone: log P(class | concept = token), add-one
smoothed (:func:`class_given_token`). A changed token pulls toward the classes its new value is
more typical of than its old one. Three numbers per condition:

- ``cue_alignment``: the mean cosine between the per-class change of log-probability and the
  per-class pull (both centred over classes): the direction of the move, -1 to 1;
- ``toward_pointed_class``: the share of utterances whose most-pulled class gained log-probability
  relative to the others (direction only);
- ``probability_moved``: the effect size, the mean over utterances of the probability (renormalised
  over the labels) that moved to the classes the change pulls toward (those with a positive centred
  pull). A model that moves by 0.0004 in the right direction has the right direction and no effect.

``follows`` needs all three: a direction (cue_alignment > 0), most utterances moving toward
the pointed class (toward_pointed_class above one half), and an effect of at least
``min_probability_moved`` (config: analysis.cue_following_min_shift).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cuealign.analysis.stats import label_distribution
from cuealign.tokens import token_column

COLUMNS = [
    "condition",
    "utterances",
    "cue_alignment",
    "toward_pointed_class",
    "probability_moved",
    "follows",
]


def class_given_token(tokens: pd.DataFrame, labels_of: pd.Series, concepts: list[str], labels: list[str]) -> dict:
    """log P(class | concept = value) on the fitted utterances, add-one smoothed."""
    table = {}
    for concept in concepts:
        counts = pd.crosstab(tokens[concept], labels_of).reindex(columns=labels, fill_value=0) + 1
        table[concept] = np.log(counts.div(counts.sum(axis=1), axis=0))
    return table


def cue_following(
    predictions: pd.DataFrame,
    association: dict,
    *,
    labels: list[str],
    min_probability_moved: float = 0.05,
) -> pd.DataFrame:
    """One row per conflict or swap condition (COLUMNS), over the utterances whose tokens changed
    in a way the fit split gives a direction to. Needs label log-probs (score mode); without them
    (generate mode) the table is empty. Arrays throughout: each condition's rows are put in
    aligned's utterance order once, tokens become row numbers of the association tables."""
    logp_columns = [f"logprob_{label}" for label in labels]
    if predictions[logp_columns].isna().all().all():  # generate mode: no label scores at all
        return pd.DataFrame(columns=COLUMNS)
    where = predictions.groupby("condition", sort=False).indices  # condition -> row positions
    kinds = predictions["kind"].to_numpy()
    utt_codes, utterances = pd.factorize(predictions["utt_id"], sort=True)
    aligned_rows = where["aligned"][np.argsort(utt_codes[where["aligned"]], kind="stable")]  # utterance order
    logp = predictions[logp_columns].to_numpy(float)
    # each concept's log P(class | token) as an array, and every row's token as a row of it (-1: unseen)
    tables, token_rows = [], []
    for concept, table in association.items():
        column = token_column(concept)
        if column not in predictions:
            continue
        values = table.reindex(columns=labels).to_numpy(float)
        tables.append(np.vstack([values, np.full((1, len(labels)), np.nan)]))  # row -1: unseen
        codes, shown = pd.factorize(predictions[column])  # a missing token: -1, unseen
        token_rows.append(np.append(pd.Index(table.index).get_indexer(shown), -1)[codes])
    rows = []
    for condition, positions in where.items():
        if kinds[positions[0]] not in ("conflict", "swap"):
            continue
        # this condition's rows in aligned's utterance order (every aligned utterance must be there)
        row_of = np.full(len(utterances), -1)
        row_of[utt_codes[positions]] = positions
        positions = row_of[utt_codes[aligned_rows]]
        if (positions < 0).any():
            raise KeyError(
                f"{condition}: no prediction for {list(utterances[utt_codes[aligned_rows]][positions < 0][:3])}"
            )
        pull = np.zeros((len(positions), len(labels)))
        for values, token_row in zip(tables, token_rows, strict=True):
            old, new = token_row[aligned_rows], token_row[positions]
            before, after = values[old], values[new]
            # a token the fit split never showed (row -1, NaN) pulls nowhere, changed or not
            pull += np.where((old != new)[:, None] & np.isfinite(before) & np.isfinite(after), after - before, 0.0)
        after, before = logp[positions], logp[aligned_rows]
        # utterances with a direction, whose answers both have finite scores (not 'invalid')
        keep = np.any(pull != 0, axis=1) & np.isfinite(after).all(axis=1) & np.isfinite(before).all(axis=1)
        rows.append(_summary(condition, pull[keep], after[keep], before[keep], min_probability_moved))
    return pd.DataFrame(rows, columns=COLUMNS)


def _summary(condition: str, pull, after, before, min_probability_moved: float) -> dict:
    pull = pull - pull.mean(axis=1, keepdims=True)
    change = (after - before) - (after - before).mean(axis=1, keepdims=True)
    norms = np.linalg.norm(pull, axis=1) * np.linalg.norm(change, axis=1)
    cosines = np.divide(np.sum(pull * change, axis=1), norms, out=np.zeros(len(pull)), where=norms > 0)
    toward = change[np.arange(len(pull)), np.argmax(pull, axis=1)] > 0
    moved = label_distribution(after) - label_distribution(before)
    probability_moved = np.sum(np.where(pull > 0, moved, 0.0), axis=1)
    n = len(pull)
    alignment = float(np.mean(cosines)) if n else float("nan")
    effect = float(np.mean(probability_moved)) if n else float("nan")
    return dict(
        condition=condition,
        utterances=n,
        cue_alignment=alignment,
        toward_pointed_class=float(np.mean(toward)) if n else float("nan"),
        probability_moved=effect,
        follows=_follows(n, alignment, float(np.mean(toward)) if n else 0.0, effect, min_probability_moved),
    )


def _follows(n: int, alignment: float, toward: float, effect: float, min_probability_moved: float) -> bool:
    """A follower: the right direction on average, in most utterances, and a real effect."""
    return bool(n and alignment > 0 and toward > 0.5 and effect >= min_probability_moved)


def pool_cue_following(tables: list[pd.DataFrame], *, min_probability_moved: float = 0.05) -> pd.DataFrame:
    """Per-fold cue following (each fold's token pull from its own fit split) as one table: every
    column is a mean over utterances, so the pooled value is the utterance-weighted mean of the
    folds' (exactly what one table over all utterances would give), and follows is decided again."""
    tables = [t for t in tables if len(t)]
    if not tables:
        return pd.DataFrame(columns=COLUMNS)
    both = pd.concat(tables, ignore_index=True)
    rows = []
    for condition, group in both.groupby("condition", sort=False):
        n = int(group["utterances"].sum())
        weights = group["utterances"].to_numpy(float)

        def mean(column, group=group, weights=weights, n=n):
            values = group[column].to_numpy(float)
            return float(np.sum(np.where(weights > 0, values, 0.0) * weights) / n) if n else float("nan")

        alignment, effect, toward = mean("cue_alignment"), mean("probability_moved"), mean("toward_pointed_class")
        rows.append(
            dict(
                condition=condition,
                utterances=n,
                cue_alignment=alignment,
                toward_pointed_class=toward,
                probability_moved=effect,
                follows=_follows(n, alignment, toward, effect, min_probability_moved),
            )
        )
    return pd.DataFrame(rows, columns=COLUMNS)
