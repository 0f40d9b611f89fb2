"""msclap's own scores for the tiny msclap folders of cuealign.models.tiny.build_tiny_msclap: the
reference tests/unit/test_msclap.py holds cuealign's msclap backend to (tests/reference/msclap.json).

msclap cannot be installed beside cuealign (it pins transformers < 5 and numpy < 2 and imports
torchaudio), so this runs in an environment of its own, on msclap's own modules, as its
CLAPWrapper drives them (its text preprocessing, its audio repetition to the window, its
compute_similarity), written out here because the wrapper reads audio files through torchaudio and
downloads its weights; torchaudio is never called on this path and is given an empty module:

    python3 -m venv /tmp/msref && . /tmp/msref/bin/activate
    pip install torch==2.13.0 'transformers<5' 'numpy<2' torchlibrosa 'librosa>=0.10.1,<0.11' pyyaml
    pip install --no-deps msclap==1.3.4
    # in cuealign's environment:
    python -c "from cuealign.models.tiny import build_tiny_msclap as b; from tests.unit.test_msclap import WORDS; \
        [b(f'/tmp/msfix/{v}', v, WORDS) for v in ('2022', '2023')]"
    # in msclap's:
    python tests/reference/msclap_scores.py /tmp/msfix tests/reference/msclap.json

The tiny models are msclap's classes with smaller parts of msclap's own (ConvBlock widths for
Cnn14; HTSAT_Swin_Transformer's embed_dim, heads and depths), loaded with every weight of the file.
"""

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import torch
import transformers  # noqa: F401  (before the empty torchaudio: it looks for the real one)

sys.modules["torchaudio"] = types.ModuleType("torchaudio")  # imported by msclap/__init__, unused here
sys.modules["torchaudio.transforms"] = sys.modules["torchaudio"].transforms = types.ModuleType("torchaudio.transforms")

import msclap  # noqa: E402
import yaml  # noqa: E402
from clips import RATE, clips  # noqa: E402  (tests/reference/clips.py, beside this script)
from msclap.models import config as htsat_config  # noqa: E402
from msclap.models.audio import ConvBlock  # noqa: E402
from msclap.models.clap import CLAP, Projection  # noqa: E402
from msclap.models.htsat import HTSAT_Swin_Transformer  # noqa: E402
from transformers import AutoConfig, AutoModel, AutoTokenizer  # noqa: E402

LABELS = ["angry", "happy", "neutral", "sad"]
PROMPT = "the speaker sounds {label}"


def main(fixtures: Path, out: Path) -> None:
    result = {"labels": LABELS, "prompt": PROMPT, "msclap": "1.3.4", "torch": torch.__version__}
    for version in ("2022", "2023"):
        args = yaml.safe_load((Path(msclap.__file__).parent / f"configs/config_{version}.yml").read_text())
        folder = fixtures / version
        # msclap chooses its text path by the model name: the tokenizer's folder under that name
        text = fixtures / f"text-{args['text_model']}"
        shutil.rmtree(text, ignore_errors=True)
        shutil.copytree(folder / "text", text)
        # msclap loads the text model's pretrained weights first (the checkpoint's replace them all)
        AutoModel.from_config(AutoConfig.from_pretrained(text)).save_pretrained(text)
        clap = CLAP(
            audioenc_name=args["audioenc_name"], sample_rate=args["sampling_rate"], window_size=args["window_size"],
            hop_size=args["hop_size"], mel_bins=args["mel_bins"], fmin=args["fmin"], fmax=args["fmax"],
            classes_num=5 if version == "2022" else 527, out_emb=16 if version == "2022" else 64,
            text_model=str(text), transformer_embed_dim=32, d_proj=16,
        )  # fmt: skip
        base = clap.audio_encoder.base
        if version == "2022":
            widths = [1, 4, 4, 8, 8, 16, 16]
            for i in range(1, 7):
                setattr(base, f"conv_block{i}", ConvBlock(widths[i - 1], widths[i]))
            base.fc1, base.fc_audioset = torch.nn.Linear(16, 16), torch.nn.Linear(16, 5)
            front = base
        else:
            base.htsat = HTSAT_Swin_Transformer(
                embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=8, config=htsat_config
            )
            front = base.htsat
        clap.audio_encoder.projection = Projection(16 if version == "2022" else 64, 16)
        own = {k: v.clone() for k, v in front.state_dict().items() if k.startswith(("spectrogram", "logmel"))}
        state = torch.load(folder / f"CLAP_weights_{version}.pth", map_location="cpu")["model"]
        missing, unexpected = clap.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith(("attn_mask", "position_ids", "attn.bias", "masked_bias"))]
        missing = [k for k in missing if "tscam_conv" not in k and ".head." not in k]
        assert not missing and not unexpected, (missing[:5], unexpected[:5])
        prefix = "audio_encoder.base." + ("htsat." if version == "2023" else "")
        front_diff = max(float((own[k] - state[prefix + k]).abs().max()) for k in own)
        clap.eval()

        # CLAPWrapper.preprocess_text, get_text_embeddings
        tokenizer = AutoTokenizer.from_pretrained(str(text))
        gpt = "gpt" in args["text_model"]
        if gpt:
            tokenizer.add_special_tokens({"pad_token": "!"})
        keys = ["input_ids", "attention_mask"] + ([] if gpt else ["token_type_ids"])
        tokens = []
        for label in LABELS:
            ttext = PROMPT.format(label=label) + (" <|endoftext|>" if gpt else "")
            tok = tokenizer.encode_plus(
                text=ttext, add_special_tokens=True, max_length=args["text_len"], padding="max_length",
                return_tensors="pt",
            )  # fmt: skip
            tokens.append({k: tok[k].reshape(-1) for k in keys})
        batch = {k: torch.stack([t[k] for t in tokens]) for k in keys}
        with torch.no_grad():
            texts = clap.caption_encoder(batch)
        entry = {"front_end_max_abs_difference_from_torchlibrosa": front_diff, "clips": {}}
        for name, clip in clips(args["duration"]).items():
            # CLAPWrapper.load_audio_into_tensor (a clip up to the window: repeated to fill it)
            samples = args["duration"] * RATE
            series = torch.tensor(clip)
            series = series.repeat(int(np.ceil(samples / series.shape[0])))[:samples]
            with torch.no_grad():
                audio = clap.audio_encoder(series.reshape(1, -1))[0]
            # CLAPWrapper.compute_similarity
            a = audio / torch.norm(audio, dim=-1, keepdim=True)
            t = texts / torch.norm(texts, dim=-1, keepdim=True)
            similarity = (clap.logit_scale.exp() * t @ a.T).T
            entry["clips"][name] = {
                "seconds": len(clip) / RATE,
                "similarity": similarity[0].tolist(),
                "log_softmax": torch.log_softmax(similarity, dim=-1)[0].tolist(),
                "audio_embedding": a[0].tolist(),  # unit length
            }
        result[version] = entry
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
