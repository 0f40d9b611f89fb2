import json
import sys

import pandas as pd

from cuealign import provenance, tables
from cuealign.accounting import accounting, accounting_line
from cuealign.analysis import analyse
from cuealign.cue_following import class_given_token, cue_following
from cuealign.runlog import log_to
from cuealign.tokens import TokensMeta

with log_to(snakemake.log[0]) as log:
    corpus, model = snakemake.wildcards.corpus, snakemake.wildcards.model
    manifest = pd.read_parquet(snakemake.input.manifest)
    prompts = pd.concat([pd.read_parquet(path) for path in snakemake.input.prompts])
    predictions = pd.concat([pd.read_parquet(path) for path in snakemake.input.predictions])
    options = snakemake.params.options
    labels = sorted(manifest.loc[manifest["status"] == "ok", "label"].unique())
    meta = TokensMeta.read(snakemake.input.meta)
    tokens = pd.read_parquet(snakemake.input.tokens).merge(manifest[["utt_id", "label", "split"]], on="utt_id")
    fitted = tokens[meta.fit_rows(tokens)]
    association = class_given_token(fitted, fitted["label"], meta.names, labels)
    cues = cue_following(
        predictions, association, labels=labels, min_probability_moved=options["cue_following_min_shift"]
    )
    result = analyse(
        predictions,
        labels=labels,
        expected_conditions=list(dict.fromkeys(prompts["condition"])),
        resamples=options["resamples"],
        seed=options["seed"],
        level=options["ci_level"],
    )
    counts = accounting(manifest, prompts, predictions, result["uar"])
    counts.to_csv(snakemake.output.accounting, index=False)
    line = f"{corpus} / {model}: {accounting_line(counts)}"
    log.info("%s", line)
    print(line, file=sys.__stderr__)  # where the user watches the run, not only in the log

    spec = snakemake.params.spec
    run = provenance.record(
        snakemake.params.config,
        corpus=corpus,
        model=model,
        spec=spec,
        fingerprint=provenance.model_fingerprint(spec["path"]),
        workflow_dir=".",
    )
    with open(snakemake.output.run, "w") as stream:
        json.dump(run, stream, indent=2, default=str)
    # every table says what it was made from
    for name in ("uar", "comparisons", "curve", "confusion", "shifts"):
        provenance.stamp(result[name], run).to_csv(snakemake.output[name], index=False)
    provenance.stamp(cues, run).to_csv(snakemake.output.cue_following, index=False)
    with open(snakemake.output.spearman, "w") as stream:
        json.dump(result["spearman"], stream, indent=2)
    readable = {
        "main": tables.main_table(result, model=model, corpus=corpus),
        "interventions": tables.intervention_table(result),
    }
    provenance.stamp(readable["main"], run).to_csv(snakemake.output.main_csv, index=False)
    for name, table in readable.items():
        with open(snakemake.output[f"{name}_md"], "w") as stream:
            stream.write(tables.to_markdown(table))
        with open(snakemake.output[f"{name}_tex"], "w") as stream:
            stream.write(tables.to_latex(table))
    # what the report shows, each table readable in the page
    pages = {
        "main_html": (readable["main"], "UAR without and with aligned tokens", tables.MAIN_NOTE),
        "interventions_html": (readable["interventions"], "Every condition", tables.INTERVENTIONS_NOTE),
        "comparisons_html": (tables.comparisons_table(result), "Paired comparisons", tables.COMPARISONS_NOTE),
        "cue_following_html": (tables.cue_following_table(cues), "Cue following", tables.CUE_FOLLOWING_NOTE),
        "accounting_html": (counts, "Every utterance, manifest to table", tables.ACCOUNTING_NOTE),
    }
    for output, (table, title, note) in pages.items():
        with open(snakemake.output[output], "w") as stream:
            stream.write(tables.to_html(table, title=f"{corpus} / {model}: {title}", note=note))
