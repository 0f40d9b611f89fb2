"""The corpus stage as a user runs it: snakemake on the workflow, outputs checked for content."""

import pandas as pd
import yaml

from cuealign.corpora.manifest import MANIFEST_COLUMNS
from tests.fakes import make_iemocap
from tests.workflow.conftest import snakemake, write_config

SMALL_DEMO = {
    "type": "synthetic",
    "seed": 0,
    "female_speakers": 2,
    "male_speakers": 2,
    "utterances_per_class": 2,
    "test_speakers_per_gender": 1,
}


def test_default_config_dry_runs(workflow):
    out = snakemake(workflow, "-n", "--quiet", "rules")
    assert "synthesize_corpus" in out.stdout and "build_manifest" in out.stdout


def test_lint_is_clean(workflow):
    out = snakemake(workflow, "--lint", check=False)
    assert "Congratulations, your workflow is in a good condition" in out.stdout + out.stderr, out.stdout + out.stderr


def test_corpus_stage_runs_and_accounts_for_every_file(workflow, tmp_path):
    # one real corpus with a broken file beside the synthetic one
    iemocap = make_iemocap(tmp_path / "IEMOCAP")
    broken = iemocap / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav"
    broken.write_bytes(b"RIFF")
    write_config(workflow, {"corpora": {"demo": SMALL_DEMO, "iem": {"type": "iemocap", "root": str(iemocap)}}})
    manifests = ["results/demo/manifest.parquet", "results/iem/manifest.parquet"]
    snakemake(workflow, "--cores", "2", *manifests)

    demo = pd.read_parquet(workflow / "results/demo/manifest.parquet")
    assert list(demo.columns) == MANIFEST_COLUMNS
    assert len(demo) == 4 * 4 * 2 and (demo["status"] == "ok").all()
    assert set(demo["label"]) == {"angry", "happy", "neutral", "sad"}
    assert set(demo.loc[demo["split"] == "test", "speaker"]) == {"F02", "M02"}
    truth = pd.read_csv(workflow / "resources/synthetic/demo/ground_truth.csv")
    assert demo["utt_id"].tolist() == truth["utt_id"].tolist()
    assert (demo["sample_rate"] == 16000).all() and demo["sha256"].str.len().eq(64).all()

    iem = pd.read_parquet(workflow / "results/iem/manifest.parquet")
    assert len(iem) == 11
    bad = pd.read_csv(workflow / "results/iem/bad_files.csv")
    assert bad["utt_id"].tolist() == ["Ses01F_impro01_F000"]
    assert bad["status"].iloc[0].startswith("unreadable")
    log = (workflow / "logs/iem/build_manifest.log").read_text()
    assert "11 utterances, 10 ok, 1 failed" in log and "dropped by the label map" in log
    assert "Ses01F_impro01_F000.wav: unreadable" in log

    # nothing changed: nothing reruns
    again = snakemake(workflow, "--cores", "2", "-n", *manifests)
    assert "Nothing to be done" in again.stdout + again.stderr
    # the broken file fixed, a good one replaced by another recording (size and time kept, as
    # cp -p does): the manifest is rebuilt, reading only those two files again
    import os

    from tests.fakes import write_tone

    replaced = iemocap / "Session2/sentences/wav/Ses02F_impro02/Ses02F_impro02_F000.wav"
    times = (replaced.stat().st_atime_ns, replaced.stat().st_mtime_ns)
    old_hash = iem.set_index("utt_id").loc["Ses02F_impro02_F000", "sha256"]
    write_tone(replaced, freq=333.0, envelope=333)
    os.utime(replaced, ns=times)
    plan = snakemake(workflow, "--cores", "2", "-n", "results/iem/manifest.parquet").stdout
    assert "rule build_manifest:" in plan  # older than the manifest, and still seen
    write_tone(broken, freq=300.0, envelope=300)
    snakemake(workflow, "--cores", "2", "results/iem/manifest.parquet")
    iem = pd.read_parquet(workflow / "results/iem/manifest.parquet").set_index("utt_id")
    assert (iem["status"] == "ok").all() and iem.loc["Ses02F_impro02_F000", "sha256"] != old_hash
    log = (workflow / "logs/iem/build_manifest.log").read_text()
    assert "audio checks: 2 files read, 9 unchanged since their last check" in log
    # a changed check threshold reruns the manifests, not the synthesis
    config = yaml.safe_load((workflow / "config.yaml").read_text())
    config["audio_checks"] = {"min_duration_s": 0.7}
    write_config(workflow, config)
    plan = snakemake(workflow, *manifests, "--cores", "2", "-n", "--quiet", "rules").stdout
    assert "build_manifest" in plan and "synthesize_corpus" not in plan


def test_fail_mode_stops_the_run_with_the_file_named(workflow, tmp_path):
    iemocap = make_iemocap(tmp_path / "IEMOCAP")
    (iemocap / "Session2/sentences/wav/Ses02F_impro02/Ses02F_impro02_M000.wav").unlink()
    write_config(
        workflow,
        {"corpora": {"iem": {"type": "iemocap", "root": str(iemocap)}}, "audio_checks": {"on_bad_audio": "fail"}},
    )
    out = snakemake(workflow, "--cores", "1", "results/iem/manifest.parquet", check=False)
    assert out.returncode != 0
    assert "Ses02F_impro02_M000.wav: missing" in out.stdout + out.stderr
    assert not (workflow / "results/iem/manifest.parquet").exists()


def test_config_typo_is_an_error_naming_the_key(workflow):
    write_config(workflow, {"corpra": {"demo": SMALL_DEMO}})
    out = snakemake(workflow, "-n", check=False)
    assert out.returncode != 0
    assert "'corpra' was unexpected" in out.stderr + out.stdout


def test_missing_corpus_root_is_an_error_before_any_job(workflow, tmp_path):
    write_config(workflow, {"corpora": {"iem": {"type": "iemocap", "root": str(tmp_path / "nowhere")}}})
    out = snakemake(workflow, "-n", check=False)
    assert out.returncode != 0
    assert "IEMOCAP session 1" in out.stderr + out.stdout and "is not a folder" in out.stderr + out.stdout


def test_iemocap_sized_corpus_dry_runs(workflow, tmp_path):
    # 5,531 annotated utterances in 5 sessions (the published 4-way total); no audio is needed
    # to plan the DAG, since jobs are per corpus and shard, never per file.
    rows = []
    for i in range(5531):
        session = i % 5 + 1
        dialog = f"Ses0{session}F_impro{i // 50 % 9 + 1:02d}"
        rows.append((session, dialog, f"{'FM'[i % 2]}{i:04d}", ("ang", "hap", "neu", "sad", "exc")[i % 5]))
    root = make_iemocap(tmp_path / "IEMOCAP", rows=rows, write_audio=False)
    write_config(workflow, {"corpora": {"iem": {"type": "iemocap", "root": str(root)}}})
    out = snakemake(workflow, "-n", "--quiet", "rules")
    assert "build_manifest" in out.stdout and "extract_lld" in out.stdout
