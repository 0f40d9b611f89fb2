import pandas as pd

from cuealign.features import LLDCache, extract_lld_means
from cuealign.runlog import log_to
from cuealign.shards import shard_rows

# extract_lld_means can work in spawned processes (config: lld_pool), which import this script
# again: only the main process runs the job
if __name__ == "__main__":
    with log_to(snakemake.log[0]):
        manifest = pd.read_parquet(snakemake.input.manifest)
        rows = shard_rows(manifest, snakemake.params.shard, snakemake.params.shards)
        usable = rows[rows["status"] == "ok"]
        table = extract_lld_means(
            usable,
            cache=LLDCache(snakemake.params.cache_dir),
            threads=snakemake.threads,
            pool=snakemake.config["lld_pool"],  # read here, not a param: changing it reruns no stage
        )
        table.to_parquet(snakemake.output.lld, index=False)
