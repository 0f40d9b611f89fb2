"""The released models' widths through cuealign's loader, prompt and score path: each family at
its release's dimensions, cut to 2 layers (benchmarks/real_size.py runs the full depth), random
float32 weights (this CPU has no fast bfloat16 kernels: benchmarks/README.md, "Real size")."""

import importlib.util
import json
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
    folder = real_size.build(family, tmp_path / family, layers=2, dtype="float32")
    config = json.loads((folder / "config.json").read_text())
    for part, values in RELEASED[family].items():  # the release's widths, 2 layers deep
        assert {k: config[part][k] for k in values if k in ("hidden_size", "d_model", "num_key_value_heads")} == {
            k: v for k, v in values.items() if k in ("hidden_size", "d_model", "num_key_value_heads")
        }
    result = real_size.measure(family, folder, seconds=2.0)
    assert result["dtype"] == "float32" and result["finite"]
    assert result["audio_tokens"] == memory.audio_tokens(family, 2.0)  # the memory estimate's count
    assert result["max_diff"] < 1e-4 and result["same_argmax"]
