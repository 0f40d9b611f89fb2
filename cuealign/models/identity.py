"""What a model is: by content for the answer cache (``model_identity``: a local folder's files'
SHA-256s, a hub id's snapshot commit), and a cheap sign that it changed for Snakemake's rerun
decision (``model_fingerprint``: names, sizes and file times, read at parse time, no weights
read)."""

from __future__ import annotations

import hashlib
from pathlib import Path


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
