import json
import sys
from pathlib import Path

import pandas as pd

from cuealign import render
from cuealign.analysis import provenance, tables, variants
from cuealign.analysis.accounting import PromptCounts, accounting, accounting_line
from cuealign.analysis.answers import analyse_answers, read_shard, reduce_shards
from cuealign.analysis.card import card_table, protocol_card
from cuealign.analysis.cue_following import class_given_token, cue_following, pool_cue_following
from cuealign.models.identity import model_fingerprint
from cuealign.prompts import MAIN_VARIANT, prompt_variants
from cuealign.runlog import log_to
from cuealign.tokens import TokensMeta
from cuealign.workflow.folds import pooled_manifest

CARD_NOTE = (
    "How this result was made: raw labels to classes (merges, drops with counts), the split protocol with "
    "its speaker counts, what was evaluated, and what the model is known to have been trained on "
    "(models.<name>.known_training_overlap, from its model card)."
)


with log_to(snakemake.log[0]) as log:
    corpus, model = snakemake.wildcards.corpus, snakemake.wildcards.model
    specs = snakemake.params.specs  # {corpus or fold: the model as used there}
    folds = list(specs)
    pooled = folds != [corpus]
    manifests = {fold: pd.read_parquet(path) for fold, path in zip(folds, snakemake.input.manifest, strict=True)}
    manifest = pooled_manifest(manifests) if pooled else manifests[corpus]
    # the prompts counted shard by shard, without their texts
    prompts = PromptCounts.concat(
        [
            PromptCounts.of(read_shard(path, ("utt_id", "condition", "variant", "split", "speaker", "label"), ()))
            for path in snakemake.input.prompts
        ]
    )
    options = snakemake.params.options
    labels = sorted(manifest.loc[manifest["status"] == "ok", "label"].unique())
    # cue following: each fold's token pull from its own fit split, on its own test utterances
    associations, evaluated_in = {}, {}
    for fold, tokens_path, meta_path in zip(folds, snakemake.input.tokens, snakemake.input.meta, strict=True):
        meta = TokensMeta.read(meta_path)
        tokens = pd.read_parquet(tokens_path).merge(manifests[fold][["utt_id", "label", "split"]], on="utt_id")
        fitted = tokens[meta.fit_rows(tokens)]
        associations[fold] = class_given_token(fitted, fitted["label"], meta.names, labels)
        # a fold's evaluated utterances are its test split (expand_folds requires evaluate_split: test)
        test = manifests[fold]
        evaluated_in[fold] = set(test.loc[test["split"] == "test", "utt_id"]) if pooled else None
    # predictions read shard by shard and reduced to what the statistics need (cuealign.analysis.answers.Answers),
    # every wording on its own; cue following per shard, pooled over shards and folds (utterance-weighted)
    cue_tables = []

    def follow(main):
        for fold, association in associations.items():
            mine = main if evaluated_in[fold] is None else main[main["utt_id"].isin(evaluated_in[fold])]
            if len(mine):
                cue_tables.append(
                    cue_following(
                        mine, association, labels=labels, min_probability_moved=options["cue_following_min_shift"]
                    )
                )

    # the tables are the main wording's; every wording is analysed the same way below (variants.csv)
    answers, answered = reduce_shards(
        snakemake.input.predictions,
        labels=labels,
        conditions=prompts.conditions,
        wordings=prompt_variants(snakemake.params.config["prompt"]),
        each=follow,
    )
    wordings = list(answers)
    cues = pool_cue_following(cue_tables, min_probability_moved=options["cue_following_min_shift"])
    if pooled:
        log.info(
            "pooled analysis of %s over its folds %s (%d utterances)", corpus, folds, len(answers[MAIN_VARIANT].utt_ids)
        )
    settings = dict(
        labels=labels,
        resamples=options["resamples"],
        seed=options["seed"],
        level=options["ci_level"],
        ci_method=options["ci_method"],
        min_speakers=options["min_speakers"],
        families=options["families"],
    )
    results = {variant: analyse_answers(answers[variant], **settings) for variant in wordings}
    result = results[MAIN_VARIANT]
    by_variant = variants.per_variant(results)
    across = variants.summary(by_variant)
    by_variant.to_csv(snakemake.output.variants, index=False)
    across.to_csv(snakemake.output.variants_summary, index=False)
    if len(results) > 1:
        log.info("prompt wordings %s; the token effect across them: %s", list(results), variants.robust_cell(across))
    if warning := result["intervals"]["warning"]:
        print(f"{corpus} / {model}: WARNING: {warning}", file=sys.__stderr__)
    counts = accounting(manifest, prompts, answered, result["uar"])
    counts.to_csv(snakemake.output.accounting, index=False)
    line = f"{corpus} / {model}: {accounting_line(counts)}"
    log.info("%s", line)
    print(line, file=sys.__stderr__)  # where the user watches the run, not only in the log

    spec = specs[folds[0]]
    fingerprints = {fold: model_fingerprint(s["path"]) for fold, s in specs.items()}
    run = provenance.record(
        snakemake.params.config,
        corpus=corpus,
        model=model,
        spec=spec,
        fingerprint="; ".join(f"{fold}: {f}" for fold, f in fingerprints.items()) if pooled else fingerprints[corpus],
        workflow_dir=".",
        ran_as=answers[MAIN_VARIANT].ran_as,
    )
    if pooled:
        run["folds"] = folds
    # score mode: the tokens each scored spelling of each label is (from the inference shards)
    recorded = [json.loads(t) for t in sorted(answers[MAIN_VARIANT].label_tokens)]
    if recorded:  # one tokenizer, or one per fold's model
        run["model_source"]["label_tokens"] = recorded[0] if len(recorded) == 1 else recorded
    card = protocol_card(
        corpus=corpus,
        spec=snakemake.params.corpus_spec,
        manifest=manifest,
        prompts=prompts,
        dropped=json.loads(Path(snakemake.input.dropped[0]).read_text()),
        model=model,
        model_spec=spec,
        folds=folds if pooled else None,
    )
    run["protocol_card"] = card
    with open(snakemake.output.card, "w") as stream:
        json.dump(card, stream, indent=2)
    with open(snakemake.output.card_html, "w") as stream:
        stream.write(render.to_html(card_table(card), title=f"{corpus} / {model}: protocol card", note=CARD_NOTE))
    if card["overlap_warning"]:
        log.warning("%s", card["overlap_warning"])
        print(f"{corpus} / {model}: WARNING: {card['overlap_warning']}", file=sys.__stderr__)
    if card["published_note"]:
        log.warning("%s", card["published_note"])
        print(f"{corpus} / {model}: NOTE: {card['published_note']}", file=sys.__stderr__)
    with open(snakemake.output.run, "w") as stream:
        json.dump(run, stream, indent=2, default=str)
    # every table says what it was made from
    for name in ("uar", "comparisons", "curve", "confusion", "shifts"):
        provenance.stamp(result[name], run).to_csv(snakemake.output[name], index=False)
    provenance.stamp(cues, run).to_csv(snakemake.output.cue_following, index=False)
    with open(snakemake.output.spearman, "w") as stream:
        json.dump(result["spearman"], stream, indent=2)
    with open(snakemake.output.intervals, "w") as stream:
        json.dump(result["intervals"], stream, indent=2)
    readable = {
        "main": tables.main_table(result, model=model, corpus=corpus),
        "interventions": tables.intervention_table(result),
    }
    if len(results) > 1:  # does the token effect hold in every wording of the prompt?
        readable["main"][f"aligned - none in all {len(results)} wordings"] = variants.robust_cell(across)
    provenance.stamp(readable["main"], run).to_csv(snakemake.output.main_csv, index=False)
    for name, table in readable.items():
        with open(snakemake.output[f"{name}_md"], "w") as stream:
            stream.write(render.to_markdown(table))
        with open(snakemake.output[f"{name}_tex"], "w") as stream:
            stream.write(render.to_latex(table))
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
    for output, (table, title, note) in pages.items():
        if output not in ("cue_following_html", "accounting_html", "variants_html"):
            note = f"{note} {about_intervals}"
        with open(snakemake.output[output], "w") as stream:
            stream.write(render.to_html(table, title=f"{corpus} / {model}: {title}", note=note))
    for name in ("main", "interventions"):  # the Markdown tables say what their intervals are, too
        with open(snakemake.output[f"{name}_md"], "a") as stream:
            stream.write(f"\n{about_intervals}\n")
