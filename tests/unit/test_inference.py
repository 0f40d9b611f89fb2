"""The inference runner: every row accounted for, resumable, incremental, parsing documented."""

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from cuealign.cache import AnswerStore
from cuealign.corpora.audio import load_model_audio
from cuealign.interventions import Condition
from cuealign.models.inference import INVALID, UNPARSED, parse_answer, predict_shard
from cuealign.models.loader import load_backend
from cuealign.workflow.config import model_entry

LABELS = ["angry", "happy", "neutral", "sad"]
PREFIX = "What emotion does the speaker express? Answer with one word from: angry, happy, neutral, sad."


@pytest.fixture(scope="module")
def backend(tiny_qwen2_audio):
    return load_backend(model_entry(tiny_qwen2_audio, dtype="float32"))


@pytest.fixture
def prompts(tmp_path):
    rows = []
    for u in range(4):
        path = tmp_path / f"u{u}.wav"
        sf.write(path, 0.1 * np.random.default_rng(u).standard_normal(16000), 16000)
        for condition, suffix in [
            ("none", ""),
            ("aligned", f" Acoustic cues measured from the audio: ENERGY=HIGH{u}."),
            ("conflict", " Acoustic cues measured from the audio: ENERGY=LOW."),
        ]:
            rows.append(
                dict(
                    utt_id=f"u{u}",
                    **Condition(condition).as_row(),
                    audio="original",
                    prefix_text=PREFIX,
                    suffix_text=suffix,
                    label=LABELS[u],
                    split="test",
                    speaker=f"s{u % 2}",
                    path=str(path),
                    sha256=f"hash{u}",
                )
            )
    return pd.DataFrame(rows)


def spec(path, **changes):
    return model_entry(path, **{"dtype": "float32", "batch_size": 8, "max_new_tokens": 4} | changes)


def answer(prompts, backend, model_path, cache):
    """predict_shard as the runner calls it (score mode), quietly."""
    return predict_shard(prompts, backend, labels=LABELS, spec=spec(model_path), cache=cache, progress=False)


class Counting:
    """Wraps a backend: counts utterances scored, and can die after some (a simulated kill)."""

    def __init__(self, backend, die_after=None):
        self.backend, self.family, self.calls, self.die_after = backend, backend.family, 0, die_after

    def __getattr__(self, name):  # everything else (window, rate, label tokens) is the backend's
        return getattr(self.backend, name)

    def score(self, *args, **kwargs):
        if self.die_after is not None and self.calls >= self.die_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        return self.backend.score(*args, **kwargs)

    def generate(self, *args, **kwargs):
        self.calls += 1
        return self.backend.generate(*args, **kwargs)


def test_score_mode_gives_a_row_per_utterance_and_condition(backend, prompts, tmp_path, tiny_qwen2_audio):
    table = answer(prompts, backend, tiny_qwen2_audio, AnswerStore(tmp_path, "p"))
    assert len(table) == len(prompts)
    assert table[["utt_id", "condition"]].equals(prompts[["utt_id", "condition"]])
    logprobs = table[[f"logprob_{label}" for label in LABELS]].to_numpy()
    assert np.all(logprobs < 0)
    assert (table["pred"] == np.array(LABELS)[logprobs.argmax(1)]).all()
    assert set(table["backend"]) == {"transformers:qwen2-audio"} and set(table["mode"]) == {"score"}


def _generated(prompts, backend, model, store):
    """The shard's table in generate mode."""
    spec_ = spec(model, mode="generate")
    return predict_shard(prompts, backend, labels=LABELS, spec=spec_, cache=store, progress=False)


def test_generate_mode_keeps_unparsed_answers(backend, prompts, tmp_path, tiny_qwen2_audio):
    table = _generated(prompts, backend, tiny_qwen2_audio, AnswerStore(tmp_path, "p"))
    assert len(table) == len(prompts) and table["raw_output"].map(type).eq(str).all()
    parsed = table["raw_output"].map(lambda t: parse_answer(t, LABELS))
    assert (table["pred"] == parsed).all()
    assert table["pred"].isin(LABELS + [UNPARSED]).all()
    assert table[[f"logprob_{label}" for label in LABELS]].isna().all().all()


def test_stored_generated_answers_are_read_with_todays_parser(backend, prompts, tmp_path, tiny_qwen2_audio):
    """The store keeps what the model said; what it means is parsed when the table is made, so a
    better parser (or a stored answer parsed by an older one) never leaves a stale label."""
    store = AnswerStore(tmp_path, "p")
    first = _generated(prompts, backend, tiny_qwen2_audio, store)
    # rewrite every stored answer as an older parser would have left it: a wrong label for its text
    store.close()
    with sqlite3.connect(store.writer_path) as db:
        for key, value in db.execute("SELECT key, value FROM answers").fetchall():
            entry = json.loads(value) | {"raw_output": "neither happy nor sad; neutral", "pred": "happy"}
            db.execute("UPDATE answers SET value = ? WHERE key = ?", (json.dumps(entry), key))
    counting = Counting(backend)
    again = _generated(prompts, counting, tiny_qwen2_audio, AnswerStore(tmp_path, "p"))
    assert counting.calls == 0 and len(again) == len(first)  # every answer from the store
    assert (again["pred"] == "neutral").all()

    # answer_from is how an answer is read, not what is asked: stored answers serve either reading
    with sqlite3.connect(store.writer_path) as db:
        for key, value in db.execute("SELECT key, value FROM answers").fetchall():
            entry = json.loads(value) | {"raw_output": THOUGHT, "pred": "neutral"}
            db.execute("UPDATE answers SET value = ? WHERE key = ?", (json.dumps(entry), key))
    for answer_from, label in (("first", "angry"), ("last", "sad")):
        counting = Counting(backend)
        spec_ = spec(tiny_qwen2_audio, mode="generate", answer_from=answer_from)
        read = predict_shard(
            prompts, counting, labels=LABELS, spec=spec_, cache=AnswerStore(tmp_path, "p"), progress=False
        )
        assert counting.calls == 0 and (read["pred"] == label).all()


@pytest.mark.parametrize("mode", ["score", "generate"])
def test_every_family_answers_every_row(tiny_alm, prompts, tmp_path, mode):
    name, path = tiny_alm
    backend = load_backend(model_entry(path, name, dtype="float32"))
    table = predict_shard(
        prompts,
        backend,
        labels=LABELS,
        spec=spec(path, family=name, mode=mode),
        cache=AnswerStore(tmp_path, "p"),
        progress=False,
    )
    assert table[["utt_id", "condition"]].equals(prompts[["utt_id", "condition"]])
    assert set(table["backend"]) == {f"transformers:{name}"} and table["pred"].isin(LABELS + [UNPARSED]).all()
    if mode == "score":  # and the answers are the backend's own scores for each row
        first = prompts[prompts["utt_id"] == "u0"]
        audio, _ = load_model_audio(first["path"].iloc[0], rate=16000, window_s=30, silence=False)
        expected = backend.score(audio, PREFIX, list(first["suffix_text"]), LABELS)
        got = table[table["utt_id"] == "u0"][[f"logprob_{label}" for label in LABELS]].to_numpy()
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_killed_shard_resumes_to_the_same_table(backend, prompts, tmp_path, tiny_qwen2_audio):
    cache = AnswerStore(tmp_path / "resume", "p")
    dying = Counting(backend, die_after=2)
    with pytest.raises(KeyboardInterrupt):
        predict_shard(prompts, dying, labels=LABELS, spec=spec(tiny_qwen2_audio), cache=cache, progress=False)
    resumed = Counting(backend)
    table = predict_shard(prompts, resumed, labels=LABELS, spec=spec(tiny_qwen2_audio), cache=cache, progress=False)
    assert resumed.calls == 2  # the two utterances finished before the kill were not redone
    fresh = answer(prompts, backend, tiny_qwen2_audio, AnswerStore(tmp_path / "fresh", "p"))
    columns = ["utt_id", "condition", "pred"] + [f"logprob_{label}" for label in LABELS]
    pd.testing.assert_frame_equal(table[columns], fresh[columns], atol=1e-6)
    assert not table.duplicated(["utt_id", "condition"]).any()


def test_a_new_condition_computes_only_its_rows(backend, prompts, tmp_path, tiny_qwen2_audio):
    cache = AnswerStore(tmp_path, "p")
    predict_shard(prompts, backend, labels=LABELS, spec=spec(tiny_qwen2_audio), cache=cache, progress=False)
    extra = prompts[prompts["condition"] == "none"].assign(
        **Condition("shuffle", seed=0).as_row(), suffix_text="\nAcoustic cues: X."
    )
    counting = Counting(backend)
    table = predict_shard(
        pd.concat([prompts, extra]), counting, labels=LABELS, spec=spec(tiny_qwen2_audio), cache=cache, progress=False
    )
    assert counting.calls == 4 and len(table) == len(prompts) + len(extra)
    # a change in what is asked (another mode) is not served from the score cache
    other = Counting(backend)
    predict_shard(
        prompts, other, labels=LABELS, spec=spec(tiny_qwen2_audio, mode="generate"), cache=cache, progress=False
    )
    assert other.calls == 4


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Sad.", "sad"),
        ("The speaker sounds angry", "angry"),
        ("ANGER", "angry"),
        ("happiness!", "happy"),
        ("calm and neutral", "neutral"),
        ("I cannot tell", UNPARSED),
        ("", UNPARSED),
        ("sadly", UNPARSED),
        ("Very happy.", "happy"),
        ("not angry, just frustrated", UNPARSED),  # a negated label is not the answer
        ("It is not angry but sad", "sad"),
        ("no anger here, rather neutral", "neutral"),
        # negation and hedges, clause by clause
        ("neither happy nor sad; neutral", "neutral"),
        ("Neither happy nor sad. The speaker is neutral.", "neutral"),
        ("not happy, not sad: angry", "angry"),
        ("I don't think it's angry; it sounds sad", "sad"),
        ("The speaker isn't sad but happy", "happy"),
        ("It's not really angry", UNPARSED),
        ("never happy", UNPARSED),
        ("No. Angry.", "angry"),
        ("no, angry", "angry"),
        ("angry, not sad", "angry"),
        ("sad (not angry)", "sad"),
        ("There is no doubt about it, the speaker is angry", "angry"),
    ],
)
def test_parse_answer(text, expected):
    assert parse_answer(text, LABELS) == expected


THOUGHT = (
    "The pitch is high and the energy is very high, which could suggest an angry or a happy speaker; "
    "the voice is breathy and falls at the end, so it is not happy. The speaker sounds sad."
)


@pytest.mark.parametrize(
    "text, first, last",
    [
        (THOUGHT, "angry", "sad"),  # reasoning first names other labels; its conclusion comes last
        ("Sad.", "sad", "sad"),
        ("angry, not sad", "angry", "angry"),  # a negated label is skipped from either end
        ("I cannot tell", UNPARSED, UNPARSED),
        (f"<think>{THOUGHT}</think> Angry.", "angry", "angry"),  # reasoning in tags is never the answer
        (f"<THINK>{THOUGHT}</THINK>", UNPARSED, UNPARSED),
        (f"<think>{THOUGHT}", UNPARSED, UNPARSED),  # cut off by max_new_tokens before it answered
        ("happy <think>or sad?</think> happy, then sad", "happy", "sad"),
    ],
)
def test_an_answer_that_reasons_first_is_read_from_its_conclusion(text, first, last):
    assert parse_answer(text, LABELS) == parse_answer(text, LABELS, answer_from="first") == first
    assert parse_answer(text, LABELS, answer_from="last") == last


def test_load_audio_resamples_mixes_truncates_and_silences(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, np.stack([np.full(44100 * 2, 0.2), np.full(44100 * 2, 0.4)], axis=1), 44100)
    audio, policy = load_model_audio(str(path), rate=16000, window_s=30.0, silence=False)
    assert audio.shape == (32000,) and policy == "full" and abs(audio[1000] - 0.3) < 1e-3
    short, policy = load_model_audio(str(path), rate=16000, window_s=1.0, silence=False)
    assert short.shape == (16000,) and policy == "truncated to 1 s"
    quiet, _ = load_model_audio(str(path), rate=16000, window_s=30.0, silence=True)
    assert quiet.shape == (32000,) and not quiet.any()


class NaNFor:
    """Wraps a backend: the label scores of suffixes that contain ``marker`` come back NaN."""

    def __init__(self, backend, marker):
        self.backend, self.family, self.marker = backend, backend.family, marker

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def score(self, audio, prefix, suffixes, labels, **kwargs):
        scores = np.array(self.backend.score(audio, prefix, suffixes, labels, **kwargs), dtype=float)
        scores[[self.marker in s for s in suffixes]] = np.nan
        return scores


def test_non_finite_scores_are_invalid_answers_never_a_label_and_never_cached(
    backend, prompts, tmp_path, tiny_qwen2_audio, caplog
):
    from cuealign.runlog import PROGRESS

    caplog.set_level("INFO", logger=PROGRESS)
    cache = AnswerStore(tmp_path, "p")
    table = predict_shard(
        prompts, NaNFor(backend, "LOW"), labels=LABELS, spec=spec(tiny_qwen2_audio), cache=cache, progress=False
    )
    invalid = table["condition"] == "conflict"  # its suffix holds ENERGY=LOW
    assert (table.loc[invalid, "pred"] == INVALID).all() and not (table.loc[~invalid, "pred"] == INVALID).any()
    assert table.loc[invalid, [f"logprob_{label}" for label in LABELS]].isna().all().all()
    assert "4 of 12 answers are invalid" in caplog.text and "dtype float32" in caplog.text
    # asked again next time: the valid answers come from the cache, the invalid ones are computed
    caplog.clear()
    again = predict_shard(prompts, backend, labels=LABELS, spec=spec(tiny_qwen2_audio), cache=cache, progress=False)
    assert "12 predictions (4 computed, 8 from the cache, 0 the same prompt as another row" in caplog.text
    assert not (again["pred"] == INVALID).any()


def test_a_float16_model_that_overflows_stops_with_its_dtype_named(tiny_qwen2_audio, prompts, tmp_path):
    import torch

    overflowing = load_backend(model_entry(tiny_qwen2_audio, dtype="float16"))
    with torch.no_grad():  # embeddings past float16's range: the real model's activations become inf, then NaN
        overflowing.model.get_input_embeddings().weight.mul_(1e6)
    with pytest.raises(RuntimeError, match=r"12 of 12 answers are invalid: .* dtype float16: .* bfloat16 or float32"):
        predict_shard(
            prompts,
            overflowing,
            labels=LABELS,
            spec=spec(tiny_qwen2_audio, dtype="float16"),
            cache=AnswerStore(tmp_path, "p"),
            progress=False,
        )


def test_answers_follow_the_model_not_its_path_or_file_times(backend, prompts, tmp_path, tiny_qwen2_audio, caplog):
    """A model replaced in place (same size, modification time kept, as cp -p or rsync -a do)
    computes again; a bit-identical copy at another path hits the cache."""
    import os
    import shutil

    from cuealign.runlog import PROGRESS

    caplog.set_level("INFO", logger=PROGRESS)
    cache = AnswerStore(tmp_path / "cache", "p")
    first = tmp_path / "first"
    shutil.copytree(tiny_qwen2_audio, first)
    predict_shard(prompts, backend, labels=LABELS, spec=spec(first), cache=cache, progress=False)
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    caplog.clear()
    predict_shard(prompts, backend, labels=LABELS, spec=spec(copy), cache=cache, progress=False)
    assert "12 predictions (0 computed, 12 from the cache, 0 the same prompt" in caplog.text
    weights = next(first.glob("*.safetensors"))
    times = (weights.stat().st_atime_ns, weights.stat().st_mtime_ns)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the last weight
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=times)
    caplog.clear()
    predict_shard(prompts, backend, labels=LABELS, spec=spec(first), cache=cache, progress=False)
    assert "12 predictions (12 computed, 0 from the cache, 0 the same prompt" in caplog.text


def test_parse_answer_for_any_label_set():
    german = ["wütend", "fröhlich", "neutral", "traurig"]
    assert parse_answer("Der Sprecher klingt WÜTEND.", german) == "wütend"
    assert parse_answer("eher fröhlich", german) == "fröhlich"
    assert parse_answer("nicht wütend, eher traurig", german) == "traurig"
    assert parse_answer("weder fröhlich noch traurig, neutral", german) == "neutral"
    assert parse_answer("nicht wütend sondern traurig", german) == "traurig"
    aibo = ["anger", "emphatic", "neutral", "positive", "rest"]  # FAU-Aibo's classes: rest is also a noun
    assert parse_answer("I need a rest, she is angry", aibo) == UNPARSED  # not rest (angry is no Aibo class)
    assert parse_answer("I need a rest, she sounds emphatic", aibo) == "emphatic"
    assert parse_answer("rest", aibo) == "rest" and parse_answer("The class is rest.", aibo) == "rest"
    assert parse_answer("It sounds like the rest of the recording: neutral", aibo) == "neutral"
    assert parse_answer("an angry tone", LABELS) == "angry"  # a class word before another word still counts
    several = ["very happy", "happy", "sad"]  # the longer phrase where it is said
    assert parse_answer("I would say very happy", several) == "very happy"
    assert parse_answer("happy", several) == "happy"


def test_labels_that_collide_are_refused():
    from cuealign.models.inference import check_labels

    with pytest.raises(ValueError, match=r"\['Happy', 'happy'\] differ only in case"):
        check_labels(["Happy", "happy", "sad"])
    with pytest.raises(ValueError, match="a class label is empty"):
        check_labels(["", "sad"])


def test_the_system_prompt_and_label_spellings_are_part_of_what_was_asked(tiny_qwen2_audio, prompts, tmp_path):
    """Changing the system turn or the scored spellings computes every answer again; the same
    settings come from the cache. The predictions record each spelling's tokens."""
    cache = AnswerStore(tmp_path, "p")
    settings = [{}, {"system_prompt": "You rate emotions."}, {"label_variants": "case"}, {}]
    computed = []
    for extra in settings:
        counting = Counting(load_backend(spec(tiny_qwen2_audio, trust_remote_code=False, **extra)))
        table = predict_shard(
            prompts, counting, labels=LABELS, spec=spec(tiny_qwen2_audio, **extra), cache=cache, progress=False
        )
        computed.append(counting.calls)
    assert computed == [4, 4, 4, 0]
    assert json.loads(table["label_tokens"].iloc[0]).keys() == set(LABELS)


def test_each_prompt_wording_is_asked_and_cached_on_its_own(backend, prompts, tmp_path, tiny_qwen2_audio):
    """A second wording of the instruction: its own prefix per utterance, its own answers (keys of
    its own texts), every row carrying its variant; asked again, everything comes from the cache."""
    other = prompts.assign(variant="feel", prefix_text="How does the speaker feel? angry, happy, neutral, sad.")
    swept = pd.concat([prompts.assign(variant="main"), other], ignore_index=True)
    counting = Counting(backend)
    cache = AnswerStore(tmp_path, "p")
    table = predict_shard(swept, counting, labels=LABELS, spec=spec(tiny_qwen2_audio), cache=cache, progress=False)
    assert counting.calls == 8 and len(table) == len(swept)  # 4 utterances x 2 wordings, one prefix each
    assert table.groupby("variant").size().to_dict() == {"feel": 12, "main": 12}
    wide = table.pivot(index=["utt_id", "condition"], columns="variant", values="logprob_angry")
    assert (wide["main"] != wide["feel"]).all()  # the wording reaches the model
    alone = predict_shard(prompts, backend, labels=LABELS, spec=spec(tiny_qwen2_audio), cache=cache, progress=False)
    assert alone["variant"].eq("main").all()  # prompts of before variants read as the main wording
    again = Counting(backend)
    predict_shard(swept, again, labels=LABELS, spec=spec(tiny_qwen2_audio), cache=cache, progress=False)
    assert again.calls == 0


def test_rows_that_ask_the_same_prompt_are_computed_once(backend, prompts, tmp_path, caplog, tiny_qwen2_audio):
    """Corruption at p = 0 asks exactly what aligned asks: its rows get aligned's answer without
    being computed again (within the utterance, before anything is cached)."""
    from cuealign.runlog import PROGRESS

    caplog.set_level("INFO", logger=PROGRESS)
    aligned = prompts[prompts["condition"] == "aligned"]
    same = [aligned.assign(**Condition("corrupt", p=0.0, seed=s).as_row()) for s in (0, 1)]
    doubled = pd.concat([prompts, *same], ignore_index=True)
    asked = []

    class Recording(Counting):
        def score(self, audio, prefix, suffixes, labels, **kwargs):
            asked.extend(suffixes)
            return self.backend.score(audio, prefix, suffixes, labels, **kwargs)

    table = predict_shard(
        doubled,
        Recording(backend),
        labels=LABELS,
        spec=spec(tiny_qwen2_audio),
        cache=AnswerStore(tmp_path, "p"),
        progress=False,
    )
    assert len(table) == 20 and len(asked) == 12  # none, aligned, conflict of 4 utterances
    assert "20 predictions (12 computed, 0 from the cache, 8 the same prompt as another row" in caplog.text
    by = table.set_index(["utt_id", "condition"])
    for u in ("u0", "u3"):
        for s in (0, 1):
            assert by.loc[(u, f"corrupt_p0_s{s}"), "pred"] == by.loc[(u, "aligned"), "pred"]
            np.testing.assert_array_equal(
                by.loc[(u, f"corrupt_p0_s{s}"), [f"logprob_{x}" for x in LABELS]].to_numpy(float),
                by.loc[(u, "aligned"), [f"logprob_{x}" for x in LABELS]].to_numpy(float),
            )


def record_reads(monkeypatch) -> tuple[list, object]:
    """Every audio read of predict_shard as (path, thread name), and the real reader."""
    import threading

    from cuealign.models import inference

    reads = []
    real = inference.load_model_audio

    def recording(path, **kwargs):
        reads.append((path, threading.current_thread().name))
        return real(path, **kwargs)

    monkeypatch.setattr(inference, "load_model_audio", recording)
    return reads, real


def test_audio_is_read_ahead_in_a_thread_once_per_utterance_and_not_at_all_when_cached(
    backend, prompts, tmp_path, tiny_qwen2_audio, monkeypatch
):
    """While the model works on one utterance the next one's audio is read in a background thread;
    each file once (every wording shares it); a shard whose answers are all stored reads none."""
    from cuealign.models import inference

    reads, real = record_reads(monkeypatch)
    cache = AnswerStore(tmp_path, "p")
    first = predict_shard(prompts, backend, labels=LABELS, spec=spec(tiny_qwen2_audio), cache=cache, progress=False)
    assert sorted(path for path, _ in reads) == sorted(prompts["path"].unique())
    assert all(name.startswith("audio-read-ahead") for _, name in reads)

    def no_reading(path, **kwargs):
        raise AssertionError(f"{path} read although every answer is stored")

    monkeypatch.setattr(inference, "load_model_audio", no_reading)
    again = predict_shard(prompts, backend, labels=LABELS, spec=spec(tiny_qwen2_audio), cache=cache, progress=False)
    pd.testing.assert_frame_equal(again, first)
    # a file that cannot be read fails where it is needed, naming it, as a read in line would
    broken = prompts.assign(path=str(tmp_path / "gone.wav"), sha256="other")
    monkeypatch.setattr(inference, "load_model_audio", real)
    with pytest.raises(Exception, match="gone.wav"):
        predict_shard(broken, backend, labels=LABELS, spec=spec(tiny_qwen2_audio), cache=cache, progress=False)


def test_an_utterance_whose_audio_content_was_asked_already_takes_the_answers_and_read_ahead_goes_on(
    backend, prompts, tmp_path, tiny_qwen2_audio, monkeypatch
):
    """Two files with the same content (a corpus that lists a recording twice) ask the same: the
    second takes the first's answers; its planned read is given up and the reads after it stay
    ahead in the background thread."""
    u0 = prompts[prompts["utt_id"] == "u0"]
    twice = pd.concat(
        [u0, u0.assign(utt_id="u1", path=prompts.loc[prompts["utt_id"] == "u1", "path"].iloc[0])]
        + [prompts[prompts["utt_id"].isin(["u2", "u3"])]],
        ignore_index=True,
    )
    reads, real = record_reads(monkeypatch)
    table = predict_shard(
        twice, backend, labels=LABELS, spec=spec(tiny_qwen2_audio), cache=AnswerStore(tmp_path, "p"), progress=False
    )
    by = table.set_index(["utt_id", "condition"])
    for condition in ("none", "aligned", "conflict"):
        assert by.loc[("u1", condition), "pred"] == by.loc[("u0", condition), "pred"]
    assert all(name.startswith("audio-read-ahead") for _, name in reads)
    read = [path for path, _ in reads]
    assert set(twice.loc[twice["utt_id"].isin(["u0", "u2", "u3"]), "path"]) <= set(read)


def test_the_processors_work_on_the_next_utterance_is_done_in_the_read_ahead_thread(
    backend, prompts, tmp_path, tiny_qwen2_audio, monkeypatch
):
    """The chat template, tokens and log-mel features of the next utterance are made in the
    read-ahead thread (with the backend's own copy of the processor): the model's thread never
    calls the processor, and the answers are those of the processor called in line."""
    import threading

    from transformers import Qwen2AudioProcessor

    calls, tokenised = [], []
    real_call, real_split = Qwen2AudioProcessor.__call__, type(backend).split_ids

    def recording(self, *args, **kwargs):
        calls.append(threading.current_thread().name)
        return real_call(self, *args, **kwargs)

    def recording_split(self, head, rests, tokenizer=None):
        tokenised.append((threading.current_thread().name, len(rests)))
        return real_split(self, head, rests, tokenizer)

    monkeypatch.setattr(Qwen2AudioProcessor, "__call__", recording)
    monkeypatch.setattr(type(backend), "split_ids", recording_split)
    backend.forget_prefixes()
    ahead = answer(prompts, backend, tiny_qwen2_audio, AnswerStore(tmp_path / "a", "p"))
    assert len(calls) == prompts["utt_id"].nunique() and all(n.startswith("audio-read-ahead") for n in calls)
    # every suffix tokenised (and its split checked) there too, none where the model runs
    assert all(n.startswith("audio-read-ahead") for n, _ in tokenised) and sum(k for _, k in tokenised) == len(prompts)

    class InLine(Counting):
        prepare = None  # a backend that cannot prepare: the processor is called where the model runs

    calls.clear()
    backend.forget_prefixes()
    in_line = answer(prompts, InLine(backend), tiny_qwen2_audio, AnswerStore(tmp_path / "b", "p"))
    assert calls == ["MainThread"] * prompts["utt_id"].nunique()
    pd.testing.assert_frame_equal(ahead.drop(columns="seconds"), in_line.drop(columns="seconds"))


def test_a_processor_that_cannot_be_copied_leaves_its_work_in_line_with_a_warning(
    tiny_qwen2_audio, prompts, tmp_path, monkeypatch, caplog
):
    """A checkpoint's own processor class may not survive a copy: the read-ahead thread then
    reads the audio only, the processor runs where the model does, and the answers are the same."""
    import logging

    from cuealign.models import prefix as prefix_module

    copied = load_backend(spec(tiny_qwen2_audio, trust_remote_code=False))
    reference = answer(prompts, copied, tiny_qwen2_audio, AnswerStore(tmp_path / "a", "p"))

    real_deepcopy = prefix_module.copy.deepcopy

    def refuse(obj, *args):
        if type(obj).__name__.endswith("Processor"):
            raise TypeError("cannot pickle '_thread.lock' object")
        return real_deepcopy(obj, *args)

    monkeypatch.setattr(prefix_module.copy, "deepcopy", refuse)
    uncopied = load_backend(spec(tiny_qwen2_audio, trust_remote_code=False))
    with caplog.at_level(logging.WARNING, logger="cuealign.models.prefix"):
        table = answer(prompts, uncopied, tiny_qwen2_audio, AnswerStore(tmp_path / "b", "p"))
    assert caplog.text.count("cannot be copied for the read-ahead thread") == 1 and uncopied._preparer is False
    pd.testing.assert_frame_equal(table.drop(columns="seconds"), reference.drop(columns="seconds"))


@pytest.mark.parametrize("mode", ["score", "generate"])
def test_prefixes_of_several_utterances_batched_give_the_answers_of_one_at_a_time(
    backend, prompts, tmp_path, tiny_qwen2_audio, monkeypatch, mode
):
    """prefix_batch: the first wording of up to that many utterances with something to compute is
    encoded in one forward pass (an utterance whose answers are all stored takes no place), each
    further wording continues its utterance's kept audio, and the table is the one of encoding one
    utterance at a time."""
    other = prompts.assign(variant="feel", prefix_text="How does the speaker feel? angry, happy, neutral, sad.")
    swept = pd.concat([prompts.assign(variant="main"), other], ignore_index=True)
    one_by_one = predict_shard(
        swept,
        backend,
        labels=LABELS,
        spec=spec(tiny_qwen2_audio, mode=mode),
        cache=AnswerStore(tmp_path / "a", "p"),
        progress=False,
    )
    cache = AnswerStore(tmp_path / "b", "p")
    predict_shard(  # u1's answers stored before: it takes no place in a batch
        swept[swept["utt_id"] == "u1"],
        backend,
        labels=LABELS,
        spec=spec(tiny_qwen2_audio, mode=mode),
        cache=cache,
        progress=False,
    )
    encoded, extended = [], []
    real_encode, real_extend = type(backend)._encode, type(backend)._extend
    monkeypatch.setattr(
        type(backend), "_encode", lambda self, items: encoded.append(len(items)) or real_encode(self, items)
    )
    monkeypatch.setattr(
        type(backend), "_extend", lambda self, *args: extended.append(args[1]) or real_extend(self, *args)
    )
    backend.forget_prefixes()
    batched = predict_shard(
        swept,
        backend,
        labels=LABELS,
        spec=spec(tiny_qwen2_audio, mode=mode, prefix_batch=2),
        cache=cache,
        progress=False,
    )
    assert encoded == [2, 1]  # u0 and u2 together, then u3 alone
    assert extended == [other["prefix_text"].iloc[0]] * 3  # the second wordings of u0, u2, u3
    columns = [c for c in one_by_one.columns if c != "seconds" and not c.startswith("logprob_")]
    pd.testing.assert_frame_equal(batched[columns], one_by_one[columns])
    logprobs = [f"logprob_{label}" for label in LABELS]
    np.testing.assert_allclose(batched[logprobs].to_numpy(float), one_by_one[logprobs].to_numpy(float), atol=1e-5)


def test_a_fresh_run_reports_no_answer_from_the_store(backend, prompts, tmp_path, caplog, tiny_qwen2_audio):
    """A second wording that changes only the token block asks the same 'none' prompt as the main
    one: answered once in this job, counted as such, never as 'from the cache' in a fresh run."""
    from cuealign.runlog import PROGRESS

    caplog.set_level("INFO", logger=PROGRESS)
    other = prompts.assign(variant="measured", suffix_text=prompts["suffix_text"].str.replace("Acoustic", "Measured"))
    swept = pd.concat([prompts.assign(variant="main"), other], ignore_index=True)
    same = (other["suffix_text"] == prompts["suffix_text"]).sum()  # rows without a token block
    assert same > 0
    predict_shard(
        swept, backend, labels=LABELS, spec=spec(tiny_qwen2_audio), cache=AnswerStore(tmp_path, "p"), progress=False
    )
    assert (
        f"{len(swept)} predictions ({len(swept) - same} computed, 0 from the cache, {same} the same prompt"
        in caplog.text
    )
