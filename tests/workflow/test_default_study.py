"""The default config: its whole DAG, and a scaled-down run of it end to end with the report."""

import base64
import copy
import html
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.workflow.conftest import REPO, snakemake, write_config

# the tables and pages the report shows inline
REPORT_PAGES = (
    "table_main.html",
    "variants.html",
    "table_interventions.html",
    "comparisons.html",
    "cue_following.html",
    "accounting.html",
    "models_table.html",
    "config.html",
    "token_association.html",
    "token_correlations.html",
)


def planned_jobs(workflow) -> dict[str, int]:
    """The jobs a dry run would run, by rule."""
    result = snakemake(workflow, "--dry-run", "--cores", "2")
    return {
        rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.MULTILINE) if rule != "total"
    }


def test_default_config_dry_runs_the_whole_study(workflow):
    jobs = planned_jobs(workflow)
    for rule in (
        "synthesize_corpus",
        "bin_tokens",
        "build_prompts",
        "finetune",
        "run_inference",
        "analyse_predictions",
        "plot_results",
        "collect_main_tables",
    ):
        assert jobs.get(rule, 0) >= 1, f"{rule} is not in the default run: {jobs}"


@pytest.mark.slow
def test_the_default_study_runs_end_to_end_with_its_report(default_study):
    workflow, _ = default_study
    results = workflow / "results/demo"
    demo = yaml.safe_load((REPO / "config.yaml").read_text())["corpora"]["demo"]
    manifest = pd.read_parquet(results / "manifest.parquet")
    test = manifest[manifest["split"] == "test"]
    assert len(test) == 2 * demo["test_speakers_per_gender"] * 4 * demo["utterances_per_class"]  # speakers x classes

    # the cue block lists the concepts in config order (tokens.concepts), voice quality last
    aligned = pd.read_parquet(results / "prompts/0.parquet").query("condition == 'aligned'")["suffix_text"].iloc[0]
    assert re.findall(r"([A-Z_]+)=", aligned) == [
        "ENERGY",
        "PITCH",
        "BRIGHTNESS",
        "DYNAMICS",
        "FORMANTS",
        "VOICE_QUALITY",
    ]

    history = pd.read_csv(results / "demo-alm/finetune/training_log.csv")
    epochs = yaml.safe_load((REPO / "config.yaml").read_text())["finetune"]["demo-alm"]["epochs"]
    assert history["epoch"].max() == epochs and history["loss"].notna().all()
    assert (results / "demo-alm/finetune/model/model.safetensors").is_file()
    # computed portably: torch's (recorded by the inference jobs) and NumPy's (the analysis job)
    run = json.loads((results / "demo-alm/RUN.json").read_text())
    assert run["model_source"]["numerics"] == "portable" and run["numpy_simd"] == "baseline"

    predictions = pd.concat(pd.read_parquet(p) for p in sorted((results / "demo-alm/predictions").glob("*.parquet")))
    conditions = set(predictions["condition"])
    assert len(conditions) == 33 and {"none", "aligned", "conflict", "tokens_only", "swap_PITCH"} <= conditions
    # three wordings of the prompt (config.yaml's prompt.variants), each asked of every utterance x condition
    wordings = ["main", "feel", "measured"]
    assert sorted(predictions["variant"].unique()) == sorted(wordings)
    assert len(predictions) == len(test) * 33 * 3
    assert not predictions.duplicated(["utt_id", "condition", "variant"]).any()
    assert (predictions["model"] == "results/demo/demo-alm/finetune/model").all()  # the trained model was probed
    uar = pd.read_csv(results / "demo-alm/analysis/uar.csv").set_index("condition")
    assert uar["uar"].between(0, 1).all() and (uar.loc[["none", "aligned"], "n"] == len(test)).all()
    assert json.loads((results / "demo-alm/analysis/spearman.json").read_text())["points"] == 6  # levels
    # what corruption really changed: nothing at p = 0, about 4/5 at p = 1 (5-token vocabularies)
    changed = uar.set_index(uar.index)["changed_share"]
    assert changed["corrupt_p0_mean"] == 0 and 0.7 < changed["corrupt_p1_mean"] < 0.9

    # uar.csv is the main wording's; variants.csv holds every wording, analysed the same way
    variants = pd.read_csv(results / "demo-alm/analysis/variants.csv")
    assert list(dict.fromkeys(variants["variant"])) == wordings
    main = variants[(variants["variant"] == "main") & (variants["statistic"] == "uar")].set_index("name")
    np.testing.assert_allclose(main.loc[uar.index, "estimate"], uar["uar"])
    feel = predictions[(predictions["variant"] == "feel") & (predictions["condition"] == "none")]
    by_hand = np.mean([(feel.loc[feel["label"] == c, "pred"] == c).mean() for c in sorted(feel["label"].unique())])
    feel_uar = variants.query("variant == 'feel' and statistic == 'uar' and name == 'none'")["estimate"].iloc[0]
    assert feel_uar == pytest.approx(by_hand)
    summary = pd.read_csv(results / "demo-alm/analysis/variants_summary.csv").set_index(["statistic", "name"])
    assert summary.loc[("delta_uar", "aligned - none"), "n_variants"] == 3
    main_table = pd.read_csv(results / "demo-alm/analysis/table_main.csv")
    assert main_table["aligned - none in all 3 wordings"].iloc[0].startswith(("yes: holds in", "no: holds in"))

    report = (workflow / "report.html").read_text()
    figures = ("token_distributions.png", "loss_curve.png", "confusion.png", "corruption_curve.png", "variants.png")
    for name in (*figures, *REPORT_PAGES):
        assert name in report, f"{name} is not in the report"

    # the prompts and predictions carry the condition and its tokens as data
    assert {"kind", "p", "seed", "concept", "token.ENERGY", "token.VOICE_QUALITY"} <= set(predictions.columns)
    main_rows = predictions[predictions["variant"] == "main"]
    conflict = main_rows[main_rows["condition"] == "conflict"].set_index("utt_id")
    aligned_rows = main_rows[main_rows["condition"] == "aligned"].set_index("utt_id").loc[conflict.index]
    flipped = {"VERY_LOW": "VERY_HIGH", "LOW": "HIGH", "MID": "MID", "HIGH": "LOW", "VERY_HIGH": "VERY_LOW"}
    assert (conflict["token.PITCH"] == aligned_rows["token.PITCH"].map(flipped).fillna("UNVOICED")).all()

    # nothing changed: a rerun does nothing
    rerun = snakemake(workflow, "--cores", "2")
    assert "Nothing to be done" in rerun.stdout + rerun.stderr

    # what reruns when one setting changes (the README's table)
    def after(change) -> set[str]:
        config = yaml.safe_load((workflow / "config.yaml").read_text())
        change(config)
        write_config(workflow, config)
        jobs = set(planned_jobs(workflow)) - {"all"}
        write_config(workflow, original)
        return jobs

    original = yaml.safe_load((workflow / "config.yaml").read_text())
    (workflow / "config.yaml").write_text(yaml.safe_dump(original, sort_keys=True))  # keys moved: nothing reruns
    assert after(lambda c: None) == set()
    # any config change also rewrites the report's config page and its landing page (seconds)
    analysis_only = {"analyse_predictions", "plot_results", "collect_main_tables", "write_config_page", "landing_page"}
    assert after(lambda c: c.setdefault("analysis", {}).update(resamples=300)) == analysis_only
    # and says why in a few lines: the config's hash changed, not the whole config in every reason
    changed = copy.deepcopy(original)
    changed.setdefault("analysis", {})["resamples"] = 300
    write_config(workflow, changed)
    dry = snakemake(workflow, "--dry-run", "--cores", "2")
    write_config(workflow, original)
    said = dry.stdout + dry.stderr
    assert re.search(r"before: 'cfg-[0-9a-f]{12}' now: 'cfg-[0-9a-f]{12}'", said) and len(said) < 12_000, said
    assert after(lambda c: c["finetune"]["demo-alm"].update(epochs=3)) == {"finetune", "run_inference"} | analysis_only
    assert (
        after(lambda c: c["conditions"].update(corrupt_p=[0.0, 0.5]))
        == {"build_prompts", "run_inference"} | analysis_only
    )
    # another prompt wording: new prompts and answers, the fine-tuned model (main wording) stays
    assert (
        after(lambda c: c["prompt"]["variants"].update(terse={"cues": " Cues: {tokens}."}))
        == {"build_prompts", "run_inference"} | analysis_only
    )
    assert (
        after(lambda c: c["corpora"]["demo"]["tokens"].update(normalise="dataset"))
        == {"bin_tokens", "plot_token_diagnostics", "build_prompts", "finetune", "run_inference"} | analysis_only
    )


def _readme_block() -> str:
    from cuealign.readme import BEGIN, END

    return (REPO / "README.md").read_text().split(BEGIN, 1)[1].split(END, 1)[0].strip()


@pytest.mark.slow
def test_the_readme_quotes_what_the_default_run_produces(default_study):
    """Every demo number in the README and every figure under docs/ is what the code makes now."""
    from matplotlib.image import imread

    from cuealign.readme import FIGURES, demo_section

    workdir, _ = default_study
    assert _readme_block() == demo_section(workdir).strip(), (
        "README.md's demo results differ from the default run: run `snakemake --cores 2` and "
        "`python -m cuealign.readme`, then commit README.md and docs/"
    )
    from cuealign.readme import DEMO_DOC, MODEL_BEGIN, MODEL_END, model_section

    described = (REPO / DEMO_DOC).read_text().split(MODEL_BEGIN, 1)[1].split(MODEL_END, 1)[0].strip()
    assert described == model_section(workdir).strip(), f"{DEMO_DOC}'s demo model differs from the default run's"
    for target, source in FIGURES.items():
        committed, produced = imread(REPO / target), imread(workdir / source)
        assert committed.shape == produced.shape, f"{target} is not the run's {source}"
        assert float(abs(committed - produced).mean()) < 0.002, f"{target} is not the run's {source}"


@pytest.mark.slow
def test_the_analysis_from_counts_equals_the_direct_one_on_the_demo(default_study):
    """The analysis job reduces each predictions shard to counts (cuealign.analysis.answers.Answers); every
    table it wrote must be what the direct analysis of the whole predictions table gives (the frozen
    tests/reference_analysis.py), in every wording."""
    from cuealign.workflow.config import load_config
    from tests import reference_analysis
    from tests.unit.test_sufficient_statistics import TEST_COLUMNS

    workdir, _ = default_study
    config = load_config(workdir / "config.yaml")  # with the schema's defaults, as the workflow has it
    results = workdir / "results/demo/demo-alm"
    predictions = pd.concat([pd.read_parquet(p) for p in sorted((results / "predictions").glob("*.parquet"))])
    prompts = pd.concat([pd.read_parquet(p) for p in sorted((workdir / "results/demo/prompts").glob("*.parquet"))])
    conditions = list(dict.fromkeys(prompts["condition"]))
    labels = sorted(predictions["label"].unique())
    options = config["analysis"]
    settings = dict(labels=labels, expected_conditions=conditions, resamples=options["resamples"], seed=options["seed"])
    settings |= dict(level=options["ci_level"], ci_method=options["ci_method"], min_speakers=options["min_speakers"])
    direct = {
        variant: reference_analysis.analyse(rows, **settings, families=options["families"])
        for variant, rows in predictions.groupby("variant")
    }
    assert len(direct) == 3
    written = {name: pd.read_csv(results / f"analysis/{name}.csv") for name in ("uar", "comparisons", "shifts")}
    for name, table in written.items():  # through CSV as the job wrote them, to compare like with like
        expected = pd.read_csv(io.StringIO(direct["main"][name].to_csv(index=False)))
        # the frozen reference tests as before analysis.target; the tests themselves are checked
        # against their definitions in tests/unit/test_analysis.py
        columns = [c for c in expected.columns if name != "comparisons" or c not in TEST_COLUMNS]
        pd.testing.assert_frame_equal(table[columns], expected[columns], check_exact=False, rtol=1e-12, obj=name)
    confusion = pd.read_csv(results / "analysis/confusion.csv")
    assert confusion["count"].tolist() == direct["main"]["confusion"]["count"].tolist()
    every = pd.read_csv(results / "analysis/variants.csv").set_index(["variant", "statistic", "name"])
    for variant, result in direct.items():
        for row in result["uar"].itertuples():
            assert every.loc[(variant, "uar", row.condition), "estimate"] == pytest.approx(row.uar, abs=1e-12)
        for row in result["comparisons"].itertuples():
            got = every.loc[(variant, "delta_uar", row.comparison)]
            assert got["estimate"] == pytest.approx(row.delta_uar, abs=1e-12)


@pytest.mark.slow
def test_the_terminal_shows_progress_and_no_noise(default_study):
    _, run = default_study
    printed = run.stdout + run.stderr
    assert "[demo/demo-alm/finetune] INFO: epoch 20/20: mean loss" in printed
    assert re.search(r"\[demo/demo-alm/run_inference/\d\] INFO: \d+ predictions \(\d+ computed", printed)
    # the accounting line, as the README quotes it
    quoted = re.search(r"`(demo / demo-alm: [^`]+)`", (REPO / "README.md").read_text())
    assert quoted and " ".join(quoted[1].split()) in " ".join(printed.split()), "README's accounting line drifted"
    for noise in ("FutureWarning", "DeprecationWarning", "it/s]"):
        assert noise not in printed, f"{noise!r} reached the terminal"


CHROMIUM = next(
    (shutil.which(name) for name in ("chromium-headless-shell", "chromium", "chromium-browser") if shutil.which(name)),
    None,
)


def _chromium_dom(page: Path, *flags: str) -> str:
    """The DOM a real browser (headless Chromium) makes of a page, its scripts run."""
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout


def _rendered_text(page: Path) -> str:
    """What a real browser renders of a page, scripts run, as text."""
    dom = _chromium_dom(page, "--virtual-time-budget=15000")
    return html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"(?s)<(script|style)[^>]*>.*?</\1>", " ", dom)))


# What a report page is given on a 1,400 px laptop screen: the report's menu takes ~280 px and
# shows a table page in a frame as wide as the rest (an iframe, class w-full).
FRAME_PX = 1400 - 280
MEASURE = """<script>window.addEventListener('load', () => {
  const frames = [...document.querySelectorAll('div.frame')].map(f => [f.scrollWidth, f.clientWidth]);
  const right = Math.max(0, ...[...document.querySelectorAll('td, th')].map(c => c.getBoundingClientRect().right));
  const out = document.createElement('pre'); out.id = 'measured';
  out.textContent = JSON.stringify({page: document.documentElement.scrollWidth, view: innerWidth, frames, right});
  document.body.appendChild(out);
});</script>"""


def _measured(page: Path, width: int) -> dict:
    """Widths a real browser lays ``page`` out with in a ``width`` px window: the page's, each
    table frame's (scroll and visible), the right edge of the rightmost cell."""
    probe = page.with_name(page.stem + "-measured.html")
    probe.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    dom = _chromium_dom(probe, f"--window-size={width},900")
    return json.loads(html.unescape(re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S).group(1)))


@pytest.mark.slow
def test_the_report_shows_a_landing_text_and_readable_tables_in_a_browser(default_study, tmp_path):
    assert CHROMIUM, "headless Chromium is needed (.ci/run installs chromium-headless-shell)"
    workdir, _ = default_study
    report = workdir / "report.html"
    landing = " ".join(_rendered_text(report).split())
    assert "do audio-language models use acoustic cues?" in landing and "Where to look" in landing
    # the landing page answers the question: the headline numbers of table_main.csv
    headline = pd.read_csv(workdir / "results/demo/demo-alm/analysis/table_main.csv", dtype=str).iloc[0]
    numbers = [headline[c] for c in ("UAR without tokens", "UAR with tokens", "delta", "95% CI of delta", "p")]
    assert "Headline numbers" in landing and all(n in landing for n in numbers), numbers

    text = report.read_text()
    results = json.loads(re.search(r"var results = (\{.*?\});?\s*</script>", text, re.S).group(1))
    pages = {Path(path).name: entry for path, entry in results.items() if path.endswith(".html")}
    for name in REPORT_PAGES:
        assert name in pages, f"{name} is not in the report"
        assert pages[name]["mime_type"] == "text/html"  # shown inline (an iframe), not only for download
    # the headline table, rendered by the browser, shows the numbers of table_main.csv
    uri = pages["table_main.html"]["data_uri"]
    page = tmp_path / "table_main.html"
    page.write_bytes(base64.b64decode(uri.split(",", 1)[1]))
    shown = " ".join(_rendered_text(page).split())
    main = pd.read_csv(workdir / "results/demo/demo-alm/analysis/table_main.csv", dtype=str).iloc[0]
    for column in ("UAR without tokens", "UAR with tokens", "delta", "95% CI of delta", "test", "p", "about"):
        assert f"{column}" in shown and main[column] in shown, f"{column} {main[column]} is not shown"
    # at a laptop's 1,400 px every page fits its frame: the page never scrolls sideways; the
    # headline, the protocol card, cue following and the accounting show every cell without
    # scrolling; a wider table (every condition, the comparisons) scrolls inside its own frame
    for name in (*REPORT_PAGES, "protocol_card.html"):
        page = tmp_path / name
        page.write_bytes(base64.b64decode(pages[name]["data_uri"].split(",", 1)[1]))
        measured = _measured(page, FRAME_PX)
        assert measured["page"] <= measured["view"], f"{name} scrolls sideways at {FRAME_PX} px: {measured}"
        assert measured["frames"] or name == "config.html", f"{name} has no table frame"
        if name in ("table_main.html", "protocol_card.html", "cue_following.html", "accounting.html"):
            assert all(scroll <= visible for scroll, visible in measured["frames"]), f"{name}: {measured}"
            assert measured["right"] <= measured["view"], f"{name}: a cell off-screen: {measured}"


def test_the_readme_describes_the_default_corpus_as_configured():
    import yaml

    demo = yaml.safe_load((REPO / "config.yaml").read_text())["corpora"]["demo"]
    speakers = demo["female_speakers"] + demo["male_speakers"]
    test = 2 * demo["test_speakers_per_gender"]
    readme = " ".join((REPO / "README.md").read_text().split())
    first = demo["female_speakers"] - demo["test_speakers_per_gender"] + 1
    held_out = f"F{first:02d}-F{demo['female_speakers']:02d} and M{first:02d}-M{demo['male_speakers']:02d}"
    assert f"synthesises a corpus of {speakers} speakers ({held_out} held out as the test split)" in readme
    assert (
        f"trains a demo ALM on the {speakers - test} train speakers and probes it on the {test} unseen ones" in readme
    )
    from cuealign.interventions import conditions_from_config
    from cuealign.prompts import prompt_variants
    from cuealign.tokens import VOICE_QUALITY
    from cuealign.workflow.config import load_config

    config = load_config(REPO / "config.yaml")
    concepts = [*config["tokens"]["concepts"], VOICE_QUALITY]
    conditions = len(conditions_from_config(config["conditions"], concepts))
    wordings = ["one", "two", "three", "four", "five"][len(prompt_variants(config["prompt"])) - 1]
    assert f"under all {conditions} conditions, each in {wordings} wordings of the prompt" in readme


@pytest.mark.slow
@pytest.mark.workflow
def test_the_quick_demo_runs_every_stage_on_its_own(workflow):
    """config/quick-demo.yaml with --replace-workflow-config: the whole chain on a small corpus in
    about a minute, and only that study (results/quick, no results/demo): a starter config run end
    to end exactly as the README says."""
    (workflow / "config").mkdir()
    shutil.copy(REPO / "config/quick-demo.yaml", workflow / "config/quick-demo.yaml")
    run = snakemake(
        workflow, "--cores", "2", "--configfile", "config/quick-demo.yaml", "--replace-workflow-config", timeout=600
    )
    assert not (workflow / "results/demo").exists()
    uar = pd.read_csv(workflow / "results/quick/quick-alm/analysis/uar.csv").set_index("condition")
    assert (uar.loc[["none", "aligned", "conflict", "tokens_only"], "n"] == 48).all() and uar["uar"].between(0, 1).all()
    assert "quick / quick-alm: 96 in the manifest" in run.stderr
    assert (workflow / "results/models_table.md").read_text().count("| quick ") == 1
