"""What a result was made from: the config's hash, package versions, the model and its revision,
the seeds; stamped on every result table and written out in full as RUN.json.

The hash is of the whole validated config with sorted keys (cuealign.workflow.config sorts them), so two
runs with the same settings have the same hash whatever order their config.yaml lists them in.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pandas as pd

from cuealign.models.identity import hub_commit
from cuealign.models.numerics import numpy_simd_in_use

PACKAGES = (
    "cuealign",
    "numpy",
    "pandas",
    "scipy",
    "statsmodels",
    "opensmile",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "snakemake",
)
COLUMNS = ["config_hash", "versions", "model_revision", "seeds"]


def config_hash(config: dict) -> str:
    """'cfg-' and 12 hex digits of the config's SHA-256 (key order ignored). The prefix keeps it a
    string wherever it is read back: a bare digest of digits only, or digits around one 'e' (1 in
    140 configs), is read by pandas and spreadsheets as a number (659773e33420 became inf)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"cfg-{digest}"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def seeds(config: dict, corpus: str, model: str) -> dict[str, object]:
    """Every seed the result depends on."""
    conditions, found = config["conditions"], {}
    found["shuffle"] = list(conditions["shuffle_seeds"])
    found["corrupt"] = list(conditions["corrupt_seeds"])
    found["bootstrap"] = config["analysis"]["seed"]
    if "seed" in config["corpora"][corpus]:
        found["corpus"] = config["corpora"][corpus]["seed"]
    if model in config["finetune"]:
        found["finetune"] = config["finetune"][model]["seed"]
    return found


def _commit(folder: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def record(
    config: dict,
    *,
    corpus: str,
    model: str,
    spec: dict,
    fingerprint: str,
    workflow_dir: str | Path,
    ran_as: set[tuple[str, str]] = frozenset(),
) -> dict:
    """RUN.json: everything needed to make this corpus x model's results again. ``ran_as``: the
    (loaded dtype, numerics) pairs the inference jobs recorded in their predictions: the dtype is
    what the weights were loaded in (``dtype: auto`` resolved), ``dtype_asked`` the config's."""
    dtypes = sorted({dtype for dtype, _ in ran_as})
    numerics = sorted({way for _, way in ran_as if way})
    return {
        "corpus": corpus,
        "model": model,
        "config_hash": config_hash(config),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_source": {
            "path": spec["path"],
            "revision": spec.get("revision"),
            "snapshot": hub_commit(spec["path"], spec.get("revision")),
            "adapter": spec.get("adapter"),
            "fingerprint": fingerprint,
            "family": spec["family"],
            "dtype": (dtypes[0] if len(dtypes) == 1 else dtypes) if dtypes else spec["dtype"],
            "dtype_asked": spec["dtype"],
            "numerics": (numerics[0] if len(numerics) == 1 else numerics) if numerics else spec.get("numerics"),
            "mode": spec["mode"],
            # generate mode decodes greedily whatever the checkpoint's generation_config says
            "decoding": _greedy()
            | {"max_new_tokens": spec.get("max_new_tokens"), "answer_from": spec.get("answer_from")}
            if spec["mode"] == "generate"
            else None,
        },
        "seeds": seeds(config, corpus, model),
        "versions": versions(),
        # the analysis job's NumPy: 'baseline' in a workflow job (the Snakefile disables its SIMD paths)
        "numpy_simd": numpy_simd_in_use(),
        "workflow_commit": _commit(Path(workflow_dir)),
        "reproduce": (
            "Write the 'config' below to a YAML file keeping its key order (json.dump, or yaml.safe_dump "
            "with sort_keys=False: the order of tokens.concepts is the order of the prompt's cue block), "
            "check out workflow_commit, install the versions listed, then: "
            "snakemake --cores 4 --configfile <that file> "
            f"results/{corpus}/{model}/analysis/table_main.md"
        ),
        "config": config,
    }


def stamp(table: pd.DataFrame, run: dict) -> pd.DataFrame:
    """``table`` with the provenance columns (COLUMNS) appended."""
    if clash := [column for column in COLUMNS if column in table.columns]:
        raise ValueError(f"the table already has provenance column(s) {clash}; stamping would overwrite them")
    source = run["model_source"]
    return table.assign(
        config_hash=run["config_hash"],
        versions="; ".join(f"{name} {version}" for name, version in run["versions"].items()),
        model_revision=source["snapshot"] or source["revision"] or f"local folder {source['fingerprint']}",
        seeds="; ".join(
            f"{name} {','.join(map(str, v)) if isinstance(v, list) else v}" for name, v in run["seeds"].items()
        ),
    )


def _greedy() -> dict:
    from cuealign.models.registry import GREEDY_DECODING

    return dict(GREEDY_DECODING)


def config_page(config: dict) -> str:
    """The validated config as a readable page (YAML in the order the schema sorts it), with its hash."""
    import html

    import yaml

    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Configuration</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:1.2em}pre{font-size:13px;background:#f6f6f6;"
        "padding:1em}</style></head>\n"
        f"<body><h3>Configuration (config_hash {config_hash(config)})</h3>\n"
        f"<pre>{html.escape(text)}</pre>\n</body></html>\n"
    )
