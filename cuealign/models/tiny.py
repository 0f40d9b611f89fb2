"""Small random-weight models of the real classes, built offline from configs.

For tests (the real from_pretrained and forward paths on ~1 MB models) and as the starting point
of the demo ALM: a byte-level BPE tokenizer trained on the prompt vocabulary with the processor's
special tokens, a Whisper feature extractor with 128 mel bins, and a model of the family's class.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AudioFlamingo3Config,
    AudioFlamingo3ForConditionalGeneration,
    AudioFlamingo3Processor,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    RobertaTokenizer,
    WhisperFeatureExtractor,
)

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<sound>"]
# Qwen2-Audio's chat template, reduced to what a single user turn with one audio needs.
QWEN2_AUDIO_CHAT = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'audio' %}Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Audio Flamingo 3 puts one <sound> placeholder where the audio goes.
AF3_CHAT = QWEN2_AUDIO_CHAT.replace("Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n", "<sound>")
# Qwen2.5-Omni writes the audio without a caption, and its tokenizer names its vision tokens too.
OMNI_CHAT = QWEN2_AUDIO_CHAT.replace(
    "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n", "<|audio_bos|><|AUDIO|><|audio_eos|>"
)
OMNI_SPECIAL = {
    "image_token": "<|IMAGE|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
}


def train_tokenizer(texts: list[str], *, vocab_size: int = 400, named: dict | None = None) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (any text encodes) whose merges come from ``texts``, with the
    Qwen special tokens and the further ``named`` ones (attribute name -> token)."""
    named = named or {}
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=QWEN_SPECIAL + list(named.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,  # a job's terminal is not the place for a progress bar of a second
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "audio_token": "<|AUDIO|>",
            "audio_bos_token": "<|audio_bos|>",
            "audio_eos_token": "<|audio_eos|>",
        }
        | named,
    )


def _text_config(hidden: int, layers: int, vocab: int) -> dict:
    return dict(
        model_type="qwen2",
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=vocab,
        max_position_embeddings=4096,
    )


def build_tiny_alm(
    family: str,
    out_dir: str | Path,
    texts: list[str],
    *,
    hidden: int = 32,
    layers: int = 2,
    seed: int = 0,
    vocab_size: int = 400,
    window_s: int = 30,
) -> Path:
    """Save a random-weight model of ``family``'s real class and its processor to ``out_dir``.
    ``window_s``: the audio window its processor pads every clip to and its encoder reads (the
    released Qwen2-Audio's 30 s; Qwen2-Audio only): the encoder's attention costs grow with its
    square, whatever the clip's length."""
    if family == "clap":
        return _build_tiny_clap(out_dir, texts, hidden=hidden, layers=layers, seed=seed, vocab_size=vocab_size)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size, named=OMNI_SPECIAL if family == "qwen2.5-omni" else None)
    if window_s != 30 and family != "qwen2-audio":
        raise ValueError(f"an audio window other than 30 s is built for qwen2-audio only, not {family}")
    features = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, chunk_length=window_s)
    text = _text_config(hidden, layers, len(tokenizer))
    builders = {"qwen2-audio": _qwen2_audio, "audio-flamingo-3": _audio_flamingo_3, "qwen2.5-omni": _omni}
    if family not in builders:
        raise ValueError(f"no tiny builder for family {family!r}")
    processor, config, model_class = builders[family](features, tokenizer, text, hidden, layers, window_s)
    torch.manual_seed(seed)
    model = model_class(config)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    if family == "qwen2.5-omni":
        # As in the released checkpoints, the folder names Omni's own processor, which loads a
        # video processor (torchvision); the backend assembles its audio processor instead.
        config_file = out_dir / "processor_config.json"
        saved = json.loads(config_file.read_text())
        config_file.write_text(json.dumps(saved | {"processor_class": "Qwen2_5OmniProcessor"}, indent=2))
    return out_dir


def _qwen2_audio(features, tokenizer, text: dict, hidden: int, layers: int, window_s: int):
    processor = Qwen2AudioProcessor(feature_extractor=features, tokenizer=tokenizer, chat_template=QWEN2_AUDIO_CHAT)
    config = Qwen2AudioConfig(
        audio_config=dict(
            d_model=hidden,
            encoder_attention_heads=2,
            encoder_ffn_dim=2 * hidden,
            encoder_layers=layers,
            num_mel_bins=128,
            # one position per 20 ms: 100 mel frames a second, halved by the second convolution
            max_source_positions=50 * window_s,
        ),
        text_config=text,
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
    )
    return processor, config, Qwen2AudioForConditionalGeneration


def _audio_flamingo_3(features, tokenizer, text: dict, hidden: int, layers: int, window_s: int):
    processor = AudioFlamingo3Processor(feature_extractor=features, tokenizer=tokenizer, chat_template=AF3_CHAT)
    config = AudioFlamingo3Config(
        audio_config=dict(
            hidden_size=hidden,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_mel_bins=128,
        ),
        text_config=text,
        audio_token_id=tokenizer.convert_tokens_to_ids("<sound>"),
    )
    return processor, config, AudioFlamingo3ForConditionalGeneration


def _omni(features, tokenizer, text: dict, hidden: int, layers: int, window_s: int):
    """The thinker with a one-block vision tower (its class always has one); rotary sections
    (time, height, width) that add up to half a head, in the released model's 2:3:3 ratio."""
    half_head = hidden // 2 // 2
    sections = [half_head - 2 * (3 * half_head // 8), 3 * half_head // 8, 3 * half_head // 8]
    processor = Qwen2AudioProcessor(feature_extractor=features, tokenizer=tokenizer, chat_template=OMNI_CHAT)
    token = tokenizer.convert_tokens_to_ids
    config = Qwen2_5OmniThinkerConfig(
        audio_config=dict(
            d_model=hidden,
            encoder_attention_heads=2,
            encoder_ffn_dim=2 * hidden,
            encoder_layers=layers,
            # at the default 0.02 this random encoder maps different clips to nearly the
            # same embeddings (log-probs move by 5e-5); wider weights let the audio through
            num_mel_bins=128,
            output_dim=hidden,
            initializer_range=0.1,
        ),
        vision_config=dict(
            depth=1,
            hidden_size=16,
            num_heads=2,
            intermediate_size=32,
            out_hidden_size=hidden,
            fullatt_block_indexes=[0],
        ),
        text_config=text
        | dict(
            model_type="qwen2_5_omni_text",
            rope_parameters=dict(rope_type="default", rope_theta=1e6, mrope_section=sections),
        ),
        audio_token_index=token("<|AUDIO|>"),
        audio_start_token_id=token("<|audio_bos|>"),
        audio_end_token_id=token("<|audio_eos|>"),
        user_token_id=token("<|im_start|>"),
        image_token_index=token("<|IMAGE|>"),
        video_token_index=token("<|VIDEO|>"),
        vision_start_token_id=token("<|vision_bos|>"),
    )
    return processor, config, Qwen2_5OmniThinkerForConditionalGeneration


def _build_tiny_clap(
    out_dir: str | Path, texts: list[str], *, hidden: int, layers: int, seed: int, vocab_size: int
) -> Path:
    """A random-weight CLAP (RoBERTa text tower, HTS-AT audio tower on 64 mel bins at 48 kHz), its
    RoBERTa byte-level BPE trained on ``texts``. The feature extractor crops by rand_trunc, as in
    the unfused released checkpoints."""
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    model_json = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]]
    tokenizer = RobertaTokenizer(vocab=model_json["vocab"], merges=merges)
    processor = ClapProcessor(feature_extractor=ClapFeatureExtractor(truncation="rand_trunc"), tokenizer=tokenizer)
    # the audio tower's width doubles at each of its 4 stages: 16 -> 128
    config = ClapConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
            max_position_embeddings=128,
        ),
        audio_config=dict(
            hidden_size=128,
            patch_embeds_hidden_size=16,
            depths=[1, 1, 1, 1],
            num_attention_heads=[2, 2, 2, 2],
            window_size=8,
            spec_size=256,
            num_mel_bins=64,
        ),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    ClapModel(config).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def build_tiny_paraclap(out: str | Path, words: list[str], *, hidden: int = 32, seed: int = 0) -> Path:
    """A random-weight ParaCLAP folder laid out as cuealign/models/paraclap.py reads it: the
    module's state dict saved with torch.save as best.pth.tar (as released), a tiny wav2vec2's
    config under speech/ and a tiny BERT's config and vocabulary (``words``) under text/."""
    from transformers import BertConfig, BertTokenizer, Wav2Vec2Config

    from cuealign.models.paraclap import CHECKPOINT, ParaClapModule

    out = Path(out)
    (out / "speech").mkdir(parents=True, exist_ok=True)
    (out / "text").mkdir(parents=True, exist_ok=True)
    speech = Wav2Vec2Config(
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        conv_dim=(hidden, hidden),
        conv_stride=(5, 2),
        conv_kernel=(10, 3),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    speech.save_pretrained(out / "speech")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *sorted(set(words))]
    (out / "text" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(out / "text" / "vocab.txt")).save_pretrained(out / "text")
    text = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
    )
    text.save_pretrained(out / "text")
    torch.manual_seed(seed)
    module = ParaClapModule(speech, text, embedding_dim=hidden)
    torch.save(module.state_dict(), out / CHECKPOINT)
    return out


def build_tiny_msclap(out: str | Path, version: str, words: list[str], *, seed: int = 0) -> Path:
    """A random-weight msclap folder laid out as released (cuealign/models/msclap.py): msclap's
    state dict, under msclap's own names, saved as {"model": ...} in CLAP_weights_<version>.pth,
    and a tiny text model's config and tokenizer under text/ (BERT with ``words`` for 2022; a
    byte-level GPT-2 whose "!" is token 0, as in GPT-2's vocabulary, for 2023). Every weight is
    drawn from NumPy's PCG64 with ``seed``, so the file has the same bits on every machine
    (tests/reference/msclap.json holds msclap's own scores for it)."""
    import numpy as np
    from transformers import BertConfig, BertTokenizer, ClapAudioConfig, GPT2Config, GPT2TokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    from cuealign.models.msclap import VERSIONS, Cnn14, Htsat, MsClapModule, to_msclap

    out = Path(out)
    (out / "text").mkdir(parents=True, exist_ok=True)
    front = VERSIONS[version]["front"]
    if version == "2022":
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *sorted(set(words))]
        (out / "text" / "vocab.txt").write_text("\n".join(vocab) + "\n")
        BertTokenizer(str(out / "text" / "vocab.txt")).save_pretrained(out / "text")
        text = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64)  # fmt: skip
        audio, audio_dim = Cnn14([4, 4, 8, 8, 16, 16], out_emb=16, mels=64, classes=5, front=front), 16
    else:
        symbols = list(bytes_to_unicode().values())  # GPT-2's byte alphabet, "!" first: token 0
        vocab = {s: i for i, s in enumerate(symbols)} | {"<|endoftext|>": len(symbols)}
        bpe = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        end = "<|endoftext|>"
        tokenizer = GPT2TokenizerFast(tokenizer_object=bpe, bos_token=end, eos_token=end, unk_token=end)
        tokenizer.save_pretrained(out / "text")
        text = GPT2Config(vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                          bos_token_id=len(symbols), eos_token_id=len(symbols))  # fmt: skip
        config = ClapAudioConfig(
            patch_embeds_hidden_size=8, depths=[2, 2, 2, 2], num_attention_heads=[1, 2, 2, 4], window_size=8,
            num_mel_bins=64, spec_size=256, patch_size=4, patch_stride=[4, 4], enable_fusion=False,
        )  # fmt: skip
        audio, audio_dim = Htsat(config, front), 8 * 2**3
    text.save_pretrained(out / "text")
    module = MsClapModule(version, audio, audio_dim, text, d_proj=16)
    rng = np.random.default_rng(seed)
    state = module.state_dict()
    for name, tensor in state.items():
        if not tensor.is_floating_point() or ".front." in name:  # indices, counters; torchlibrosa's fixed kernels
            continue
        if name.endswith(("running_var", "layer_norm.weight", "norm.weight", "_before.weight", "_after.weight",
                          "ln_1.weight", "ln_2.weight", "ln_f.weight", "LayerNorm.weight", "bn1.weight",
                          "bn2.weight", "bn0.weight", "batch_norm.weight")):  # fmt: skip
            values = rng.uniform(0.5, 1.5, tensor.shape)
        else:
            fan_in = int(np.prod(tensor.shape[1:])) if tensor.dim() > 1 else 16
            values = rng.standard_normal(tensor.shape) / np.sqrt(fan_in)
        state[name] = torch.tensor(values, dtype=torch.float32)
    state["logit_scale"] = torch.tensor(np.log(1 / 0.07), dtype=torch.float32)
    torch.save({"model": to_msclap(state, version)}, out / f"CLAP_weights_{version}.pth")
    return out
