import json
import sys

import pandas as pd

from cuealign import provenance
from cuealign.analysis import (
    accounting,
    accounting_line,
    analyse,
    class_given_token,
    cue_following,
    intervention_table,
    main_table,
    to_latex,
    to_markdown,
)
from cuealign.runlog import log_to

with log_to(snakemake.log[0]) as log:
    manifest = pd.read_parquet(snakemake.input.manifest)
    prompts = pd.concat([pd.read_parquet(path) for path in snakemake.input.prompts])
    predictions = pd.concat([pd.read_parquet(path) for path in snakemake.input.predictions])
    options = snakemake.params.options
    labels = sorted(manifest.loc[manifest["status"] == "ok", "label"].unique())
    with open(snakemake.input.meta) as stream:
        meta = json.load(stream)
    tokens = pd.read_parquet(snakemake.input.tokens).merge(manifest[["utt_id", "label", "split"]], on="utt_id")
    fitted = tokens if meta["fit_split"] == "all" else tokens[tokens["split"] == meta["fit_split"]]
    concepts = list(meta["concepts"]) + ["VOICE_QUALITY"]
    association = class_given_token(fitted, fitted["label"], concepts, labels)
    cues = cue_following(predictions, prompts, association, labels=labels, **meta["format"])
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
    line = f"{snakemake.wildcards.corpus} / {snakemake.wildcards.model}: {accounting_line(counts)}"
    log.info("%s", line)
    print(line, file=sys.__stderr__)  # where the user watches the run, not only in the log

    spec = snakemake.params.spec
    run = provenance.record(
        snakemake.params.config,
        corpus=snakemake.wildcards.corpus,
        model=snakemake.wildcards.model,
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
    tables = {
        "main": main_table(result, model=snakemake.wildcards.model, corpus=snakemake.wildcards.corpus),
        "interventions": intervention_table(result),
    }
    provenance.stamp(tables["main"], run).to_csv(snakemake.output.main_csv, index=False)
    for name, table in tables.items():
        with open(snakemake.output[f"{name}_md"], "w") as stream:
            stream.write(to_markdown(table))
        with open(snakemake.output[f"{name}_tex"], "w") as stream:
            stream.write(to_latex(table))
