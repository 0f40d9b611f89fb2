"""Time and peak memory of the per-corpus stages on fabricated studies of growing size: IEMOCAP
(1,241 evaluated x 26 conditions), FAU-Aibo (8,257 x 33), a 30,000 x 33 study (100k corpus) and
100,000 x 33; with a row projecting 1 million utterances from the largest two.

Tokens are fabricated (no openSMILE, no model): a manifest with train and test speakers, tokens
drawn from the demo's vocabularies, predictions with the real columns (answers, label scores,
raw output, model columns) from the prompts. Each stage runs in its own process (its peak RSS is
the process's): build_prompts as its job runs it (every shard), one job of it when prompts are
built per shard, and the analysis job (prompts counted, predictions reduced shard by shard, cue
following, every statistic, the accounting), B = 10,000 jackknife-t.

    python benchmarks/scale.py [--sizes iemocap aibo 30k 100k] [--shards 8] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SIZES = {  # name: (evaluated utterances, corpus utterances, speakers, 33 conditions or 26)
    "iemocap": (1_241, 5_531, 10, False),
    "aibo": (8_257, 18_216, 51, True),
    "30k": (30_000, 100_000, 200, True),
    "100k": (100_000, 300_000, 600, True),
}
LABELS = ["angry", "happy", "neutral", "sad"]
META = {
    "fit_split": "train",
    "concepts": {
        name: {"descriptors": {}, "labels": labels}
        for name, labels in {
            "ENERGY": ["VERY_LOW", "LOW", "MID", "HIGH", "VERY_HIGH"],
            "PITCH": ["VERY_LOW", "LOW", "MID", "HIGH", "VERY_HIGH"],
            "BRIGHTNESS": ["VERY_DARK", "DARK", "MID", "BRIGHT", "VERY_BRIGHT"],
            "DYNAMICS": ["VERY_STATIC", "STATIC", "MID", "DYNAMIC", "VERY_DYNAMIC"],
            "FORMANTS": ["VERY_LOW", "LOW", "MID", "HIGH", "VERY_HIGH"],
        }.items()
    },
    "voice_quality": {"labels": ["MODAL", "BREATHY", "PRESSED", "ROUGH", "CREAKY", "UNVOICED"]},
    "format": {"template": "{concept}={token}", "separator": "; "},
}
PROMPT = {
    "template": "{audio}Which emotion does the speaker express? Answer with one of: {labels}.{cues}",
    "cues": " Acoustic cues measured from the audio: {tokens}.",
}


def conditions_spec(full: bool) -> dict:
    return dict(
        conflict=True,
        shuffle_seeds=list(range(5)),
        corrupt_p=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        corrupt_seeds=[0, 1, 2],
        swap=["ENERGY", "PITCH", "BRIGHTNESS", "DYNAMICS", "FORMANTS", "VOICE_QUALITY"] if full else [],
        tokens_only=full,
        corrupt_draw="vocabulary",
        conflict_voice_quality=False,
    )


def fabricate(workdir: Path, evaluated: int, corpus: int, speakers: int, seed: int = 0) -> None:
    """manifest.parquet, tokens.parquet, tokens_meta.json: ``evaluated`` test utterances from
    ``speakers`` speakers, the rest train."""
    from cuealign.tokens import TokensMeta

    rng = np.random.default_rng(seed)
    train_speakers = max(speakers, 2) * 3
    test = np.arange(corpus) < evaluated
    speaker = np.where(test, rng.integers(0, speakers, corpus), speakers + rng.integers(0, train_speakers, corpus))
    utt_id = [f"utt{i:07d}" for i in range(corpus)]
    manifest = pd.DataFrame(
        {
            "utt_id": utt_id,
            "path": [f"audio/{u}.wav" for u in utt_id],
            "label": rng.choice(LABELS, corpus),
            "speaker": [f"spk{s:04d}" for s in speaker],
            "split": np.where(test, "test", "train"),
            "status": "ok",
            "sha256": "0" * 64,
            "duration_s": rng.uniform(1, 8, corpus),
        }
    )
    manifest.to_parquet(workdir / "manifest.parquet", index=False)
    meta = TokensMeta(META)
    tokens = pd.DataFrame(
        {"utt_id": utt_id} | {name: rng.choice(labels[:5], corpus) for name, labels in meta.vocabularies().items()}
    )
    tokens["token_string"] = meta.serialise(tokens)
    tokens.to_parquet(workdir / "tokens.parquet", index=False)
    meta.write(workdir / "tokens_meta.json")


def peak_mb() -> float:
    """This process' peak resident memory (VmHWM: ru_maxrss would carry the parent's across exec)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def stage_prompts(workdir: Path, full: bool, shards: int, only: int | None) -> dict:
    """build_prompts: the whole corpus' prompts (only=None), or one shard's (only=k)."""
    from cuealign import prompts as prompt_stage
    from cuealign.interventions import conditions_from_config
    from cuealign.tokens import TokensMeta

    start = time.perf_counter()
    manifest = pd.read_parquet(workdir / "manifest.parquet")
    meta = TokensMeta.read(workdir / "tokens_meta.json")
    spec = conditions_spec(full)
    kwargs = dict(
        conditions=conditions_from_config(spec, meta.names),
        prompt=PROMPT,
        split="test",
        corrupt_draw=spec["corrupt_draw"],
        conflict_voice_quality=spec["conflict_voice_quality"],
    )
    tokens = pd.read_parquet(workdir / "tokens.parquet")
    out = workdir / "prompts"
    out.mkdir(exist_ok=True)
    if only is None:
        from cuealign.shards import split_by_shard

        table = prompt_stage.prompt_table(tokens, manifest, meta, **kwargs)
        for k, shard in enumerate(split_by_shard(table, manifest, shards)):
            shard.to_parquet(out / f"{k}.parquet", index=False)
    else:
        table = prompt_stage.prompt_table(tokens, manifest, meta, shard=only, shards=shards, **kwargs)
        table.to_parquet(out / f"{only}.parquet", index=False)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in out.glob("*.parquet"))
    return dict(seconds=seconds, peak_mb=peak_mb(), parquet_mb=size / 2**20)


def stage_predictions(workdir: Path, seed: int = 0) -> dict:
    """Predictions with the real columns for every prompt (not timed as a stage: inference)."""
    rng = np.random.default_rng(seed)
    out = workdir / "predictions"
    out.mkdir(exist_ok=True)
    for path in sorted((workdir / "prompts").glob("*.parquet")):
        prompts = pd.read_parquet(path)
        n = len(prompts)
        logits = rng.normal(size=(n, len(LABELS))) + 1.5 * (np.array(LABELS) == prompts["label"].to_numpy()[:, None])
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        pred = np.array(LABELS)[logits.argmax(axis=1)]
        frame = prompts.drop(columns=["audio", "token_string", "prefix_text", "suffix_text", "text", "path"])
        frame = frame.drop(columns=["sha256", "duration_s"]).assign(pred=pred, raw_output=pred, seconds=0.05)
        frame = frame.assign(audio_policy="full", **{f"logprob_{x}": logp[:, j] for j, x in enumerate(LABELS)})
        frame = frame.assign(model="models/qwen2-audio", revision="", adapter="", backend="transformers:qwen2-audio")
        frame = frame.assign(mode="score", dtype="bfloat16", device="cuda", batch_size=32, label_tokens="{}")
        frame.to_parquet(out / path.name, index=False)
    return {}


def stage_analysis(workdir: Path, resamples: int) -> dict:
    """The analysis job's work, in its order (workflow_scripts/analyse_predictions.py)."""
    from cuealign.analysis.accounting import PromptCounts, accounting
    from cuealign.analysis.answers import analyse_answers, read_shard, reduce_shards
    from cuealign.analysis.cue_following import class_given_token, cue_following, pool_cue_following
    from cuealign.tokens import TokensMeta

    timings = {}
    start = time.perf_counter()
    manifest = pd.read_parquet(workdir / "manifest.parquet")
    prompt_paths = sorted((workdir / "prompts").glob("*.parquet"))
    columns = ("utt_id", "condition", "variant", "split", "speaker", "label")
    prompts = PromptCounts.concat([PromptCounts.of(read_shard(p, columns, ())) for p in prompt_paths])
    meta = TokensMeta.read(workdir / "tokens_meta.json")
    tokens = pd.read_parquet(workdir / "tokens.parquet").merge(manifest[["utt_id", "label", "split"]], on="utt_id")
    fitted = tokens[meta.fit_rows(tokens)]
    association = class_given_token(fitted, fitted["label"], meta.names, LABELS)
    timings["prompts counted"] = time.perf_counter() - start
    cue_tables, cue_seconds = [], [0.0]

    def follow(main):
        begin = time.perf_counter()
        cue_tables.append(cue_following(main, association, labels=LABELS))
        cue_seconds[0] += time.perf_counter() - begin

    start = time.perf_counter()
    answers, answered = reduce_shards(
        sorted(str(p) for p in (workdir / "predictions").glob("*.parquet")),
        labels=LABELS,
        conditions=prompts.conditions,
        wordings=["main"],
        each=follow,
    )
    pool_cue_following(cue_tables)
    timings["predictions read and reduced"] = time.perf_counter() - start - cue_seconds[0]
    timings["cue following"] = cue_seconds[0]
    start = time.perf_counter()
    result = analyse_answers(answers["main"], labels=LABELS, resamples=resamples, seed=0)
    accounting(manifest, prompts, answered, result["uar"])
    timings["statistics"] = time.perf_counter() - start
    return dict(seconds=sum(timings.values()), peak_mb=peak_mb(), parts=timings)


def run_stage(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--stage", *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--stage", nargs="+", help=argparse.SUPPRESS)  # internal: one stage in this process
    args = parser.parse_args()
    if args.stage:
        name, workdir, *rest = args.stage
        workdir = Path(workdir)
        if name == "fabricate":
            fabricate(workdir, *map(int, rest))
            out = {}
        elif name == "prompts":
            full, shards, only = rest
            out = stage_prompts(workdir, full == "1", int(shards), None if only == "all" else int(only))
        elif name == "predictions":
            out = stage_predictions(workdir)
        else:
            out = stage_analysis(workdir, int(rest[0]))
        print(json.dumps(out))
        return
    rows = []
    for size in args.sizes:
        evaluated, corpus, speakers, full = SIZES[size]
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            run_stage("fabricate", tmp, str(evaluated), str(corpus), str(speakers))
            whole = run_stage("prompts", tmp, str(int(full)), str(args.shards), "all")
            one = run_stage("prompts", tmp, str(int(full)), str(args.shards), "0")
            run_stage("predictions", tmp)
            analysis = run_stage("analysis", tmp, str(args.resamples))
        conditions = 33 if full else 26
        row = dict(
            study=f"{size}: {evaluated:,} x {conditions}",
            prompts_all_s=whole["seconds"],
            prompts_all_mb=whole["peak_mb"],
            prompts_parquet_mb=whole["parquet_mb"],
            prompts_shard_s=one["seconds"],
            prompts_shard_mb=one["peak_mb"],
            analysis_s=analysis["seconds"],
            analysis_mb=analysis["peak_mb"],
            **{f"analysis: {k}": v for k, v in analysis["parts"].items()},
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    if len(table) >= 2:  # linear in utterances x conditions: extrapolate from the two largest
        a, b = table.iloc[-2], table.iloc[-1]
        na = SIZES[args.sizes[-2]][0] * (33 if SIZES[args.sizes[-2]][3] else 26)
        nb = SIZES[args.sizes[-1]][0] * (33 if SIZES[args.sizes[-1]][3] else 26)
        target = 1_000_000 * 33
        projected = {"study": "projected: 1,000,000 x 33"}
        for column in table.columns[1:]:
            slope = (b[column] - a[column]) / (nb - na)
            projected[column] = b[column] + slope * (target - nb)
        table.loc[len(table)] = projected
    print(table.to_markdown(index=False, floatfmt=".1f"))


if __name__ == "__main__":
    main()
