"""A content-keyed cache of small JSON records, one file per key, safe against kills and races."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def content_key(record: dict[str, Any]) -> str:
    """SHA-256 of a JSON-serialisable description of what was asked."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def file_state(path: str | Path) -> dict[str, Any] | None:
    """What identifies a file's content without reading it: its resolved path, size, inode,
    modification and change times (a file rewritten in place, or replaced by a copy that keeps its
    size and modification time, as cp -p and rsync -a do, has a new change time). None for a file
    that is not there."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return {
        "path": str(Path(path).resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "inode": stat.st_ino,
    }


class KeyedJsonCache:
    """``root/namespace/ab/abcdef....json``; a missing or corrupt entry reads as None."""

    def __init__(self, root: str | Path, namespace: str):
        self.root = Path(root) / namespace

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Any | None:
        try:
            return json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # missing, unreadable, not UTF-8, not JSON: computed again
            return None

    def put(self, key: str, value: Any) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a kill or a second job writing the same key never leaves half a file.
        handle, temp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(handle, "w") as stream:
            json.dump(value, stream)
        os.replace(temp, target)
