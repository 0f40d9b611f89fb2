"""The analysis job of one corpus x model (rule analyse_predictions): its inputs read, every prompt
wording analysed, the provenance and protocol card made, and its 25 outputs written.

Steps: ``read_study`` (manifests, prompt counts, classes), ``cue_associations`` (each fold's token
pull from its own fit split), ``analyse_wordings`` (predictions reduced shard by shard, every
wording analysed alike), ``provenance_record`` and ``write_outputs``. workflow_scripts/
analyse_predictions.py only hands Snakemake's inputs, outputs and params to ``run_analysis``.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cuealign import render
from cuealign.analysis import provenance, tables, variants
from cuealign.analysis.accounting import PromptCounts, accounting, accounting_line
from cuealign.analysis.answers import analyse_answers, read_shard, reduce_shards
from cuealign.analysis.card import card_table, protocol_card
from cuealign.analysis.cue_following import class_given_token, cue_following, pool_cue_following
from cuealign.corpora.manifest import pooled_manifest
from cuealign.models.identity import model_fingerprint
from cuealign.prompts import MAIN_VARIANT, prompt_variants
from cuealign.tokens import TokensMeta

log = logging.getLogger(__name__)

CARD_NOTE = (
    "How this result was made: raw labels to classes (merges, drops with counts), the split protocol with "
    "its speaker counts, what was evaluated, and what the model is known to have been trained on "
    "(models.<name>.known_training_overlap, from its model card)."
)


@dataclass
class Study:
    """What the analysis of one corpus x model reads besides the predictions."""

    corpus: str
    model: str
    folds: list[str]  # [corpus], or the folds a pooled corpus is made of
    manifests: dict[str, pd.DataFrame]  # per fold
    manifest: pd.DataFrame  # pooled over the folds
    prompts: PromptCounts
    labels: list[str]

    @property
    def pooled(self) -> bool:
        return self.folds != [self.corpus]


def read_study(corpus: str, model: str, folds: list[str], manifest_paths, prompt_paths) -> Study:
    manifests = {fold: pd.read_parquet(path) for fold, path in zip(folds, manifest_paths, strict=True)}
    manifest = pooled_manifest(manifests) if folds != [corpus] else manifests[corpus]
    # the prompts counted shard by shard, without their texts
    prompts = PromptCounts.concat(
        [
            PromptCounts.of(read_shard(path, ("utt_id", "condition", "variant", "split", "speaker", "label"), ()))
            for path in prompt_paths
        ]
    )
    labels = sorted(manifest.loc[manifest["status"] == "ok", "label"].unique())
    return Study(corpus, model, folds, manifests, manifest, prompts, labels)


def cue_associations(study: Study, token_paths, meta_paths) -> tuple[dict, dict]:
    """Each fold's P(class | token) from its own fit split, and the utterances it evaluated (its
    test split; None for an unpooled corpus: all of them)."""
    associations, evaluated_in = {}, {}
    for fold, tokens_path, meta_path in zip(study.folds, token_paths, meta_paths, strict=True):
        meta = TokensMeta.read(meta_path)
        tokens = pd.read_parquet(tokens_path).merge(study.manifests[fold][["utt_id", "label", "split"]], on="utt_id")
        fitted = tokens[meta.fit_rows(tokens)]
        associations[fold] = class_given_token(fitted, fitted["label"], meta.names, study.labels)
        # a fold's evaluated utterances are its test split (expand_folds requires evaluate_split: test)
        test = study.manifests[fold]
        evaluated_in[fold] = set(test.loc[test["split"] == "test", "utt_id"]) if study.pooled else None
    return associations, evaluated_in


def analyse_wordings(study: Study, prediction_paths, *, options: dict, prompt_config: dict, associations, evaluated_in):
    """Predictions read shard by shard and reduced to what the statistics need (Answers), every
    wording analysed the same way; cue following per shard, pooled over shards and folds
    (utterance-weighted). Returns (answers, answered, results by wording, cue table)."""
    cue_tables = []
    shift = options["cue_following_min_shift"]

    def follow(main: pd.DataFrame) -> None:
        for fold, association in associations.items():
            mine = main if evaluated_in[fold] is None else main[main["utt_id"].isin(evaluated_in[fold])]
            if len(mine):
                cue_tables.append(cue_following(mine, association, labels=study.labels, min_probability_moved=shift))

    answers, answered = reduce_shards(
        prediction_paths,
        labels=study.labels,
        conditions=study.prompts.conditions,
        wordings=prompt_variants(prompt_config),
        each=follow,
    )
    if study.pooled:
        log.info(
            "pooled analysis of %s over its folds %s (%d utterances)",
            study.corpus,
            study.folds,
            len(answers[MAIN_VARIANT].utt_ids),
        )
    settings = dict(
        labels=study.labels,
        resamples=options["resamples"],
        seed=options["seed"],
        level=options["ci_level"],
        ci_method=options["ci_method"],
        min_speakers=options["min_speakers"],
        families=options["families"],
        target=options["target"],
        cluster=options["cluster"],
        folds=folds_of(study),
    )
    results = {variant: analyse_answers(answers[variant], **settings) for variant in answers}
    return answers, answered, results, pool_cue_following(cue_tables, min_probability_moved=shift)


def folds_of(study: Study) -> pd.Series | None:
    """Each utterance's fold in a corpus pooled over folds (None otherwise): the unit resampled
    whole by default (analysis.cluster), as a fold's speakers share its tokens and fine-tuned model."""
    if not study.pooled:
        return None
    tested = study.manifest[study.manifest["fold"].notna()]
    return tested.set_index("utt_id")["fold"]


def provenance_record(study: Study, *, config: dict, specs: dict, answers, corpus_spec: dict, dropped: dict) -> dict:
    """RUN.json: what the result was made from, with the protocol card."""
    spec = specs[study.folds[0]]
    fingerprints = {fold: model_fingerprint(s["path"]) for fold, s in specs.items()}
    main = answers[MAIN_VARIANT]
    run = provenance.record(
        config,
        corpus=study.corpus,
        model=study.model,
        spec=spec,
        fingerprint="; ".join(f"{fold}: {f}" for fold, f in fingerprints.items())
        if study.pooled
        else fingerprints[study.corpus],
        workflow_dir=".",
        ran_as=main.ran_as,
    )
    if study.pooled:
        run["folds"] = study.folds
    # score mode: the tokens each scored spelling of each label is (from the inference shards)
    recorded = [json.loads(t) for t in sorted(main.label_tokens)]
    if recorded:  # one tokenizer, or one per fold's model
        run["model_source"]["label_tokens"] = recorded[0] if len(recorded) == 1 else recorded
    run["protocol_card"] = protocol_card(
        corpus=study.corpus,
        spec=corpus_spec,
        manifest=study.manifest,
        prompts=study.prompts,
        dropped=dropped,
        model=study.model,
        model_spec=spec,
        folds=study.folds if study.pooled else None,
        from_scratch=study.model in config["finetune"] and not config["finetune"][study.model].get("base"),
    )
    return run


def _say(study: Study, kind: str, text: str) -> None:
    """A line in the log and where the user watches the run."""
    if kind:
        log.warning("%s", text)
    else:
        log.info("%s", text)
    print(f"{study.corpus} / {study.model}: {kind + ': ' if kind else ''}{text}", file=sys.__stderr__)


def _write(path, text: str, mode: str = "w") -> None:
    with open(path, mode) as stream:
        stream.write(text)


def write_outputs(study: Study, outputs, *, run: dict, results: dict, across, cues: pd.DataFrame, counts) -> None:
    """Every table stamped with its provenance, in CSV, JSON, Markdown, LaTeX and HTML."""
    result = results[MAIN_VARIANT]
    title = f"{study.corpus} / {study.model}"
    card = run["protocol_card"]
    _write(outputs.card, json.dumps(card, indent=2))
    _write(outputs.card_html, render.to_html(card_table(card), title=f"{title}: protocol card", note=CARD_NOTE))
    _write(outputs.run, json.dumps(run, indent=2, default=str))
    for name in ("uar", "comparisons", "curve", "confusion", "shifts"):
        provenance.stamp(result[name], run).to_csv(outputs[name], index=False)
    provenance.stamp(cues, run).to_csv(outputs.cue_following, index=False)
    _write(outputs.spearman, json.dumps(result["spearman"], indent=2))
    _write(outputs.intervals, json.dumps(result["intervals"], indent=2))
    readable = {
        "main": tables.main_table(result, model=study.model, corpus=study.corpus),
        "interventions": tables.intervention_table(result),
    }
    if len(results) > 1:  # does the token effect hold in every wording of the prompt?
        readable["main"][f"aligned - none in all {len(results)} wordings"] = variants.robust_cell(across)
    provenance.stamp(readable["main"], run).to_csv(outputs.main_csv, index=False)
    for name, table in readable.items():
        _write(outputs[f"{name}_md"], render.to_markdown(table))
        _write(outputs[f"{name}_tex"], render.to_latex(table))
    # what the report shows, each table readable in the page
    pages = {
        "main_html": (readable["main"], "UAR without and with aligned tokens", tables.MAIN_NOTE),
        "interventions_html": (readable["interventions"], "Every condition", tables.INTERVENTIONS_NOTE),
        "comparisons_html": (tables.comparisons_table(result), "Paired comparisons", tables.COMPARISONS_NOTE),
        "cue_following_html": (tables.cue_following_table(cues), "Cue following", tables.CUE_FOLLOWING_NOTE),
        "accounting_html": (counts, "Every utterance, manifest to table", tables.ACCOUNTING_NOTE),
        "variants_html": (tables.variants_table(across), "Across prompt wordings", variants.NOTE),
    }
    about_intervals = tables.interval_note(result)
    for output, (table, heading, note) in pages.items():
        if output not in ("cue_following_html", "accounting_html", "variants_html"):
            note = f"{note} {about_intervals}"
        _write(outputs[output], render.to_html(table, title=f"{title}: {heading}", note=note))
    for name in ("main", "interventions"):  # the Markdown tables say what their intervals are, too
        _write(outputs[f"{name}_md"], f"\n{about_intervals}\n", mode="a")


def run_analysis(*, corpus: str, model: str, inputs, outputs, params, config: dict) -> None:
    """The whole job; ``inputs``, ``outputs`` and ``params`` are Snakemake's (attribute and item
    access to the paths and values rules/analysis.smk names), ``config`` the workflow's."""
    specs = params.specs  # {corpus or fold: the model as used there}
    study = read_study(corpus, model, list(specs), inputs.manifest, inputs.prompts)
    associations, evaluated_in = cue_associations(study, inputs.tokens, inputs.meta)
    answers, answered, results, cues = analyse_wordings(
        study,
        inputs.predictions,
        options=params.options,
        prompt_config=config["prompt"],
        associations=associations,
        evaluated_in=evaluated_in,
    )
    result = results[MAIN_VARIANT]
    by_variant = variants.per_variant(results)
    across = variants.summary(by_variant)
    by_variant.to_csv(outputs.variants, index=False)
    across.to_csv(outputs.variants_summary, index=False)
    if len(results) > 1:
        log.info("prompt wordings %s; the token effect across them: %s", list(results), variants.robust_cell(across))
    about = result["intervals"]
    _say(study, "", f"every interval and test is {about['about']} (analysis.target: {about['target_requested']})")
    if warning := about["warning"]:
        _say(study, "WARNING", warning)
    counts = accounting(study.manifest, study.prompts, answered, result["uar"])
    counts.to_csv(outputs.accounting, index=False)
    _say(study, "", accounting_line(counts))
    run = provenance_record(
        study,
        config=config,
        specs=specs,
        answers=answers,
        corpus_spec=params.corpus_spec,
        dropped=json.loads(Path(inputs.dropped[0]).read_text()),
    )
    card = run["protocol_card"]
    card["inference"] = f"{about['about']} (analysis.target: {about['target_requested']})"
    if card["overlap_warning"]:
        _say(study, "WARNING", card["overlap_warning"])
    if card["published_note"]:
        _say(study, "NOTE", card["published_note"])
    write_outputs(study, outputs, run=run, results=results, across=across, cues=cues, counts=counts)
