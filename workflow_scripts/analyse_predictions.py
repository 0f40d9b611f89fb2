import json

import pandas as pd

from cuealign.analysis import (
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
    cue_following(predictions, prompts, association, labels=labels, **meta["format"]).to_csv(
        snakemake.output.cue_following, index=False
    )
    result = analyse(
        predictions,
        labels=labels,
        expected_conditions=list(dict.fromkeys(prompts["condition"])),
        resamples=options["resamples"],
        seed=options["seed"],
        level=options["ci_level"],
    )
    log.info(
        "%d utterances x %d conditions; %d in the manifest, %d evaluated",
        predictions["utt_id"].nunique(), predictions["condition"].nunique(), len(manifest), prompts["utt_id"].nunique(),
    )
    for name in ("uar", "comparisons", "curve", "confusion", "shifts"):
        result[name].to_csv(snakemake.output[name], index=False)
    with open(snakemake.output.spearman, "w") as stream:
        json.dump(result["spearman"], stream, indent=2)
    tables = {
        "main": main_table(result, model=snakemake.wildcards.model, corpus=snakemake.wildcards.corpus),
        "interventions": intervention_table(result),
    }
    tables["main"].to_csv(snakemake.output.main_csv, index=False)
    for name, table in tables.items():
        with open(snakemake.output[f"{name}_md"], "w") as stream:
            stream.write(to_markdown(table))
        with open(snakemake.output[f"{name}_tex"], "w") as stream:
            stream.write(to_latex(table))
