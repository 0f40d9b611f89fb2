import json
from pathlib import Path

import pandas as pd

from cuealign.cache import KeyedJsonCache
from cuealign.corpora import read_corpus
from cuealign.corpora.audio import AudioChecks
from cuealign.corpora.manifest import build_manifest, check_leakage, fold_manifest
from cuealign.runlog import log_to

with log_to(snakemake.log[0]) as log:
    if (session := snakemake.params.fold_session) is not None:
        # a fold of a corpus with folds: the corpus' manifest (audio checked once), split redrawn
        parent = Path(snakemake.input.annotations[0])
        manifest = fold_manifest(pd.read_parquet(parent), session)
        bad_files = pd.read_csv(parent.with_name("bad_files.csv"))
        dropped = json.loads(parent.with_name("dropped_labels.json").read_text())
        log.info("fold: session %d is test, %s", session, manifest["split"].value_counts().to_dict())
    else:
        checks = dict(snakemake.params.checks)
        on_bad_audio = checks.pop("on_bad_audio")
        corpus = read_corpus(snakemake.params.corpus)
        dropped = corpus.dropped  # raw labels the label map dropped on purpose, with counts
        manifest, bad_files = build_manifest(
            corpus,
            AudioChecks(**checks),
            on_bad_audio=on_bad_audio,
            threads=snakemake.threads,
            cache=KeyedJsonCache(snakemake.params.cache_dir, "audio-checks"),  # unchanged files are not re-read
        )
    check_leakage(manifest, **snakemake.params.leakage, evaluated=snakemake.params.evaluated)
    manifest.to_parquet(snakemake.output.manifest, index=False)
    bad_files.to_csv(snakemake.output.bad_files, index=False)
    with open(snakemake.output.dropped, "w") as stream:
        json.dump(dropped, stream, indent=2)
