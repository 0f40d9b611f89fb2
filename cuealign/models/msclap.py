"""Microsoft's CLAP (the msclap package; the paper's CLAP [13]) zero-shot, behind the same
shard-in/shard-out interface as LAION's CLAP and ParaCLAP.

msclap itself cannot share cuealign's environment (it pins transformers < 5 and numpy < 2 and
imports torchaudio, which has no build for cuealign's torch; docs/findings.md), so its two released
architectures are built here from transformers' own classes and a few lines of msclap's:

- version 2022 (CLAP_weights_2022.pth; "CLAP: learning audio concepts from natural language
  supervision", ICASSP 2023, the paper's [13]): PANNs' Cnn14 on a 64-band log-mel (written out below
  with msclap's parameter names) and BERT (bert-base-uncased) read at its [CLS] token; 5 s of audio.
- version 2023 (CLAP_weights_2023.pth): HTSAT, which is transformers' ClapAudioEncoder (the same
  Swin layers, LAION's CLAP took them from the same code; msclap's fused qkv is split into query,
  key and value on loading), and GPT-2 read at its last token (msclap appends " <|endoftext|>" and
  pads with "!", token 0, whose count locates that token); 7 s of audio.

Both put msclap's projection head (linear, GELU, linear, residual, layer norm; 1024 out) on each
side and score with msclap's compute_similarity: exp(logit_scale) times the cosine similarity,
here log-softmaxed over the labels. The front end is torchlibrosa's, as msclap computes it: a
reflect-padded STFT as a convolution with the checkpoint's DFT kernels, the power spectrum, the
checkpoint's mel matrix, 10 log10(max(x, 1e-10)). The version is read from the checkpoint's keys;
it is checked to match the folder's text model before any job runs.

Audio as msclap's CLAPWrapper prepares it: resampled to 44.1 kHz (here by the runner, with
scipy's polyphase filter, where msclap uses torchaudio's windowed-sinc resampler: the two low-pass
filters differ a little near the old Nyquist frequency; not measured, as torchaudio cannot be
installed beside cuealign), a clip shorter than the version's window is repeated to fill it, a
longer one is cut to the window by the runner (from its start, logged, and the row's audio_policy
says so; msclap takes a random window, which no rerun would give again).

The model folder (models.<name>.path), as released on the hub repository microsoft/msclap with
the text model's small files beside it:

    <path>/CLAP_weights_2022.pth    hf download microsoft/msclap CLAP_weights_2022.pth --local-dir <path>
    <path>/text/                    hf download bert-base-uncased config.json vocab.txt
                                        tokenizer_config.json --local-dir <path>/text
or
    <path>/CLAP_weights_2023.pth    hf download microsoft/msclap CLAP_weights_2023.pth --local-dir <path>
    <path>/text/                    hf download gpt2 config.json vocab.json merges.txt
                                        tokenizer_config.json --local-dir <path>/text

The checkpoint holds every weight, the text model's included (text model weights a checkpoint
lacks come from text/model.safetensors, as msclap takes them from its pretrained text model). It
is read with torch.load(weights_only=True), which unpickles tensors only (msclap itself loads it
so under torch >= 2.6) and refuses a file that would run code.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import scipy.signal
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, ClapAudioConfig
from transformers.audio_utils import mel_filter_bank
from transformers.models.clap.modeling_clap import ClapAudioEncoder

from cuealign.models.devices import resolve_device
from cuealign.models.paraclap import ProjectedClapZeroShot, Projection, read_checkpoint
from cuealign.models.registry import MSCLAP_CHECKPOINT, MSCLAP_TEXT_MODEL, Family
from cuealign.models.weights import DTYPES

log = logging.getLogger(__name__)

# msclap's configs/config_<version>.yml, and for HTSAT its models/config.py (which its HTSAT
# reads instead of the yml: a 32 kHz mel scale up to 14 kHz on the 44.1 kHz audio, as trained)
_MEL = dict(n_fft=1024, hop=320, mels=64, fmin=50, fmax=14000)
VERSIONS = {
    "2022": dict(duration=5, text_len=100, front=dict(sr=44100, **_MEL)),
    "2023": dict(duration=7, text_len=77, front=dict(sr=32000, **_MEL)),
}
# weights msclap's modules hold that no embedding reads: AudioSet classifier heads, the frozen
# front end's (read if present), transformers' older buffers
_UNREAD = re.compile(r"(fc_audioset|tscam_conv|\.head\.|attn_mask|position_ids|\.attn\.(bias|masked_bias)$)")


class LogMel(torch.nn.Module):
    """torchlibrosa's Spectrogram and LogmelFilterBank as msclap configures them, with their
    parameter names (the checkpoint's kernels and mel matrix load into them)."""

    def __init__(self, sr: int, n_fft: int, hop: int, mels: int, fmin: int, fmax: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        window = scipy.signal.get_window("hann", n_fft, fftbins=True)
        x, y = np.meshgrid(np.arange(n_fft), np.arange(n_fft))
        dft = np.power(np.exp(-2 * np.pi * 1j / n_fft), x * y)[:, : n_fft // 2 + 1] * window[:, None]
        self.spectrogram_extractor = torch.nn.Module()
        self.spectrogram_extractor.stft = torch.nn.Module()
        stft = self.spectrogram_extractor.stft
        stft.conv_real = torch.nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop, bias=False)
        stft.conv_imag = torch.nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop, bias=False)
        stft.conv_real.weight.data = torch.tensor(np.real(dft).T, dtype=torch.float32)[:, None, :]
        stft.conv_imag.weight.data = torch.tensor(np.imag(dft).T, dtype=torch.float32)[:, None, :]
        mel = mel_filter_bank(n_fft // 2 + 1, mels, fmin, fmax, sr, norm="slaney", mel_scale="slaney")
        self.logmel_extractor = torch.nn.Module()
        self.logmel_extractor.melW = torch.nn.Parameter(torch.tensor(mel, dtype=torch.float32), requires_grad=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, 1, frames, mels)"""
        x = torch.nn.functional.pad(waveform[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        stft = self.spectrogram_extractor.stft
        power = stft.conv_real(x) ** 2 + stft.conv_imag(x) ** 2
        mel = torch.matmul(power[:, None].transpose(2, 3), self.logmel_extractor.melW)
        return 10.0 * torch.log10(torch.clamp(mel, min=1e-10))


class _ConvBlock(torch.nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = torch.nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1, self.bn2 = torch.nn.BatchNorm2d(c_out), torch.nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
        return torch.nn.functional.avg_pool2d(x, pool)


class Cnn14(torch.nn.Module):
    """PANNs' Cnn14 as msclap's models/audio.py has it (its names; the channel widths read from
    the checkpoint), returning msclap's 'embedding': relu(fc1(max + mean over time))."""

    def __init__(self, widths: list[int], out_emb: int, mels: int, classes: int, front: dict) -> None:
        super().__init__()
        self.front = LogMel(**front)
        self.bn0 = torch.nn.BatchNorm2d(mels)
        c_in = 1
        for i, width in enumerate(widths, start=1):
            setattr(self, f"conv_block{i}", _ConvBlock(c_in, width))
            c_in = width
        self.blocks = len(widths)
        self.fc1 = torch.nn.Linear(c_in, out_emb)
        self.fc_audioset = torch.nn.Linear(out_emb, classes)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.bn0(self.front(waveform).transpose(1, 3)).transpose(1, 3)
        for i in range(1, self.blocks + 1):
            x = getattr(self, f"conv_block{i}")(x, pool=2 if i < self.blocks else 1)
        x = x.mean(dim=3)
        return torch.relu(self.fc1(x.max(dim=2).values + x.mean(dim=2)))


class Htsat(torch.nn.Module):
    """msclap's HTSAT: its log-mel and batch norm, then transformers' ClapAudioEncoder (the same
    reshape to a 256 x 256 image, Swin stages and token-semantic grouping), whose pooled output is
    msclap's 'latent_output'."""

    def __init__(self, config: ClapAudioConfig, front: dict) -> None:
        super().__init__()
        self.front = LogMel(**front)
        self.encoder = ClapAudioEncoder(config)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.front(waveform)).pooler_output


class _Side(torch.nn.Module):
    def __init__(self, base: torch.nn.Module, d_in: int, d_out: int) -> None:
        super().__init__()
        self.base = base
        self.projection = Projection(d_in, d_out)


class MsClapModule(torch.nn.Module):
    """msclap's CLAP module (audio_encoder, caption_encoder, logit_scale) for one version."""

    def __init__(self, version: str, audio: torch.nn.Module, audio_dim: int, text_config, d_proj: int) -> None:
        super().__init__()
        self.version = version
        self.audio_encoder = _Side(audio, audio_dim, d_proj)
        self.caption_encoder = _Side(AutoModel.from_config(text_config), text_config.hidden_size, d_proj)
        self.logit_scale = torch.nn.Parameter(torch.ones([]) * np.log(1 / 0.07))

    def audio_embedding(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.audio_encoder.projection(self.audio_encoder.base(waveform))

    def text_embedding(self, tokens: dict) -> torch.Tensor:
        hidden = self.caption_encoder.base(**tokens)[0]
        if self.version == "2022":  # BERT's [CLS]
            pooled = hidden[:, 0, :]
        else:  # GPT-2's last token before the "!" padding (token 0), as msclap counts it
            last = torch.ne(tokens["input_ids"], 0).sum(-1) - 1
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return self.caption_encoder.projection(pooled)


def version_of(state: dict[str, torch.Tensor], path: Path) -> str:
    if any(k.startswith("audio_encoder.base.htsat.") for k in state):
        return "2023"
    if any(k.startswith("audio_encoder.base.conv_block1.") for k in state):
        return "2022"
    raise ValueError(
        f"{path}: not an msclap CLAP checkpoint (no audio_encoder.base.htsat.* nor audio_encoder.base.conv_block*; "
        "clapcap_weights_2023.pth is msclap's captioner, not a zero-shot classifier); use CLAP_weights_2022.pth "
        "or CLAP_weights_2023.pth"
    )


def _count(state: dict, pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def _htsat_config(state: dict) -> ClapAudioConfig:
    """HTSAT's dimensions read from the checkpoint's shapes (msclap's are embed 96, depths
    2/2/6/2, heads 4/8/16/32, window 8, patch 4, a 256 x 256 image of 64 mel bands)."""
    prefix = "audio_encoder.base.htsat."
    patch = state[prefix + "patch_embed.proj.weight"]
    stages = _count(state, re.escape(prefix) + r"layers\.(\d+)\.")
    depths = [_count(state, re.escape(prefix) + rf"layers\.{i}\.blocks\.(\d+)\.") for i in range(stages)]
    heads = [state[prefix + f"layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[1] for i in range(stages)]
    table = state[prefix + "layers.0.blocks.0.attn.relative_position_bias_table"].shape[0]
    return ClapAudioConfig(
        patch_embeds_hidden_size=patch.shape[0],
        patch_size=patch.shape[-1],
        patch_stride=[patch.shape[-1], patch.shape[-1]],
        depths=depths,
        num_attention_heads=heads,
        window_size=(int(round(table**0.5)) + 1) // 2,
        num_mel_bins=state[prefix + "bn0.weight"].shape[0],
        spec_size=256,
        mlp_ratio=state[prefix + "layers.0.blocks.0.mlp.fc1.weight"].shape[0] / patch.shape[0],
        enable_fusion=False,
        num_hidden_layers=stages,
        hidden_act="gelu",
    )


# msclap's HTSAT names (whole dotted segments) -> transformers' ClapAudioEncoder's; msclap's fused
# qkv is split into query, key and value apart from these
_HTSAT_NAMES = {
    "bn0": "batch_norm",
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "attn": "attention.self",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_FRONT = re.compile(r"^audio_encoder\.base\.(htsat\.)?(?=spectrogram_extractor\.|logmel_extractor\.)")


def _renamed(name: str, table: dict[str, str]) -> str:
    """``name`` with each whole segment run of the table replaced, the longest first (so that
    attn.proj is not read as attn, nor attention.output.dense as output.dense)."""
    name = f".{name}"
    for old in sorted(table, key=len, reverse=True):
        name = name.replace(f".{old}.", f".{table[old]}.")
    return name[1:]


def _to_module(state: dict) -> dict:
    """A checkpoint's names as the module has them: the front end of either version under
    audio_encoder.base.front, HTSAT's as transformers' ClapAudioEncoder names them."""
    out = {}
    for key, value in state.items():
        if _FRONT.match(key):
            out[_FRONT.sub("audio_encoder.base.front.", key)] = value
        elif key.startswith("audio_encoder.base.htsat."):
            name = "audio_encoder.base.encoder." + _renamed(key.removeprefix("audio_encoder.base.htsat."), _HTSAT_NAMES)
            if ".attention.self.qkv." not in name:
                out[name] = value
                continue
            for part, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                out[name.replace(".qkv.", f".{part}.")] = chunk.clone()
        else:
            out[key] = value
    return out


def to_msclap(state: dict, version: str) -> dict:
    """A module's state dict under msclap's names (the inverse of _to_module: q, k, v fused)."""
    out = {}
    base = "audio_encoder.base." + ("htsat." if version == "2023" else "")
    back = {new: old for old, new in _HTSAT_NAMES.items()}
    for key, value in state.items():
        if key.startswith("audio_encoder.base.front."):
            out[base + key.removeprefix("audio_encoder.base.front.")] = value
        elif key.startswith("audio_encoder.base.encoder."):
            if re.search(r"\.attention\.self\.(key|value)\.", key):
                continue
            name = _renamed(key.removeprefix("audio_encoder.base.encoder."), back)
            if re.search(r"\.attn\.query\.(weight|bias)$", name):
                parts = [state[key.replace(".query.", f".{p}.")] for p in ("query", "key", "value")]
                out[base + name.replace(".query.", ".qkv.")] = torch.cat(parts, dim=0)
            else:
                out[base + name] = value
        else:
            out[key] = value
    return out


def build_module(state: dict, text_folder: Path, path: Path) -> MsClapModule:
    """The module of the checkpoint's version, its dimensions read from its shapes."""
    version = version_of(state, path)
    about = VERSIONS[version]
    text_config = AutoConfig.from_pretrained(text_folder)
    if text_config.model_type != MSCLAP_TEXT_MODEL[version]:
        raise ValueError(
            f"{text_folder}: a {text_config.model_type!r} model, but {path.name} (msclap {version}) reads text with "
            f"{MSCLAP_TEXT_MODEL[version]!r}; put that model's config and tokenizer in text/"
        )
    d_proj = state["audio_encoder.projection.linear1.weight"].shape[0]
    audio_dim = state["audio_encoder.projection.linear1.weight"].shape[1]
    if version == "2022":
        prefix = "audio_encoder.base."
        blocks = _count(state, re.escape(prefix) + r"conv_block(\d+)\.") - 1
        widths = [state[prefix + f"conv_block{i}.conv1.weight"].shape[0] for i in range(1, blocks + 1)]
        audio = Cnn14(
            widths,
            out_emb=audio_dim,
            mels=state[prefix + "bn0.weight"].shape[0],
            classes=state[prefix + "fc_audioset.weight"].shape[0],
            front=about["front"],
        )
    else:
        audio = Htsat(_htsat_config(state), about["front"])
    return MsClapModule(version, audio, audio_dim, text_config, d_proj)


def load_state(module: MsClapModule, state: dict, path: Path, text_folder: Path) -> None:
    """The checkpoint into the module: every weight an embedding reads must be there. As msclap
    (which loads the text model's pretrained weights before the checkpoint's), text model weights
    the checkpoint lacks come from text/ where that folder has them."""
    missing, unexpected = module.load_state_dict(_to_module(state), strict=False)
    front = [k for k in missing if ".front." in k]
    missing = [k for k in missing if ".front." not in k and not _UNREAD.search(k)]
    if text := [k for k in missing if k.startswith("caption_encoder.base.")]:
        try:
            pretrained = AutoModel.from_pretrained(text_folder, local_files_only=True, use_safetensors=True)
        except OSError as exc:
            raise ValueError(
                f"{path} lacks {len(text)} text model weights (e.g. {text[0]}) and {text_folder} has none in "
                f"safetensors ({exc}); put the text model's model.safetensors there (msclap reads them from it)"
            ) from None
        weights = pretrained.state_dict()
        module.load_state_dict({k: weights[k.removeprefix("caption_encoder.base.")] for k in text}, strict=False)
        log.info("%s: %d text model weights from %s, as msclap takes them", path, len(text), text_folder)
        missing = [k for k in missing if k not in text]
    if missing:
        raise ValueError(f"{path}: no weights for {missing[:4]} ({len(missing)} missing); use the file as released")
    if front:
        log.info("%s: the front end's kernels are not in the checkpoint; computed as torchlibrosa does", path)
    if unexpected := [k for k in unexpected if not _UNREAD.search(k)]:
        log.warning("%s: %d weights the architecture has no place for, e.g. %s", path, len(unexpected), unexpected[:3])


class MsClapZeroShot(ProjectedClapZeroShot):
    """Microsoft's CLAP loaded from a model folder laid out as the module docstring says."""

    def __init__(
        self, path: str, *, family: Family, label_prompt: str, device: str = "cpu", dtype: str = "auto", **_ignored
    ):
        folder = Path(path)
        checkpoint = checkpoint_file(folder)
        state = read_checkpoint(checkpoint, release=f"hf download microsoft/msclap {checkpoint.name}")
        module = build_module(state, folder / "text", checkpoint)
        load_state(module, state, checkpoint, folder / "text")
        self.version = module.version
        self.family, self.label_prompt = family, label_prompt
        self.sampling_rate = family.sampling_rate
        self.window_s = float(VERSIONS[self.version]["duration"])
        torch_device, _ = resolve_device(device)
        self.dtype = "float32" if dtype == "auto" else dtype  # the checkpoint's own
        self.model = module.to(torch_device, dtype=DTYPES[self.dtype]).eval()
        self.device = torch.device(torch_device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder / "text")
        if self.version == "2023":
            self.tokenizer.add_special_tokens({"pad_token": "!"})
        self._texts: dict[tuple[str, ...], torch.Tensor] = {}

    def prompts(self, labels: list[str]) -> list[str]:
        """The text each label is compared with, as msclap's preprocess_text gives it to its encoder."""
        end = " <|endoftext|>" if self.version == "2023" else ""
        return [self.label_prompt.format(label=label) + end for label in labels]

    def tokens(self, prompts: list[str]) -> dict:
        length = VERSIONS[self.version]["text_len"]
        return self.tokenizer(prompts, padding=True, truncation=True, max_length=length, return_tensors="pt")

    def waveform(self, audio: np.ndarray) -> torch.Tensor:
        """The clip repeated to fill the version's window (msclap's load_audio_into_tensor; the
        runner has cut a longer one to the window)."""
        samples = int(VERSIONS[self.version]["duration"] * self.sampling_rate)
        clip = np.asarray(audio, dtype=np.float32).reshape(-1)
        if clip.size == 0:
            clip = np.zeros(1, dtype=np.float32)
        clip = np.tile(clip, int(np.ceil(samples / clip.size)))[:samples]
        return torch.as_tensor(clip)[None]


def checkpoint_file(folder: Path) -> Path:
    """The folder's one released CLAP checkpoint (CLAP_weights_2022.pth or _2023.pth)."""
    found = sorted(p for p in folder.iterdir() if MSCLAP_CHECKPOINT.search(p.name)) if folder.is_dir() else []
    if len(found) != 1:
        raise ValueError(
            f"{folder}: an msclap folder holds one CLAP_weights_2022.pth or CLAP_weights_2023.pth "
            f"(found {[p.name for p in found]}); "
            f"hf download microsoft/msclap CLAP_weights_2022.pth --local-dir {folder}"
        )
    return found[0]
