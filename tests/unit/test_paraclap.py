"""ParaCLAP behind the same interface: a tiny random-weight model of the published architecture
(wav2vec2 + BERT, projection heads) in the released layout, against a from-definition computation,
through the inference runner; a checkpoint whose pickle would run code is refused."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from transformers import BertConfig, BertModel, BertTokenizer, Wav2Vec2Config, Wav2Vec2Model

from cuealign.cache import AnswerStore
from cuealign.interventions import Condition
from cuealign.models.inference import predict_shard
from cuealign.models.loader import load_backend
from cuealign.models.registry import check_model_spec
from cuealign.models.tiny import build_tiny_paraclap
from cuealign.workflow.config import model_entry
from tests.fakes import CodeRunningPickle

LABELS = ["angry", "happy", "neutral", "sad"]
WORDS = ["this", "person", "is", "feeling", "anger", "happy", "neutral", "sadness", "the", "speaker", "sounds"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_tiny_paraclap(tmp_path_factory.mktemp("paraclap") / "paraclap", WORDS)


def spec(path, **changes):
    return model_entry(path, "paraclap", **{"dtype": "auto"} | changes)


def voice(seed: int, seconds: float = 1.5) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32)


def by_definition(folder, audio: np.ndarray, prompts: list[str]) -> np.ndarray:
    """models_xin.py's forward written out on the checkpoint's tensors: mean-pooled wav2vec2 and
    BERT's [CLS], each through linear1 -> GELU -> linear2, added to linear1's output, layer norm;
    cosine similarity times exp(logit_scale); log-softmax over the prompts."""
    state = torch.load(folder / "best.pth.tar", weights_only=True)

    def part(prefix):
        return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}

    def project(x, name):
        w = part(f"{name}.")
        first = x @ w["linear1.weight"].T
        summed = first + torch.nn.functional.gelu(first) @ w["linear2.weight"].T
        return torch.nn.functional.layer_norm(summed, summed.shape[-1:], w["layer_norm.weight"], w["layer_norm.bias"])

    speech = Wav2Vec2Model(Wav2Vec2Config.from_pretrained(folder / "speech"))
    speech.load_state_dict(part("audio_branch.base."))
    text = BertModel(BertConfig.from_pretrained(folder / "text"))
    text.load_state_dict(part("text_branch.base."), strict=False)  # an older position_ids buffer may be absent
    tokens = BertTokenizer.from_pretrained(folder / "text")(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        a = project(speech.eval()(torch.tensor(audio)[None]).last_hidden_state.mean(1), "audio_projection")
        t = project(text.eval()(**tokens)[0][:, 0], "text_projection")
    a, t = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(t, dim=-1)
    return torch.log_softmax(state["logit_scale"].exp() * a @ t.T, dim=-1)[0].numpy()


def test_paraclap_scores_its_published_architecture_with_its_authors_prompts(folder):
    backend = load_backend(spec(folder))
    prompts = backend.prompts(LABELS)
    assert prompts == [
        "this person is feeling anger.",
        "this person is feeling happy.",
        "this person is feeling neutral.",
        "this person is feeling sadness.",
    ]  # the authors' IEMOCAP evaluation (evaluation/evaluate_iemo.py)
    scores = backend.score(voice(1), "p", ["", " cues"], LABELS)
    assert scores.shape == (2, 4) and np.allclose(scores[0], scores[1])  # no token channel
    np.testing.assert_allclose(scores[0], by_definition(folder, voice(1), prompts), atol=1e-5)
    assert np.abs(backend.score(voice(2), "p", [""], LABELS) - scores[:1]).max() > 1e-6  # the audio reaches it
    own = load_backend(spec(folder, label_prompt="the speaker sounds {label} ."))
    assert own.prompts(["sad"]) == ["the speaker sounds sad ."]  # a prompt of one's own: no word changes


def test_a_shard_through_the_runner(folder, tmp_path):
    path = tmp_path / "u.wav"
    sf.write(path, voice(3), 16000)
    rows = [
        dict(utt_id="u0", **Condition(c).as_row(), audio="original", prefix_text="p", suffix_text=s, label="sad",
             split="test", speaker="s0", path=str(path), sha256="h0")
        for c, s in zip(["none", "aligned"], ["", " Acoustic cues: ENERGY=HIGH."], strict=True)
    ]  # fmt: skip
    table = predict_shard(
        pd.DataFrame(rows), load_backend(spec(folder)), labels=LABELS, spec=spec(folder),
        cache=AnswerStore(tmp_path / "store", "p"), progress=False,
    )  # fmt: skip
    assert len(table) == 2 and set(table["backend"]) == {"transformers:paraclap"}
    assert table[[f"logprob_{label}" for label in LABELS]].notna().all().all() and table["pred"].isin(LABELS).all()


def test_a_checkpoint_that_would_run_code_is_refused(folder, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    marker = tmp_path / "ran"
    torch.save({"audio_projection.linear1.weight": CodeRunningPickle(marker)}, bad / "best.pth.tar")
    with pytest.raises(ValueError, match="holds more than tensors"):
        load_backend(spec(bad))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("remove", "message"),
    [("best.pth.tar", r"lacks \['best.pth.tar'\]"), ("text/vocab.txt", r"lacks \['text/vocab.txt'\]")],
)
def test_a_paraclap_folder_is_checked_before_any_job(folder, tmp_path, remove, message):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / remove).unlink()
    check_model_spec("m", spec(folder), ["demo"])
    with pytest.raises(ValueError, match=message):
        check_model_spec("m", spec(broken), ["demo"])
    with pytest.raises(ValueError, match="paraclap runs in its checkpoint's float32"):
        check_model_spec("m", spec(folder, dtype="bfloat16"), ["demo"])
