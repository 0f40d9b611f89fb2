"""Microsoft's CLAP (msclap, the paper's CLAP) behind the same interface: tiny random-weight
models of both released architectures (2022: Cnn14 + BERT; 2023: HTSAT + GPT-2) in the released
layout, held to msclap's own modules' scores for the same files (tests/reference/msclap.json,
made by tests/reference/msclap_scores.py in an environment with msclap 1.3.4), through the
inference runner; checkpoints that would run code, lack weights or are not msclap's are refused."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from cuealign.cache import AnswerStore
from cuealign.interventions import Condition
from cuealign.models.inference import predict_shard
from cuealign.models.loader import load_backend
from cuealign.models.registry import check_model_spec
from cuealign.models.tiny import build_tiny_msclap
from cuealign.workflow.config import model_entry
from tests.fakes import CodeRunningPickle
from tests.reference.clips import RATE, clips

REFERENCE = json.loads((Path(__file__).parents[1] / "reference" / "msclap.json").read_text())
LABELS = REFERENCE["labels"]
WORDS = ["the", "speaker", "sounds", "angry", "happy", "neutral", "sad"]


@pytest.fixture(scope="module", params=["2022", "2023"])
def folder(request, tmp_path_factory):
    return build_tiny_msclap(tmp_path_factory.mktemp("msclap") / request.param, request.param, WORDS)


def spec(path, **changes):
    return model_entry(path, "msclap", **{"dtype": "auto", "label_prompt": REFERENCE["prompt"]} | changes)


def test_msclap_scores_as_msclap_itself(folder):
    backend = load_backend(spec(folder))
    version = folder.name
    reference = REFERENCE[version]
    assert backend.version == version and backend.window_s == {"2022": 5.0, "2023": 7.0}[version]
    # the front end computed here as torchlibrosa computes it (the file carries it too)
    assert reference["front_end_max_abs_difference_from_torchlibrosa"] < 1e-6
    for name, clip in clips(int(backend.window_s)).items():
        expected = reference["clips"][name]
        assert expected["seconds"] == pytest.approx(len(clip) / RATE)
        scores = backend.score(clip, "p", ["", " cues"], LABELS)
        assert scores.shape == (2, 4) and np.array_equal(scores[0], scores[1])  # no token channel
        np.testing.assert_allclose(scores[0], expected["log_softmax"], atol=1e-5)
        with torch.inference_mode():
            audio = torch.nn.functional.normalize(backend.model.audio_embedding(backend.waveform(clip)), dim=-1)
        np.testing.assert_allclose(audio[0].numpy(), expected["audio_embedding"], atol=2e-6)
    short, window = (REFERENCE[version]["clips"][k]["audio_embedding"] for k in ("short", "window"))
    assert np.abs(np.subtract(short, window)).max() > 1e-3  # the audio reaches the embedding
    end = " <|endoftext|>" if version == "2023" else ""
    assert backend.prompts(["sad"]) == [f"the speaker sounds sad{end}"]  # msclap appends GPT-2's end token


def test_a_shard_through_the_runner_cut_to_the_window(folder, tmp_path):
    rows = []
    for i, seconds in enumerate([1.5, 9.0]):  # 9 s: longer than either version's window
        path = tmp_path / f"u{i}.wav"
        sf.write(path, (0.1 * np.random.default_rng(i).standard_normal(int(16000 * seconds))).astype(np.float32), 16000)
        rows.append(
            dict(utt_id=f"u{i}", **Condition("none").as_row(), audio="original", prefix_text="p", suffix_text="",
                 label="sad", split="test", speaker="s0", path=str(path), sha256=f"h{i}")
        )  # fmt: skip
    backend = load_backend(spec(folder))
    table = predict_shard(
        pd.DataFrame(rows), backend, labels=LABELS, spec=spec(folder),
        cache=AnswerStore(tmp_path / "store", "p"), progress=False,
    )  # fmt: skip
    assert len(table) == 2 and set(table["backend"]) == {"transformers:msclap"}
    assert table[[f"logprob_{label}" for label in LABELS]].notna().all().all() and table["pred"].isin(LABELS).all()
    policy = table.set_index("utt_id")["audio_policy"]
    assert policy["u0"] == "full" and policy["u1"] != "full"  # the runner cut the long clip to the window


def test_a_checkpoint_that_would_run_code_is_refused(folder, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    marker = tmp_path / "ran"
    torch.save({"model": {"logit_scale": CodeRunningPickle(marker)}}, next(bad.glob("CLAP_weights_*.pth")))
    with pytest.raises(ValueError, match="(?s)holds more than tensors.*hf download microsoft/msclap CLAP_weights_"):
        load_backend(spec(bad))
    assert not marker.exists()


def test_a_checkpoint_without_a_weight_or_not_msclaps_is_refused(folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    file = next(broken.glob("CLAP_weights_*.pth"))
    state = torch.load(file, weights_only=True)["model"]
    torch.save({"model": {k: v for k, v in state.items() if "projection.linear2" not in k}}, file)
    with pytest.raises(ValueError, match=r"no weights for \['audio_encoder.projection.linear2.weight'"):
        load_backend(spec(broken))
    torch.save({"model": {k: v for k, v in state.items() if not k.startswith("audio_encoder.base")}}, file)
    with pytest.raises(ValueError, match="not an msclap CLAP checkpoint.*clapcap"):
        load_backend(spec(broken))


# all of the text model, or a part (GPT-2's second block, BERT's encoder)
@pytest.mark.parametrize("lacks", ["", "h.1.", "encoder."])
def test_a_checkpoint_without_its_text_model_takes_it_from_the_text_folder(folder, tmp_path, lacks):
    from transformers import AutoConfig, AutoModel

    lean = tmp_path / "lean"
    shutil.copytree(folder, lean)
    file = next(lean.glob("CLAP_weights_*.pth"))
    state = torch.load(file, weights_only=True)["model"]
    kept = {k: v for k, v in state.items() if not k.startswith(f"caption_encoder.base.{lacks}")}
    if len(kept) == len(state):
        pytest.skip(f"{folder.name}'s text model has no {lacks}")
    torch.save({"model": kept}, file)
    with pytest.raises(ValueError, match="lacks .* text model weights .* put the text model's model.safetensors"):
        load_backend(spec(lean))
    text = AutoModel.from_config(AutoConfig.from_pretrained(lean / "text"))
    text.load_state_dict({k.removeprefix("caption_encoder.base."): v for k, v in state.items()
                          if k.startswith("caption_encoder.base.")}, strict=False)  # fmt: skip
    text.save_pretrained(lean / "text")
    clip = clips(2)["short"]
    expected = load_backend(spec(folder)).score(clip, "p", [""], LABELS)
    np.testing.assert_array_equal(load_backend(spec(lean)).score(clip, "p", [""], LABELS), expected)


def test_an_msclap_folder_is_checked_before_any_job(folder, tmp_path):
    check_model_spec("m", spec(folder), ["demo"])
    version = folder.name
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    file = broken / f"CLAP_weights_{version}.pth"
    other = "2023" if version == "2022" else "2022"
    file.rename(broken / f"CLAP_weights_{other}.pth")  # the other version's name: its text model is not here
    with pytest.raises(ValueError, match=f"CLAP_weights_{other}.pth reads text with"):
        check_model_spec("m", spec(broken), ["demo"])
    (broken / f"CLAP_weights_{other}.pth").unlink()
    with pytest.raises(ValueError, match="holds no CLAP_weights"):
        check_model_spec("m", spec(broken), ["demo"])
    with pytest.raises(ValueError, match="msclap runs in its checkpoint's float32"):
        check_model_spec("m", spec(folder, dtype="bfloat16"), ["demo"])
    with pytest.raises(ValueError, match="mode: 'generate', but clap only scores"):
        check_model_spec("m", spec(folder, mode="generate"), ["demo"])
