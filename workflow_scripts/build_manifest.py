from cuealign.audio import AudioChecks
from cuealign.corpora import read_corpus
from cuealign.manifest import build_manifest
from cuealign.runlog import log_to

with log_to(snakemake.log[0]):
    checks = dict(snakemake.params.checks)
    on_bad_audio = checks.pop("on_bad_audio")
    manifest, bad_files = build_manifest(
        read_corpus(snakemake.params.corpus),
        AudioChecks(**checks),
        on_bad_audio=on_bad_audio,
        threads=snakemake.threads,
    )
    manifest.to_parquet(snakemake.output.manifest, index=False)
    bad_files.to_csv(snakemake.output.bad_files, index=False)
