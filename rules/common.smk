import re

from cuealign.corpora import annotation_files


wildcard_constraints:
    corpus="|".join(re.escape(name) for name in config["corpora"]),


SYNTHETIC_ROOT = "resources/synthetic/{corpus}"


def corpus_spec(corpus):
    """The validated config entry of a corpus; a synthetic corpus' root is where it is generated."""
    spec = dict(config["corpora"][corpus])
    if spec["type"] == "synthetic":
        spec["root"] = SYNTHETIC_ROOT.format(corpus=corpus)
    return spec


def get_build_manifest_annotations(wildcards):
    """The label files a manifest is built from, so that editing one rebuilds it."""
    spec = corpus_spec(wildcards.corpus)
    if spec["type"] == "synthetic":
        return [f"{spec['root']}/ground_truth.csv"]
    return [str(path) for path in annotation_files(spec)]


def get_synthesize_corpus_options(wildcards):
    spec = dict(config["corpora"][wildcards.corpus])
    spec.pop("type")
    return spec


def get_all_targets():
    return expand(
        ["results/{corpus}/manifest.parquet", "results/{corpus}/bad_files.csv"],
        corpus=list(config["corpora"]),
    )
