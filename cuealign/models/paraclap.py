"""ParaCLAP zero-shot (Jing et al., the paper's baseline closest to this study: a CLAP trained on
eGeMAPS-derived captions), behind the same shard-in/shard-out interface as CLAP.

The published architecture (github.com/KeiKinn/ParaCLAP, models_xin.py), built here from
transformers' own classes: a Wav2Vec2Model (audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim)
whose last hidden states are averaged over time, a BertModel (bert-base-uncased) whose [CLS]
output is taken, each followed by a projection head (linear, GELU, linear, dropout, residual,
layer norm; 768 out), and a learnt temperature. The released checkpoint (best.pth.tar on the hub
repository KeiKinn/paraclap) is that module's state dict; it is read with torch.load(weights_only=
True), which unpickles tensors only and refuses anything that would run code.

The model folder (models.<name>.path) holds the checkpoint and the two base models' small files:

    <path>/best.pth.tar                 hf download KeiKinn/paraclap best.pth.tar --local-dir <path>
    <path>/speech/config.json           hf download audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim
                                            config.json --local-dir <path>/speech
    <path>/text/config.json, vocab.txt, tokenizer_config.json
                                        hf download bert-base-uncased config.json vocab.txt
                                            tokenizer_config.json --local-dir <path>/text

Scores: the log-softmax over the labels of the scaled cosine similarities between the audio's
embedding and each label prompt's, as CLAP's. The prompts are the ParaCLAP authors' evaluation
wording ("this person is feeling {label}.", with anger for angry and sadness for sad, as their
IEMOCAP evaluation writes them) unless models.<name>.label_prompt is set. The raw waveform goes to
the encoder as the authors' evaluation gives it (no normalisation).
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, BertConfig, BertModel, Wav2Vec2Config, Wav2Vec2Model

from cuealign.models.devices import resolve_device
from cuealign.models.registry import DEFAULT_LABEL_PROMPT, Family
from cuealign.models.weights import DTYPES

log = logging.getLogger(__name__)

CHECKPOINT = "best.pth.tar"
AUTHORS_PROMPT = "this person is feeling {label}."
# the authors' IEMOCAP evaluation: candidates neutral, happy, anger, sadness
AUTHORS_WORDS = {"angry": "anger", "sad": "sadness"}
EMBEDDING = 768


class Projection(torch.nn.Module):
    """The ParaCLAP projection head (its state dict's names: linear1, linear2, layer_norm)."""

    def __init__(self, d_in: int, d_out: int, p: float = 0.5) -> None:
        super().__init__()
        self.linear1 = torch.nn.Linear(d_in, d_out, bias=False)
        self.linear2 = torch.nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = torch.nn.LayerNorm(d_out)
        self.drop = torch.nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.linear1(x)
        return self.layer_norm(first + self.drop(self.linear2(torch.nn.functional.gelu(first))))


class _Branch(torch.nn.Module):
    def __init__(self, base: torch.nn.Module) -> None:
        super().__init__()
        self.base = base


class ParaClapModule(torch.nn.Module):
    """The published module, with its state dict's names (audio_branch.base, text_branch.base,
    audio_projection, text_projection, logit_scale)."""

    def __init__(self, speech: Wav2Vec2Config, text: BertConfig, embedding_dim: int = EMBEDDING) -> None:
        super().__init__()
        self.audio_branch = _Branch(Wav2Vec2Model(speech))
        self.text_branch = _Branch(BertModel(text))
        self.audio_projection = Projection(speech.hidden_size, embedding_dim)
        self.text_projection = Projection(text.hidden_size, embedding_dim)
        self.logit_scale = torch.nn.Parameter(torch.ones([]) * np.log(1 / 0.07))

    def audio_embedding(self, waveform: torch.Tensor) -> torch.Tensor:
        hidden = self.audio_branch.base(waveform)["last_hidden_state"].mean(1)
        return self.audio_projection(hidden)

    def text_embedding(self, tokens: dict) -> torch.Tensor:
        return self.text_projection(self.text_branch.base(**tokens)[0][:, 0, :])


def read_checkpoint(path: Path, release: str = "hf download KeiKinn/paraclap best.pth.tar") -> dict[str, torch.Tensor]:
    """The checkpoint's state dict (itself, or under "state_dict" or msclap's "model"), unpickled
    as tensors only: a file that would run code when unpickled (or holds anything but tensors) is
    refused, naming the file and how to get it as released."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path}: the checkpoint holds more than tensors (its pickle would run code when loaded, {exc}); "
            f"it is not loaded. Use the file as released ({release})"
        ) from None
    if isinstance(state, dict):
        state = state.get("state_dict", state.get("model", state))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    return state


class ProjectedClapZeroShot:
    """Zero-shot over label prompts with a module of two towers with projection heads
    (audio_embedding, text_embedding, logit_scale): ParaCLAP's and msclap's."""

    family: Family
    tokenizer: object
    model: torch.nn.Module
    device: torch.device
    dtype: str
    _texts: dict[tuple[str, ...], torch.Tensor]

    def prompts(self, labels: list[str]) -> list[str]:
        raise NotImplementedError

    def tokens(self, prompts: list[str]) -> dict:
        return self.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")

    def waveform(self, audio: np.ndarray) -> torch.Tensor:
        """The clip as the encoder reads it (here: as given, one batch row)."""
        return torch.as_tensor(np.asarray(audio, dtype=np.float32))[None]

    def _label_embeddings(self, labels: list[str]) -> torch.Tensor:
        key = tuple(labels)
        if key not in self._texts:
            tokens = self.tokens(self.prompts(labels))
            with torch.inference_mode():
                embedding = self.model.text_embedding({k: v.to(self.device) for k, v in tokens.items()})
            self._texts[key] = torch.nn.functional.normalize(embedding.float(), dim=-1)
        return self._texts[key]

    def score(
        self, audio: np.ndarray, prefix_text: str, suffixes: list[str], labels: list[str], *, batch_size: int = 32
    ) -> np.ndarray:
        """log P(label | audio) over the labels, the same for every suffix (no token channel)."""
        texts = self._label_embeddings(labels)
        waveform = self.waveform(audio).to(self.device, DTYPES[self.dtype])
        with torch.inference_mode():
            embedding = torch.nn.functional.normalize(self.model.audio_embedding(waveform).float(), dim=-1)
            logits = self.model.logit_scale.exp().float() * embedding @ texts.T
            scores = torch.log_softmax(logits, dim=-1)[0].cpu().numpy()
        return np.tile(scores, (len(suffixes), 1))

    def label_tokens(self, labels: list[str]) -> dict[str, list[str]]:
        """The tokens of each label prompt the text encoder reads (for provenance)."""
        return {
            label: self.tokenizer.convert_ids_to_tokens(self.tokenizer(prompt)["input_ids"])
            for label, prompt in zip(labels, self.prompts(labels), strict=True)
        }

    def generate(self, *args, **kwargs):
        raise ValueError(f"{self.family.name} has no generate mode: it scores label prompts (set mode: score)")


class ParaClapZeroShot(ProjectedClapZeroShot):
    """ParaCLAP loaded from a model folder laid out as the module docstring says."""

    def __init__(
        self, path: str, *, family: Family, label_prompt: str, device: str = "cpu", dtype: str = "auto", **_ignored
    ):
        folder = Path(path)
        self.family = family
        self.sampling_rate, self.window_s = family.sampling_rate, family.window_s
        authors = label_prompt == DEFAULT_LABEL_PROMPT
        self.label_prompt = AUTHORS_PROMPT if authors else label_prompt
        self.words = AUTHORS_WORDS if authors else {}
        state = read_checkpoint(folder / CHECKPOINT)
        projection = state.get("audio_projection.linear1.weight")
        module = ParaClapModule(
            Wav2Vec2Config.from_pretrained(folder / "speech"),
            BertConfig.from_pretrained(folder / "text"),
            embedding_dim=EMBEDDING if projection is None else projection.shape[0],
        )
        missing, unexpected = module.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing:
            raise ValueError(f"{folder / CHECKPOINT}: no weights for {missing[:4]} ({len(missing)} missing)")
        if unexpected:
            log.warning(
                "%s: %d weights the architecture has no place for, e.g. %s", path, len(unexpected), unexpected[:3]
            )
        torch_device, _ = resolve_device(device)
        # auto: the checkpoint's own, float32; another dtype asked for is honoured
        self.dtype = "float32" if dtype == "auto" else dtype
        self.model = module.to(torch_device, dtype=DTYPES[self.dtype]).eval()
        self.device = torch.device(torch_device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder / "text")
        self._texts: dict[tuple[str, ...], torch.Tensor] = {}

    def prompts(self, labels: list[str]) -> list[str]:
        return [self.label_prompt.format(label=self.words.get(label, label)) for label in labels]
