"""What a result was made from: the config's hash, package versions, the model and its revision,
the seeds; stamped on every result table and written out in full as RUN.json.

The hash is of the whole validated config with sorted keys (cuealign.config sorts them), so two
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


def hub_commit(path: str, revision: str | None, *, cache_dir: str | Path | None = None) -> str | None:
    """The commit of a hub model's snapshot in the local cache, as the cache resolves it now
    (`hf download` of a new revision moves refs/main); None for a local folder."""
    if Path(path).is_dir():
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(path, "config.json", revision=revision, cache_dir=cache_dir)
    return Path(found).parent.name if isinstance(found, str) else None


def file_sha256(file: Path, memo=None) -> str:
    """A file's SHA-256, remembered in ``memo`` (a KeyedJsonCache) under its path, size, inode,
    modification and change times: a file rewritten in place or replaced by a copy with the same
    size and modification time (cp -p, rsync -a) has a new change time, so it is read again; an
    unchanged one is not re-read."""
    key = None
    if memo is not None:
        from cuealign.cache import content_key, file_state

        key = content_key(file_state(file))
        if (known := memo.get(key)) is not None:
            return known
    digest = hashlib.sha256()
    with open(file, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    if memo is not None:
        memo.put(key, value)
    return value


def model_identity(path: str, revision: str | None = None, *, memo=None, cache_dir=None) -> str:
    """What a model IS, for the answer cache: a local folder by the content of its files (names
    and SHA-256s, so a bit-identical copy or retrain is the same model and any changed byte is
    another), a hub id by the snapshot commit the local cache resolves it to."""
    folder = Path(path)
    if folder.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(folder).as_posix()}:{file_sha256(file, memo)}\n".encode())
        return f"sha256:{digest.hexdigest()}"
    return f"{path}@{hub_commit(path, revision, cache_dir=cache_dir) or revision or 'unresolved'}"


def _commit(folder: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def record(config: dict, *, corpus: str, model: str, spec: dict, fingerprint: str, workflow_dir: str | Path) -> dict:
    """RUN.json: everything needed to make this corpus x model's results again."""
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
            "dtype": spec["dtype"],
            "mode": spec["mode"],
            # generate mode decodes greedily whatever the checkpoint's generation_config says
            "decoding": _greedy() | {"max_new_tokens": spec.get("max_new_tokens")}
            if spec["mode"] == "generate"
            else None,
        },
        "seeds": seeds(config, corpus, model),
        "versions": versions(),
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
    from cuealign.backends.registry import GREEDY_DECODING

    return dict(GREEDY_DECODING)


def model_fingerprint(path: str, revision: str | None = None) -> str:
    """A cheap sign that a model changed, without reading its weights (what Snakemake compares to
    rerun inference): names, sizes, modification and change times of a local folder's files; for
    a hub id, the snapshot commit the local cache resolves it to now. The answer cache keys on
    ``model_identity`` (content), so a rerun this triggers for an unchanged model hits the cache."""
    folder = Path(path)
    if not folder.is_dir():
        return f"{path}@{hub_commit(path, revision) or revision or 'unresolved'}"
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}\n".encode())
    return digest.hexdigest()[:16]


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
