"""The released models' widths through cuealign's loader, prompt and score path: each family at
its release's dimensions, cut to 2 layers (benchmarks/real_size.py runs the full depth), random
weights saved in bfloat16 as released and loaded as float32, in which the cached path must equal
the processor's whole prompt to 1e-4 (in bfloat16 the two differ by rounding, at the release's
depth by up to 0.12: benchmarks/README.md, "Real size"; tests/unit/test_real_models.py runs every
family in bfloat16 at tiny size).

Each model is ~1.7 B parameters: about 3.5 GB on disk in bfloat16 (6.5 GB in float32 ran a CI machine's
disk full), removed when its test ends; where the temporary folder's disk has less free, the test
is skipped and says how much it needs."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from cuealign.models import memory
from tests.real_models import RELEASED

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "real_size.py"


@pytest.fixture(scope="module")
def real_size():
    spec = importlib.util.spec_from_file_location("real_size", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2-audio", "qwen2.5-omni", "audio-flamingo-3"])
def test_a_released_size_model_scores_as_its_processor(real_size, family, tmp_path):
    free_gb, need_gb = shutil.disk_usage(tmp_path).free / 1e9, 4.5  # 3.5 GB of weights, 1 GB to spare
    if free_gb < need_gb:
        pytest.skip(f"a 2-layer {family} at full widths needs {need_gb} GB free in {tmp_path}; {free_gb:.1f} GB are")
    try:
        folder = real_size.build(family, tmp_path / family, layers=2, dtype="bfloat16")
        check(real_size, family, folder)
    finally:
        shutil.rmtree(tmp_path / family, ignore_errors=True)


def check(real_size, family, folder):
    config = json.loads((folder / "config.json").read_text())
    for part, values in RELEASED[family].items():  # the release's widths, 2 layers deep
        assert {k: config[part][k] for k in values if k in ("hidden_size", "d_model", "num_key_value_heads")} == {
            k: v for k, v in values.items() if k in ("hidden_size", "d_model", "num_key_value_heads")
        }
    assert config["dtype"] == "bfloat16"  # saved as released
    result = real_size.measure(family, folder, seconds=2.0, dtype="float32")
    assert result["dtype"] == "float32" and result["finite"]
    assert result["audio_tokens"] == memory.audio_tokens(family, 2.0)  # the memory estimate's count
    assert result["max_diff"] < 1e-4 and result["same_argmax"]
