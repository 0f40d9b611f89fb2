"""The per-answer cache under two writers at once and under a reader: never half a file."""

import json
import subprocess
import sys

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
