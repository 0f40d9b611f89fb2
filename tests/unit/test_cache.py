"""The per-answer cache under two writers at once and under a reader: never half a file."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cuealign.cache import KeyedJsonCache, content_key

# A writer process: puts its own large record under the same keys, over and over.
WRITER = """
import sys
from cuealign.cache import KeyedJsonCache
cache = KeyedJsonCache(sys.argv[1], "answers")
value = {"writer": sys.argv[2], "logprobs": [float(sys.argv[2])] * 20000}
for _ in range(int(sys.argv[3])):
    for key in sys.argv[4:]:
        cache.put(key, value)
"""


def test_two_writers_of_the_same_keys_never_leave_a_torn_entry(tmp_path):
    keys = [content_key({"utt": i}) for i in range(4)]
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(n), "40", *keys]) for n in (1, 2)]
    cache = KeyedJsonCache(tmp_path, "answers")
    reads = 0
    while any(w.poll() is None for w in writers):
        for key in keys:
            path = cache.path(key)
            if path.exists():
                value = json.loads(path.read_text())  # a torn file would not parse
                assert value["writer"] in ("1", "2") and value["logprobs"] == [float(value["writer"])] * 20000
                reads += 1
    assert [w.returncode for w in writers] == [0, 0]
    assert reads > 0
    assert all(cache.get(key)["writer"] in ("1", "2") for key in keys)
    assert not list((tmp_path / "answers").rglob("*.tmp"))  # every temporary file was renamed into place


def test_a_corrupt_entry_reads_as_missing_and_is_recomputed(tmp_path):
    cache = KeyedJsonCache(tmp_path, "answers")
    key = content_key({"utt": 1})
    cache.path(key).parent.mkdir(parents=True)
    cache.path(key).write_text('{"pred": "ang')  # e.g. a file from a copy cut short
    assert cache.get(key) is None
    cache.put(key, {"pred": "angry"})
    assert cache.get(key) == {"pred": "angry"}


def test_garbage_bytes_in_an_entry_are_a_miss(tmp_path):
    from cuealign.cache import KeyedJsonCache

    cache = KeyedJsonCache(tmp_path, "x")
    cache.put("ab12", {"a": 1})
    cache.path("ab12").write_bytes(b"\xff\xfe\x00garbage")
    assert cache.get("ab12") is None


# --- the answer store: SQLite files, one per writer ---------------------------------------------

STORE_WRITER = """
import sys
from cuealign.cache import AnswerStore
store = AnswerStore(sys.argv[1], "answers", writer=sys.argv[2])
value = {"writer": sys.argv[3], "logprobs": [float(sys.argv[3])] * 2000}
for _ in range(int(sys.argv[4])):
    store.put_many([(key, value) for key in sys.argv[5:]])
"""


def test_answer_store_writers_sharing_a_file_or_not_never_leave_a_torn_entry(tmp_path):
    from cuealign.cache import AnswerStore

    keys = [content_key({"utt": i}) for i in range(20)]
    # two processes on one file (SQLite's locking), one on its own
    writers = [
        subprocess.Popen([sys.executable, "-c", STORE_WRITER, str(tmp_path), name, str(n), "30", *keys])
        for name, n in (("shard-0", 1), ("shard-0", 2), ("shard-1", 3))
    ]
    reads = 0
    while any(w.poll() is None for w in writers):
        store = AnswerStore(tmp_path, "answers", writer="reader")
        for value in store.get_many(keys):
            if value is not None:
                assert value["writer"] in ("1", "2", "3") and value["logprobs"] == [float(value["writer"])] * 2000
                reads += 1
        store.close()
    assert [w.returncode for w in writers] == [0, 0, 0]
    assert reads > 0
    files = sorted(p.name for p in (tmp_path / "answers").iterdir())
    assert files == ["shard-0.sqlite", "shard-1.sqlite"]  # files grow with writers, not answers
    again = AnswerStore(tmp_path, "answers", writer="shard-0")
    assert all(v["writer"] in ("1", "2") for v in again.get_many(keys))  # its own file first


KILLED = """
import os, signal, sys
from cuealign.cache import AnswerStore
store = AnswerStore(sys.argv[1], "answers", writer="job")
store.put_many([("done", {"pred": "sad"})])
connection = store._write_connection()
connection.execute("BEGIN")
connection.executemany("INSERT INTO answers VALUES (?, ?)", [(f"half{i}", "{}") for i in range(1000)])
os.kill(os.getpid(), signal.SIGKILL)  # mid-utterance: its answers were never committed
"""


def test_a_killed_writer_loses_only_the_utterance_in_flight_and_resumes(tmp_path):
    from cuealign.cache import AnswerStore

    assert subprocess.run([sys.executable, "-c", KILLED, str(tmp_path)], check=False).returncode == -9
    other = AnswerStore(tmp_path, "answers", writer="other")
    resumed = AnswerStore(tmp_path, "answers", writer="job")
    assert resumed.get_many(["done", "half0"]) == [{"pred": "sad"}, None]
    resumed.put_many([("half0", {"pred": "angry"})])
    assert resumed.get("half0") == {"pred": "angry"}
    assert other.get_many(["done", "half1"]) == [{"pred": "sad"}, None]  # never half an utterance
    assert AnswerStore(tmp_path, "answers", writer="later").get_many(["done", "half0", "half1"]) == [
        {"pred": "sad"},
        {"pred": "angry"},
        None,
    ]


def test_answer_store_reads_damage_as_misses_and_the_former_layout_as_answers(tmp_path, caplog):
    import sqlite3

    from cuealign.cache import AnswerStore

    store = AnswerStore(tmp_path, "answers", writer="a")
    store.put_many([("good", {"pred": "sad"}), ("bad", {"pred": "angry"})])
    store.close()
    with sqlite3.connect(tmp_path / "answers/a.sqlite") as connection:
        connection.execute("UPDATE answers SET value = ? WHERE key = 'bad'", ('{"pred": "ang',))
    (tmp_path / "answers/b.sqlite").write_bytes(b"not a database at all" * 100)  # e.g. a copy cut short
    KeyedJsonCache(tmp_path, "answers").put("legacy", {"pred": "happy"})  # one JSON file per answer, as before
    reader = AnswerStore(tmp_path, "answers", writer="c")
    assert reader.get_many(["good", "bad", "legacy", "none"]) == [{"pred": "sad"}, None, {"pred": "happy"}, None]
    # which keys are there (a shard's keys at once): a damaged entry is there, and reads as a miss
    assert reader.known(["good", "bad", "legacy", "none"]) == {"good", "bad", "legacy"}
    assert "answers/b.sqlite cannot be read" in caplog.text


@pytest.mark.parametrize("damage", ["random bytes", "cut in half"])
def test_a_jobs_own_damaged_answer_file_is_set_aside_and_its_answers_computed_again(tmp_path, caplog, damage):
    """A job whose own answer file is damaged used to fail on every rerun with 'file is not a
    database', naming no file. Now it is renamed aside (named in the log) and the job goes on."""
    from cuealign.cache import AnswerStore

    store = AnswerStore(tmp_path, "answers", writer="demo-m-0")
    store.put_many([(f"k{i}", {"pred": "sad", "raw_output": "x" * 200}) for i in range(2000)])
    store.close()
    own = tmp_path / "answers/demo-m-0.sqlite"
    data = own.read_bytes()
    own.write_bytes(
        bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))
        if damage == "random bytes"
        else data[: len(data) // 2]
    )
    again = AnswerStore(tmp_path, "answers", writer="demo-m-0")
    with caplog.at_level("WARNING"):
        found = again.get_many(["k0", "k1999"])
        again.put_many([("k0", {"pred": "angry"})])
    assert again.get_many(["k0"]) == [{"pred": "angry"}] and found[1] is None
    aside = list((tmp_path / "answers").glob("demo-m-0.sqlite.damaged-*"))
    assert len(aside) == 1 and aside[0].name in caplog.text and "demo-m-0.sqlite cannot be read" in caplog.text
    # the next job's look-up reads only answer files (*.sqlite), not what was set aside
    assert AnswerStore(tmp_path, "answers", writer="other").get_many(["k0"]) == [{"pred": "angry"}]
