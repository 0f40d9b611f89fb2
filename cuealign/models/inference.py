"""Run a backend over a shard of prompts, accounting for every utterance x condition.

Every answer is written to a content-keyed cache as soon as its utterance is done: the key is
what was asked (audio content hash, audio kind, model fingerprint and revision, prompt texts,
mode, labels, decoding settings). A shard killed halfway resumes from there, and a new condition
or corruption level computes only the new rows. Nothing is dropped or filled in: an answer that
names no label is 'unparsed', kept and counted; label scores that are not finite (a float16 model
whose activations overflow gives NaN, and argmax would read NaN as the first label) make the
answer 'invalid': kept, counted, scored as wrong and never cached, and a shard where most answers
are invalid fails with a message naming the dtype.
"""

from __future__ import annotations

import json
import logging
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import pandas as pd
from tqdm import tqdm

from cuealign.cache import AnswerStore, KeyedJsonCache, content_key
from cuealign.corpora.audio import load_model_audio
from cuealign.interventions import CONDITION_COLUMNS
from cuealign.models.identity import model_identity
from cuealign.models.numerics import numerics_in_use
from cuealign.models.registry import GREEDY_DECODING
from cuealign.prompts import MAIN_VARIANT
from cuealign.runlog import PROGRESS
from cuealign.tokens import TOKEN_PREFIX

log = logging.getLogger(__name__)
progress_log = logging.getLogger(PROGRESS)  # shown on the terminal by cuealign.runlog
PROGRESS_EVERY_S = 30.0

UNPARSED = "unparsed"
INVALID = "invalid"
MOST = 0.5  # more than this share of invalid answers stops the job
# Words an answer may use for a class (lower case). The first word of the answer that is a label,
# or a synonym of one, decides; an answer with none is 'unparsed'.
SYNONYMS = {
    "anger": "angry",
    "angrily": "angry",
    "mad": "angry",
    "furious": "angry",
    "annoyed": "angry",
    "irritated": "angry",
    "happiness": "happy",
    "joy": "happy",
    "joyful": "happy",
    "glad": "happy",
    "excited": "happy",
    "excitement": "happy",
    "cheerful": "happy",
    "sadness": "sad",
    "unhappy": "sad",
    "sorrow": "sad",
    "sorrowful": "sad",
    "depressed": "sad",
    "melancholy": "sad",
    "neutrality": "neutral",
    "calm": "neutral",
    "emphasis": "emphatic",
    "positivity": "positive",
}


NEGATIONS = {
    "not", "t", "no", "never", "neither", "nor", "isnt", "without", "hardly",
    "nicht", "kein", "keine", "weder", "noch", "pas", "ni",
}  # fmt: skip
# A negation ("not", the "t" of "isn't") reaches the next four words of its clause; a clause ends
# at punctuation or a contrast ("not angry but sad", "neither happy nor sad; neutral").
CLAUSE_BREAK = re.compile(r"[.;:,!?\n()\[\]]+|\b(?:but|rather|instead|aber|sondern|mais)\b", re.IGNORECASE)


def check_labels(labels: list[str]) -> None:
    """Labels an answer can tell apart: none empty, none equal to another up to case."""
    folded = [label.casefold().strip() for label in labels]
    if "" in folded:
        raise ValueError(f"a class label is empty ({labels}); check the corpus' label_map")
    if len(set(folded)) != len(folded):
        clashes = sorted({label for label in labels if folded.count(label.casefold().strip()) > 1})
        raise ValueError(f"class labels {clashes} differ only in case: an answer cannot tell them apart")


DETERMINERS = {"a", "an", "the", "my", "your", "his", "her", "its", "our", "their", "this", "that", "some", "any"}


PREPOSITIONS = {"of", "in", "for", "from", "with", "to", "at", "on", "by", "about"}


def _as_a_noun(words: list[str], start: int, end: int) -> bool:
    """A class word used as a noun, after an article and ending its clause or before a
    preposition ('I need a rest, she is angry', 'the rest of it': FAU-Aibo's class rest), is not
    an answer; one before another word ('an angry tone') still is."""
    return start > 0 and words[start - 1] in DETERMINERS and (end == len(words) or words[end] in PREPOSITIONS)


THINKING = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


def parse_answer(text: str, labels: list[str], *, answer_from: str = "first") -> str:
    """The label a generated answer names, or 'unparsed': the first label (a word or several,
    any script, any case) or synonym the answer affirms, or with ``answer_from='last'`` the last
    (a model that reasons first ends with its conclusion). A label within four words after a
    negation in the same clause ('not angry', 'nicht wütend', 'neither happy nor sad') is not
    affirmed and is skipped, as is a class word used as a noun ('I need a rest'), so 'not angry,
    just frustrated' is unparsed rather than angry, and 'neither happy nor sad; neutral' is
    neutral. Text inside <think>...</think> is reasoning and never the answer; an answer whose
    <think> is never closed (cut off by max_new_tokens) gave none."""
    text = THINKING.sub(" ", text)
    if "<think>" in text.casefold():
        return UNPARSED
    affirmed = _affirmed(text, labels)
    if answer_from == "last":
        affirmed = reversed(list(affirmed))
    return next(iter(affirmed), UNPARSED)


def _affirmed(text: str, labels: list[str]):
    """Each label ``text`` affirms, in the order it does (see parse_answer)."""
    wanted = {tuple(re.findall(r"\w+", label.casefold())): label for label in labels}
    for clause in CLAUSE_BREAK.split(text.casefold()):
        words = re.findall(r"\w+", clause)
        for start, word in enumerate(words):
            if any(w in NEGATIONS for w in words[max(0, start - 4) : start]):
                continue
            for phrase, label in wanted.items():
                end = start + len(phrase)
                if tuple(words[start:end]) == phrase and not _as_a_noun(words, start, end):
                    yield label
                    break
            else:
                if (synonym := SYNONYMS.get(word)) is not None and (synonym,) in wanted:
                    yield wanted[(synonym,)]


class _Group(NamedTuple):
    """The rows of one utterance, audio and prompt wording: they share one encoded prefix."""

    audio_kind: str
    path: str
    prefix_text: str
    suffixes: list[str]
    carried: list[dict]  # what each prediction row keeps of its prompt row
    keys: list[str]  # what each row asks, as answer store keys


class _ReadAhead:
    """The audio of the groups that will be computed, read (and prepared for the model, see
    predict_shard) in a background thread up to ``depth`` ahead, in the order they are asked for
    (reading, resampling, log-mel features and the Rust tokenizer release the GIL for much of
    their time, so the next utterance is made ready while the model works on this one). A read
    that fails raises where it is asked for, as a read in line would."""

    def __init__(self, wanted: list[tuple[str, str]], load, depth: int = 2):
        self.order = list(dict.fromkeys(wanted))
        self.rank = {where: i for i, where in enumerate(self.order)}
        self.load, self.depth, self.next = load, depth, 0
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audio-read-ahead")
        self.futures: dict[tuple[str, str], Future] = {}
        self.last: tuple[tuple[str, str], tuple] | None = None  # every wording of an utterance reads it
        self._fill()

    def _fill(self) -> None:
        while len(self.futures) < self.depth and self.next < len(self.order):
            where = self.order[self.next]
            self.futures[where] = self.pool.submit(self.load, where)
            self.next += 1

    def get(self, where: tuple[str, str]) -> tuple:
        if self.last is None or self.last[0] != where:
            # reads planned before this one and never asked for (their answers came from another
            # row with the same audio content) give their place up
            for skipped in [w for w in self.futures if self.rank[w] < self.rank.get(where, -1)]:
                self.futures.pop(skipped).cancel()
            future = self.futures.pop(where, None)
            self.last = (where, future.result() if future is not None else self.load(where))
            self._fill()
        return self.last[1]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _ask(backend, audio, prefix_text: str, suffixes: list[str], labels: list[str], spec: dict, ahead: dict) -> list:
    """The model's answer to each suffix after ``prefix_text``, as an answer store entry (less
    its time and audio policy): scored labels (non-finite scores make it invalid) or parsed text."""
    if spec["mode"] == "score":
        scores = backend.score(audio, prefix_text, suffixes, labels, batch_size=spec["batch_size"], **ahead)
        return [
            {"pred": labels[int(np.argmax(s))], "raw_output": labels[int(np.argmax(s))], "logprobs": s.tolist()}
            if np.all(np.isfinite(s))
            else {"pred": INVALID, "raw_output": "non-finite label scores", "logprobs": np.asarray(s).tolist()}
            for s in scores
        ]
    texts = backend.generate(
        audio,
        prefix_text,
        suffixes,
        max_new_tokens=spec["max_new_tokens"],
        batch_size=spec["batch_size"],
        **ahead,
    )
    answer_from = spec["answer_from"]
    return [
        {"pred": parse_answer(t, labels, answer_from=answer_from), "raw_output": t, "logprobs": None} for t in texts
    ]


def _wheres(groups: list[_Group]) -> list[tuple[str, str]]:
    """The audio (path, kind) of ``groups``, each once, in order."""
    return list(dict.fromkeys((group.path, group.audio_kind) for group in groups))


def _chunks(planned: list[_Group], size: int, computing) -> list[list[_Group]]:
    """``planned`` cut into runs of consecutive groups holding at most ``size`` utterances
    (audio) with something to compute (``computing`` holds their audio), each run as long as
    can be: an utterance's groups are consecutive and stay in one run."""
    chunks: list[list[_Group]] = [[]]
    held: set[tuple[str, str]] = set()
    for group in planned:
        where = (group.path, group.audio_kind)
        if where in computing and where not in held:
            if len(held) == size:
                chunks.append([])
                held = set()
            held.add(where)
        chunks[-1].append(group)
    return [chunk for chunk in chunks if chunk]


def predict_shard(
    prompts: pd.DataFrame,
    backend,
    *,
    labels: list[str],
    spec: dict,
    cache: AnswerStore,
    progress: bool = True,
) -> pd.DataFrame:
    """Predictions for every row of ``prompts`` (config: models.<name> is ``spec``). Answers are
    keyed by what the model is (its files' content, or the hub snapshot commit), so a changed
    model never reuses another's answers and a bit-identical one hits the cache.

    Three steps: plan (what every row asks, grouped by the rows that share an encoded prefix),
    answer (from this job, the store, or the model, stored as each utterance is done), record
    (one prediction row per prompt row)."""
    check_labels(labels)
    if "variant" not in prompts.columns:  # prompts written before prompt variants existed
        prompts = prompts.assign(variant=MAIN_VARIANT)
    run = _ShardRun(backend, labels=labels, spec=spec, cache=cache)
    planned = run.plan(prompts)
    records = run.answer_all(planned, total=len(prompts), progress=progress)
    return run.table(records)


def check_device_memory(backend, spec: dict, prompts: pd.DataFrame, durations: dict, *, model: str) -> None:
    """Before the first utterance: whether a forward of this shard's longest clip fits the GPU's
    free memory (cuealign.models.memory); an error naming the batch_size that fits where not. Only
    for audio-language models on a CUDA device (on the CPU the job's memory is mem_mb's)."""
    device = getattr(backend, "device", None)
    if getattr(device, "type", None) != "cuda" or backend.family.backend != "alm" or not len(prompts):
        return
    import torch

    from cuealign.models import memory

    longest = min(backend.window_s, max(float(durations.get(u, backend.window_s)) for u in prompts["utt_id"]))
    per_utterance = int(prompts.groupby(["utt_id", "variant"] if "variant" in prompts else ["utt_id"]).size().max())
    labels = sorted(prompts["label"].unique())
    spellings = backend.label_tokens(labels) if spec["mode"] == "score" else {}
    free, _ = torch.cuda.mem_get_info(device)
    memory.check_step_fits(
        backend.model.config,
        free=free,
        device=str(device),
        model=model,
        family=backend.family.name,
        seconds=longest,
        rows=min(spec["batch_size"], per_utterance),
        dtype_bytes=backend.model.dtype.itemsize,
        several_token_labels=any(len(tokens) > 1 for tokens in spellings.values()),
    )


def _asked(backend, spec: dict, labels: list[str], cache: AnswerStore, numerics: str) -> dict:
    """What every prompt of this shard asks besides its own audio and text: the model (by
    content), how it is loaded and decoded, the labels; the base of each answer's store key."""
    mode = spec["mode"]
    hashes = KeyedJsonCache(cache.root.parent, "file-hashes")  # each weight file read once
    asked = {
        "model": model_identity(spec["path"], spec.get("revision"), memo=hashes),
        "revision": spec.get("revision"),
        "adapter": model_identity(spec["adapter"], memo=hashes) if spec.get("adapter") else None,
        "family": spec["family"],
        "dtype": backend.dtype,  # what the weights were loaded in (dtype auto resolved)
        "numerics": numerics,  # portable answers are the same bits on any CPU, native ones are not
        "mode": mode,
        "labels": labels,
        "max_new_tokens": spec["max_new_tokens"] if mode == "generate" else None,
        "decoding": GREEDY_DECODING if mode == "generate" else None,
    }
    if backend.family.backend == "clap":  # what CLAP compares the audio with
        asked["label_prompt"] = spec["label_prompt"]
    else:  # the system turn (None: the template's own) and the spellings each label is scored as
        asked["system_prompt"] = spec.get("system_prompt")
        asked["label_variants"] = spec["label_variants"] if mode == "score" else None
    if backend.family.pad_to_clip:  # features padded to the clip: equal scores, not the same bits as before
        asked["audio_padding"] = "clip"
    return asked


def _plan(prompts: pd.DataFrame, asked: dict) -> list[_Group]:
    """One group per utterance, audio and prompt wording: the rows that share one encoded prefix,
    with what each row asks as a store key. An utterance's wordings come one after the other, so
    that its audio is read and encoded once. Columns are read as plain lists once here rather
    than with pandas per utterance on the model's path."""
    # what a prediction row keeps of its prompt: who, what truth, which condition (as data) and
    # which tokens it was shown, so the analysis never reads them back out of names or strings
    carry = ["utt_id", *CONDITION_COLUMNS, "variant", "label", "split", "speaker"]
    carry += [column for column in prompts.columns if column.startswith(TOKEN_PREFIX)]
    columns = {c: prompts[c].tolist() for c in ("utt_id", "audio", "variant", "path", "sha256", "prefix_text")}
    suffix_all = prompts["suffix_text"].tolist()
    carried_all = prompts[carry].to_dict("records")
    wordings_of: dict[tuple, dict[str, list[int]]] = {}
    for position, (utt_id, audio, variant) in enumerate(
        zip(columns["utt_id"], columns["audio"], columns["variant"], strict=True)
    ):
        wordings_of.setdefault((utt_id, audio), {}).setdefault(variant, []).append(position)
    planned = []
    for (utt_id, audio_kind), wordings in wordings_of.items():
        for positions in wordings.values():
            prefixes = {columns["prefix_text"][i] for i in positions}
            if len(prefixes) != 1:
                raise ValueError(
                    f"{utt_id}: conditions of one utterance and prompt variant must share the prompt prefix"
                )
            prefix_text = prefixes.pop()
            suffixes = [suffix_all[i] for i in positions]
            keys = [
                content_key(
                    asked
                    | {"audio": columns["sha256"][i], "audio_kind": audio_kind, "prefix": prefix_text, "suffix": suffix}
                )
                for i, suffix in zip(positions, suffixes, strict=True)
            ]
            carried = [carried_all[i] for i in positions]
            planned.append(_Group(audio_kind, columns["path"][positions[0]], prefix_text, suffixes, carried, keys))
    return planned


class _ShardRun:
    """One shard's answering: what the store holds, what this job answered, the audio read ahead,
    the counts the summary reports."""

    def __init__(self, backend, *, labels: list[str], spec: dict, cache: AnswerStore):
        self.backend, self.labels, self.spec, self.cache = backend, labels, spec, cache
        self.numerics = numerics_in_use(spec["device"])
        self.asked = _asked(backend, spec, labels, cache, self.numerics)
        self.fresh: dict[str, dict] = {}  # answered in this job (another wording may ask the same)
        self.stored: set[str] = set()
        self.instruction: dict[tuple[str, str], tuple[str, list[str]]] = {}
        self.computed = self.repeated = 0
        self.started = time.perf_counter()

    def plan(self, prompts: pd.DataFrame) -> list[_Group]:
        planned = _plan(prompts, self.asked)
        self.stored = self.cache.known([key for group in planned for key in group.keys])
        # the audio of the groups with something to compute, read ahead in a thread while the model
        # works, and where the backend can, the processor's work on it too (chat template, tokens,
        # log-mel features of the first wording to compute, the tokens of its suffixes): none of it
        # is left on the model's path
        for group in planned:
            suffixes = [s for s, k in zip(group.suffixes, group.keys, strict=True) if k not in self.stored]
            if suffixes:
                self.instruction.setdefault((group.path, group.audio_kind), (group.prefix_text, suffixes))
        return planned

    def _load(self, where: tuple[str, str]) -> tuple:
        backend = self.backend
        audio, policy = load_model_audio(
            where[0], rate=backend.sampling_rate, window_s=backend.window_s, silence=where[1] == "silence"
        )
        prepare = getattr(backend, "prepare", None)
        prepared = (
            prepare(audio, *self.instruction[where]) if prepare is not None and where in self.instruction else None
        )
        return audio, policy, prepared

    def answer_all(self, planned: list[_Group], *, total: int, progress: bool) -> list[dict]:
        """Every group answered and recorded, chunk by chunk (``prefix_batch`` utterances with
        something to compute have their first wording's prefix encoded in one forward pass, where
        the backend can; then each utterance's conditions run on its own cache as before)."""
        prefix_batch = self.spec["prefix_batch"] if hasattr(self.backend, "encode_prefixes") else 1
        if prefix_batch > 1:
            progress_log.info(
                "prefixes of up to %d utterances encoded in one forward pass (prefix_batch)", prefix_batch
            )
        reader = _ReadAhead(list(self.instruction), self._load, depth=2 * prefix_batch)
        records: list[dict] = []
        last_report = self.started
        bar = tqdm(total=len(planned), desc="utterances", disable=not progress, mininterval=10)
        try:
            for chunk in _chunks(planned, prefix_batch, self.instruction):
                loaded = {where: reader.get(where) for where in _wheres(chunk) if where in self.instruction}
                encoded = self._encode_together(loaded)
                for group in chunk:
                    bar.update()
                    answers = self.answer(group, loaded, encoded, reader)
                    now = time.perf_counter()
                    if now - last_report >= PROGRESS_EVERY_S:
                        last_report = now
                        done = len(records) + len(group.keys)
                        progress_log.info(
                            "%d of %d prompts answered (%d computed), %.1f prompts/s",
                            done,
                            total,
                            self.computed,
                            done / (now - self.started),
                        )
                    records += _records(group, answers, self.labels)
        finally:
            bar.close()
            reader.close()
        return records

    def _encode_together(self, loaded: dict) -> dict[tuple[tuple[str, str], str], tuple]:
        """The first wording of each loaded utterance encoded in one forward pass (more than one
        utterance only); the time it takes is shared among them."""
        if len(loaded) <= 1:
            return {}
        start = time.perf_counter()
        prefixes = self.backend.encode_prefixes(
            [(audio, self.instruction[where][0], prepared) for where, (audio, _, prepared) in loaded.items()]
        )
        share = (time.perf_counter() - start) / len(loaded)
        return {
            (where, self.instruction[where][0]): (prefix, share) for where, prefix in zip(loaded, prefixes, strict=True)
        }

    def answer(self, group: _Group, loaded: dict, encoded: dict, reader: _ReadAhead) -> list[dict]:
        """Each row's answer: from this job, else the store, else the model (rows that ask the
        same, as each corruption seed at p = 0 asks what aligned asks, computed once), the new
        ones stored in one transaction as soon as the utterance is done: a kill loses at most
        this one; an invalid answer is not stored, so it is asked again next time."""
        keys = group.keys
        answers = [self.fresh.get(k) for k in keys]
        # asked already in this job (another wording's same prompt): not from the store
        self.repeated += sum(answer is not None for answer in answers)
        from_store = [i for i, answer in enumerate(answers) if answer is None and keys[i] in self.stored]
        for i, answer in zip(from_store, self.cache.get_many([keys[i] for i in from_store]), strict=True):
            if answer is not None and self.spec["mode"] == "generate":  # read with today's parser
                pred = parse_answer(answer["raw_output"], self.labels, answer_from=self.spec["answer_from"])
                answer = answer | {"pred": pred}
            answers[i] = answer
        missing = [i for i, answer in enumerate(answers) if answer is None]
        first_asked: dict[str, int] = {}
        for i in missing:
            first_asked.setdefault(keys[i], i)
        todo = list(first_asked.values())
        if not todo:
            return answers
        # a stored answer that reads as a miss (a corrupt entry) is computed here too
        where = (group.path, group.audio_kind)
        audio, policy, prepared = loaded[where] if where in loaded else reader.get(where)
        ahead = {"prepared": prepared} if prepared is not None else {}
        prefix, spent = encoded.pop((where, group.prefix_text), (None, 0.0))
        if prefix is not None:
            ahead["prefix"] = prefix
        start = time.perf_counter()
        made = _ask(
            self.backend, audio, group.prefix_text, [group.suffixes[i] for i in todo], self.labels, self.spec, ahead
        )
        seconds = (time.perf_counter() - start + spent) / len(todo)
        for i, answer in zip(todo, made, strict=True):
            answers[i] = answer | {"seconds": seconds, "audio_policy": policy}
        for i in missing:
            answers[i] = dict(answers[first_asked[keys[i]]])
        valid = [(keys[i], answers[i]) for i in todo if answers[i]["pred"] != INVALID]
        self.cache.put_many(valid)
        self.fresh.update(valid)
        self.computed += len(todo)
        self.repeated += len(missing) - len(todo)
        return answers

    def table(self, records: list[dict]) -> pd.DataFrame:
        """The predictions table, how it was made on every row; the shard's summary logged; most
        answers invalid is an error naming the dtype."""
        spec, backend = self.spec, self.backend
        mode = spec["mode"]
        # provenance: the tokens each scored spelling of each label is (the analysis puts them in RUN.json)
        label_tokens = json.dumps(backend.label_tokens(self.labels), ensure_ascii=False) if mode == "score" else ""
        table = pd.DataFrame.from_records(records)
        if len(table):
            table = table.astype({"p": "float64", "seed": "Int64"})
        table = table.assign(
            model=spec["path"],
            revision=spec.get("revision") or "",
            adapter=spec.get("adapter") or "",
            backend=f"transformers:{spec['family']}",
            mode=mode,
            dtype=backend.dtype,
            numerics=self.numerics,
            device=spec["device"],
            batch_size=spec["batch_size"],
            label_tokens=label_tokens,
        )
        self._summarise(table)
        return table

    def _summarise(self, table: pd.DataFrame) -> None:
        unparsed = int((table["pred"] == UNPARSED).sum()) if len(table) else 0
        invalid = int((table["pred"] == INVALID).sum()) if len(table) else 0
        elapsed = time.perf_counter() - self.started
        progress_log.info(
            "%d predictions (%d computed, %d from the cache, %d the same prompt as another row of their "
            "utterance), %d unparsed, %d invalid; %.1f s, %.1f computed prompts/s",
            len(table),
            self.computed,
            len(table) - self.computed - self.repeated,
            self.repeated,
            unparsed,
            invalid,
            elapsed,
            self.computed / elapsed if elapsed > 0 else 0.0,
        )
        if invalid:
            advice = (
                f"the model's label scores were not finite (NaN or inf) with dtype {self.backend.dtype}: its "
                "activations overflow; set the model's dtype to bfloat16 or float32"
            )
            if invalid > MOST * len(table):
                raise RuntimeError(f"{invalid} of {len(table)} answers are invalid: {advice}")
            progress_log.warning(
                "%d of %d answers are invalid (kept, scored as wrong, not cached): %s", invalid, len(table), advice
            )


def _records(group: _Group, answers: list[dict], labels: list[str]) -> list[dict]:
    """One prediction row per prompt row of ``group``: what it carries of the prompt, the answer,
    one log-probability column per label (NaN in generate mode)."""
    records = []
    for row, answer in zip(group.carried, answers, strict=True):
        record = {
            **row,
            "pred": answer["pred"],
            "raw_output": answer["raw_output"],
            "seconds": answer["seconds"],
            "audio_policy": answer["audio_policy"],
        }
        for label, value in zip(labels, answer["logprobs"] or [np.nan] * len(labels), strict=True):
            record[f"logprob_{label}"] = value
        records.append(record)
    return records
