"""Content-keyed caches of small JSON records, safe against kills and races: one file per key
(KeyedJsonCache), or SQLite files that grow with jobs, not entries (AnswerStore)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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


class AnswerStore:
    """Answers under ``root/namespace/``, in SQLite files: each writer (one inference job: corpus,
    model and shard) appends to its own ``<writer>.sqlite``, and a look-up reads every file there
    (answers are content-keyed, so one job's answers serve any other that asks the same). Files
    grow with jobs, not answers (one JSON file per answer was a million files for a 30,000 x 33
    study).

    The guarantees of KeyedJsonCache, kept: ``put_many`` commits one utterance's answers at once
    (a kill loses at most the utterance in flight; SQLite rolls the unfinished transaction back);
    writers never share a file, and SQLite's locking guards the one that is shared anyway; an entry
    that is not JSON, or a file SQLite cannot read, reads as a miss (computed again). Entries of
    the former one-file-per-answer layout in the same folder are still read."""

    def __init__(self, root: str | Path, namespace: str, writer: str = "answers"):
        self.root = Path(root) / namespace
        self.legacy = KeyedJsonCache(root, namespace)
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in writer)
        self.writer_path = self.root / f"{name}.sqlite"
        self._writer: sqlite3.Connection | None = None
        self._readers: dict[Path, sqlite3.Connection] = {}
        self._listed = False
        self._has_legacy: bool | None = None

    def _write_connection(self) -> sqlite3.Connection:
        if self._writer is None:
            self.root.mkdir(parents=True, exist_ok=True)
            try:
                self._writer = self._open_writer()
            except sqlite3.DatabaseError as exc:  # this job's own file damaged (a copy cut short, a disk error)
                aside = self.writer_path.with_name(f"{self.writer_path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
                self.writer_path.rename(aside)
                log.warning(
                    "answer store %s cannot be read (%s): set aside as %s, its answers are computed again",
                    self.writer_path,
                    exc,
                    aside.name,
                )
                self._writer = self._open_writer()
        return self._writer

    def _open_writer(self) -> sqlite3.Connection:
        existed = self.writer_path.exists()
        connection = sqlite3.connect(self.writer_path, timeout=60)
        try:
            connection.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            connection.commit()
            # a file cut short can open and fail later, mid-job: check every page once (one job's answers)
            if existed and (verdict := connection.execute("PRAGMA quick_check").fetchone()[0]) != "ok":
                raise sqlite3.DatabaseError(verdict)
        except sqlite3.DatabaseError:
            connection.close()
            raise
        return connection

    def _files(self) -> list[tuple[Path, sqlite3.Connection]]:
        """The answer files to look in: this writer's own first, then every other one the folder
        held when first asked (opened once; unreadable ones left out, with a warning)."""
        if not self._listed:
            self._listed = True
            if self.writer_path.exists():  # opened for writing first: SQLite rolls back what a kill left
                self._write_connection()
            for path in sorted(self.root.glob("*.sqlite")) if self.root.is_dir() else []:
                if path == self.writer_path:
                    continue
                try:
                    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
                    connection.execute("SELECT 1 FROM answers LIMIT 1").fetchall()
                except sqlite3.Error as exc:  # damaged, or not an answer file: its answers are computed again
                    log.warning("answer store %s cannot be read (%s): its answers count as missing", path, exc)
                    continue
                self._readers[path] = connection
        own = [(self.writer_path, self._writer)] if self._writer is not None else []
        return own + list(self._readers.items())

    def _lookup(self, keys: list[str], column: str, parse) -> dict[str, Any]:
        """key -> parse(``column``) from the first file that holds the key readably (a file SQLite
        cannot read, or an entry ``parse`` rejects with ValueError, is passed over)."""
        found: dict[str, Any] = {}
        wanted = list(dict.fromkeys(keys))
        for path, connection in self._files():
            missing = [k for k in wanted if k not in found]
            if not missing:
                break
            try:
                for start in range(0, len(missing), 500):  # SQLite's limit on bound parameters
                    chunk = missing[start : start + 500]
                    query = f"SELECT key, {column} FROM answers WHERE key IN ({','.join('?' * len(chunk))})"
                    for key, value in connection.execute(query, chunk):
                        try:
                            found[key] = parse(value)
                        except ValueError:  # a damaged entry: computed again
                            continue
            except sqlite3.Error as exc:
                log.warning("answer store %s cannot be read (%s): its answers count as missing", path, exc)
                self._readers.pop(path, None)
        return found

    def get_many(self, keys: list[str]) -> list[Any | None]:
        """The answer stored under each key, or None (not there, or not readable)."""
        found = self._lookup(keys, "value", json.loads)
        legacy = self._legacy_layout()
        return [found[k] if k in found else (self.legacy.get(k) if legacy else None) for k in keys]

    def get(self, key: str) -> Any | None:
        return self.get_many([key])[0]

    def known(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` have a stored entry (without reading the answers: a shard's million
        keys are asked at once). An entry found here may still read as a miss if it is damaged."""
        found = set(self._lookup(keys, "key", lambda key: True))
        if self._legacy_layout():
            found.update(k for k in dict.fromkeys(keys) if k not in found and self.legacy.path(k).is_file())
        return found

    def _legacy_layout(self) -> bool:
        if self._has_legacy is None:  # entries of the former layout: ab/abcdef....json
            self._has_legacy = self.root.is_dir() and any(p.is_dir() and len(p.name) == 2 for p in self.root.iterdir())
        return self._has_legacy

    def put_many(self, items: list[tuple[str, Any]]) -> None:
        """Store answers in one transaction: all of them, or (killed) none."""
        connection = self._write_connection()
        with connection:
            connection.executemany(
                "INSERT OR REPLACE INTO answers (key, value) VALUES (?, ?)",
                [(key, json.dumps(value)) for key, value in items],
            )

    def put(self, key: str, value: Any) -> None:
        self.put_many([(key, value)])

    def close(self) -> None:
        for connection in [self._writer, *self._readers.values()]:
            if connection is not None:
                connection.close()
        self._writer, self._readers, self._listed = None, {}, False
