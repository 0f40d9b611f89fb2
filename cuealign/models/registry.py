"""Model families: what differs between audio-language models, as data."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Family:
    """How to drive one family through transformers."""

    name: str
    model_class: str  # transformers class loaded with from_pretrained
    sampling_rate: int = 16000
    # The audio window (longer audio is truncated, with a warning). None: read from the checkpoint
    # when it loads (its processor's max_audio_len, else its feature extractor's n_samples), since
    # checkpoints of one family differ: Qwen2-Audio 30 s, the released Qwen2.5-Omni 300 s, AF3 600 s.
    window_s: float | None = None
    feature_mask: str = "feature_attention_mask"  # the processor's mask of the audio features
    # "auto": the processor the model folder names (AutoProcessor). "qwen2-audio": a
    # Qwen2AudioProcessor read from the folder (its feature extractor, tokenizer and chat template
    # file), for models whose own processor also handles video and so needs torchvision.
    processor: str = "auto"
    # Multimodal rotary positions (3 x batch x length): a forward continuing from a cached prefix
    # is given its position ids explicitly, counted on from the prefix's largest one.
    mrope: bool = False
    # "alm": a chat audio-language model (cuealign/models/transformers_alm.py); "clap": a
    # contrastive audio-text model scoring label prompts, with no token channel (backends/clap.py).
    backend: str = "alm"
    # config.json's model_type of the checkpoints this family loads (checked at parse time: under
    # another family a checkpoint builds that family's class with missing, random weights)
    model_types: tuple[str, ...] = ()
    # What the chat template renders for one audio item; the head is checked for it once, so a
    # template of another family (or none) cannot prompt the model in a foreign format unseen.
    audio_slot: str = "<|audio_bos|><|AUDIO|><|audio_eos|>"
    # The chat template must be the checkpoint's own file: the processor class this family loads
    # with has a default template of another model (Qwen2AudioProcessor: Qwen2-Audio's), which a
    # folder saved without its template would silently get.
    own_template: bool = False
    # Pad each clip's features to the clip (a few frames past it), not to the feature extractor's
    # window: the released Omni pads every clip to 300 s and computes the log-mel of all of it on
    # the host, while its encoder reads only the valid frames, so the scores are the same (tested
    # against the processor's own padding). Qwen2-Audio and AF3 encode fixed 30 s windows: padded
    # as released.
    pad_to_clip: bool = False


FAMILIES: dict[str, Family] = {
    # Qwen2-Audio encodes exactly 3000 mel frames (30 s) and silently drops the rest.
    "qwen2-audio": Family("qwen2-audio", "Qwen2AudioForConditionalGeneration", model_types=("qwen2_audio",)),
    # The Qwen2.5-Omni thinker (text out, no talker). Its own processor loads a video processor
    # that needs torchvision; the audio inputs it makes are those of a Qwen2AudioProcessor with
    # the Omni tokenizer (same Whisper features, same count of <|AUDIO|> tokens), checked in tests,
    # loaded from the model folder with its chat template (chat_template.jinja or .json).
    "qwen2.5-omni": Family(
        "qwen2.5-omni",
        "Qwen2_5OmniThinkerForConditionalGeneration",
        processor="qwen2-audio",
        mrope=True,
        own_template=True,
        pad_to_clip=True,
        model_types=("qwen2_5_omni", "qwen2_5_omni_thinker"),  # as released (thinker + talker), a thinker
    ),
    # CLAP (the paper's contrastive baseline): 48 kHz, a 10 s window (its feature extractor would
    # crop longer clips at random; the runner truncates them first), score mode only.
    "clap": Family("clap", "ClapModel", sampling_rate=48000, window_s=10.0, backend="clap", model_types=("clap",)),
    # ParaCLAP (cuealign/models/paraclap.py): wav2vec2 + BERT with projection heads, zero-shot over
    # label prompts as CLAP; the encoder reads the whole clip, cut at 60 s to bound its memory.
    "paraclap": Family("paraclap", "ParaCLAP", sampling_rate=16000, window_s=60.0, backend="clap"),
    # Microsoft's CLAP (cuealign/models/msclap.py; the paper's CLAP [13]): the msclap package's two
    # released checkpoints rebuilt from transformers' classes, 44.1 kHz; its window (5 s for
    # CLAP_weights_2022.pth, 7 s for 2023) is read from the checkpoint when it loads.
    "msclap": Family("msclap", "MsCLAP", sampling_rate=44100, backend="clap"),
    # Audio Flamingo 3 windows long audio itself, up to its processor's max_audio_len (600 s).
    "audio-flamingo-3": Family(
        "audio-flamingo-3",
        "AudioFlamingo3ForConditionalGeneration",
        feature_mask="input_features_mask",
        model_types=("audioflamingo3",),
        audio_slot="<sound>",
    ),
}


# Models of the paper that cuealign does not run, and why: said when a config names one.
NOT_SUPPORTED = {
    "midashenglm": (
        "MiDashengLM ships its own model code (auto_map: it runs only with trust_remote_code), which cuealign "
        "does not execute, and no transformers class loads it; it is not supported yet"
    ),
    "pengi": (
        "Pengi is the paper's reference number only (Table III), not a model cuealign runs; there is no "
        "transformers class for it"
    ),
}


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        why = f"{NOT_SUPPORTED[name.lower()]}. " if name.lower() in NOT_SUPPORTED else ""
        raise ValueError(
            f"config: model family {name!r} is not in the registry. {why}Known families: {sorted(FAMILIES)}"
        ) from None


# The text CLAP compares each utterance's audio with, once per label (config: models.<name>.label_prompt).
DEFAULT_LABEL_PROMPT = "the speaker sounds {label}"

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _check_weights(where: str, path: str, names: list[str], allow_pickle: bool) -> None:
    """Safetensors weights, or pickle ones (which can run code when unpickled) only on opt-in."""
    if any(name.endswith(".safetensors") or name.endswith(".safetensors.index.json") for name in names):
        return
    pickled = sorted(name for name in names if name.endswith(PICKLE_SUFFIXES) or name.endswith(".bin.index.json"))
    if not pickled:
        raise ValueError(
            f"{where} {path!r} holds no weights (no *.safetensors, nor pickle *.bin/*.pt): a model folder "
            "needs its weights next to config.json; save it with save_pretrained, or point at the folder that has them"
        )
    if pickled and not allow_pickle:
        key = where.rsplit(".", 1)[0] + ".allow_pickle"
        raise ValueError(
            f"{where} {path!r} holds pickle weights only ({', '.join(pickled)}): unpickling can run "
            f"arbitrary code. Convert them to safetensors (save_pretrained(..., safe_serialization=True)), "
            f"or set {key}: true if you trust where they came from"
        )


def model_folder(path: str, revision: str | None = None) -> Path | None:
    """A model's folder: the local one, or the hub snapshot the local cache resolves ``path`` to
    (None where neither exists: nothing is downloaded)."""
    if Path(path).is_dir():
        return Path(path)
    if path.startswith((".", "/", "~")):
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(path, "config.json", revision=revision)
    except ValueError:  # not a hub id either (a folder this workflow has yet to make)
        return None
    return Path(found).parent if isinstance(found, str) else None


def _check_path(
    where: str, path: str, revision: str | None = None, *, allow_pickle: bool = False, family: Family | None = None
) -> None:
    """A local model folder with a config.json, or a hub id whose config is in the local cache;
    its weights in safetensors unless pickle is allowed; its model_type the family's."""
    if Path(path).is_dir():
        if not (Path(path) / "config.json").is_file():
            raise ValueError(f"{where} {path!r} holds no config.json: not a saved transformers model")
        _check_weights(where, path, [p.name for p in Path(path).iterdir()], allow_pickle)
        _check_model_type(where, path, Path(path) / "config.json", family)
    elif path.startswith((".", "/", "~")) or Path(path).exists():
        raise ValueError(f"{where} {path!r} does not exist")
    else:
        folder = model_folder(path, revision)
        if folder is None:
            raise ValueError(
                f"{where} {path!r} is neither a local folder nor in the local Hugging Face cache; "
                f"nothing is downloaded at run time: fetch it once with `hf download {path}`"
            )
        _check_weights(where, path, [p.name for p in folder.iterdir()], allow_pickle)
        _check_model_type(where, path, folder / "config.json", family)


def _check_model_type(where: str, path: str, config: Path, family: Family | None) -> None:
    """The checkpoint's model_type (config.json) is one the family loads; else the family that does."""
    import json

    if family is None or not family.model_types:
        return
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError) as error:
        raise ValueError(f"{where} {path!r}: its config.json cannot be read as JSON ({error})") from None
    if model_type in family.model_types:
        return
    fits = sorted(name for name, f in FAMILIES.items() if model_type in f.model_types)
    fix = f"set family: {fits[0]}" if fits else f"cuealign's families load {sorted(FAMILIES)} only"
    key = where.rsplit(".", 1)[0] + ".family"
    raise ValueError(
        f"{where} {path!r} is a {model_type!r} checkpoint (config.json model_type), but {key} is {family.name!r}, "
        f"which loads {list(family.model_types)}: it would build {family.model_class} with missing, random weights; "
        f"{fix}"
    )


def _same_model(recorded: str, path: str) -> bool:
    """Whether an adapter's recorded base and the model it is put on name the same model: the
    same string, the same folder, or a hub id and a snapshot folder of it in the HF cache."""
    if recorded == path:
        return True
    a, b = Path(recorded).expanduser(), Path(path).expanduser()
    if a.is_dir() and b.is_dir():
        return a.resolve() == b.resolve()

    def hub_id(p: Path) -> str | None:  # .../models--org--name/snapshots/<commit>
        if p.is_dir() and p.parent.name == "snapshots" and p.parent.parent.name.startswith("models--"):
            return p.parent.parent.name.removeprefix("models--").replace("--", "/")
        return None

    return hub_id(b) == recorded or hub_id(a) == path or _copy_of_hub_model(recorded, b)


def _is_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def _copy_of_hub_model(recorded: str, folder: Path) -> bool:
    """Whether a local ``folder`` is a copy of the hub model ``recorded`` (the usual case on a
    cluster without internet: `hf download <id> --local-dir <folder>`). Where the hub snapshot is
    in the local cache, by content: the same config.json and the same weights files (names, sizes,
    safetensors headers and sampled bytes). Where it is not, by name: the folder is called as the
    repository, said in the log."""
    if not (_is_hub_id(recorded) and folder.is_dir()):
        return False
    if (snapshot := model_folder(recorded)) is not None:
        return _same_files(snapshot, folder)
    if folder.name.lower() != recorded.split("/")[1].lower():
        return False
    import logging

    logging.getLogger(__name__).warning(
        "%s is taken as a copy of %s (its folder is named as the repository; the hub snapshot is not in the "
        "local cache to compare contents)",
        folder,
        recorded,
    )
    return True


def _same_files(a: Path, b: Path, samples: int = 16, width: int = 1 << 16) -> bool:
    """Two model folders with the same config.json (less transformers' own bookkeeping) and the
    same weights files: names, sizes and ``samples`` stretches of ``width`` bytes of each."""
    import json

    def config(folder: Path) -> dict:
        values = json.loads((folder / "config.json").read_text())
        return {k: v for k, v in values.items() if k not in ("transformers_version", "_name_or_path")}

    def weights(folder: Path) -> dict[str, int]:
        return {f.name: f.stat().st_size for f in folder.iterdir() if f.name.endswith(WEIGHT_SUFFIXES) and f.is_file()}

    try:
        if config(a) != config(b) or weights(a) != weights(b) or not weights(a):
            return False
        for name, size in weights(a).items():
            with open(a / name, "rb") as one, open(b / name, "rb") as other:
                for k in range(samples):
                    offset = max(0, (size - width) * k // max(1, samples - 1))
                    one.seek(offset)
                    other.seek(offset)
                    if one.read(width) != other.read(width):
                        return False
    except (OSError, ValueError):
        return False
    return True


WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)


def check_adapter_base(where: str, adapter: str, path: str) -> None:
    """A PEFT adapter records the base it was trained on; put on another model of the same shape it
    loads silently and answers wrongly, so a different base is refused, naming both. A local copy
    of the hub model it names is the same base (``_copy_of_hub_model``)."""
    import json

    recorded = json.loads((Path(adapter) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if recorded and not _same_model(recorded, path):
        copy = (
            f"; if {path!r} is a copy of {recorded!r}, put the hub snapshot in the local cache (`hf download "
            f"{recorded}`) so the two are compared, or name the folder {recorded.split('/')[1]!r}"
            if _is_hub_id(recorded)
            else ""
        )
        raise ValueError(
            f"{where}.adapter {adapter!r} was trained on {recorded!r}, not on {path!r} (models path): put it on "
            f"the model it was trained on{copy}; for a deliberate transfer to another base, set "
            "allow_adapter_transfer: true"
        )


def check_model_spec(name: str, spec: dict, corpora: list[str], *, finetuned: bool = False) -> None:
    """Fail before any model work: unknown family, missing local model, unknown corpus.

    A fine-tuned model's folder (or adapter) is made by the workflow, so only its base is checked.
    """
    entry = family(spec["family"])
    where = f"config: models.{name}"
    if entry.backend == "clap":
        if spec["mode"] != "score":
            raise ValueError(f"{where}.mode: {spec['mode']!r}, but clap only scores label prompts; set mode: score")
        if spec.get("adapter"):
            raise ValueError(f"{where}.adapter: clap takes no PEFT adapter here; remove the key")
        for key, default in (("system_prompt", None), ("label_variants", "exact")):
            if spec.get(key, default) != default:
                raise ValueError(f"{where}.{key}: clap has no chat turn to prompt; remove the key")
    elif spec.get("label_prompt") not in (None, DEFAULT_LABEL_PROMPT):
        raise ValueError(
            f"{where}.label_prompt is for clap models only; {spec['family']} reads the labels from the prompt"
        )
    if "{label}" not in spec["label_prompt"]:
        raise ValueError(f"{where}.label_prompt {spec['label_prompt']!r} has no {{label}} slot for the class name")
    if spec.get("revision") and Path(spec["path"]).is_dir():
        raise ValueError(
            f"{where}.revision {spec['revision']!r}: a revision picks a snapshot of a hub id, but path "
            f"{spec['path']!r} is a local folder, whose files are what loads (the tables would name a revision "
            "that was never loaded); remove revision, or set path to the hub id"
        )
    _check_files(where, spec, entry, finetuned=finetuned)
    _check_numerics(where, spec)
    if spec["gpus"] > 1 and spec["device"] != "auto":
        raise ValueError(
            f"{where}: gpus {spec['gpus']} with device {spec['device']!r} would leave all but one idle; "
            "set device: auto"
        )
    if stray := sorted(set(spec.get("corpora") or []) - set(corpora)):
        raise ValueError(f"{where}.corpora names {stray}, which are not in corpora ({sorted(corpora)})")


def _check_files(where: str, spec: dict, entry: Family, *, finetuned: bool) -> None:
    """The model's files (its base's for a model this workflow fine-tunes) and its adapter's."""
    allow_pickle = spec["allow_pickle"]
    if entry.name == "paraclap":
        _check_paraclap(where, spec)
    elif entry.name == "msclap":
        _check_msclap(where, spec)
    elif not finetuned or spec.get("adapter"):
        _check_path(f"{where}.path", spec["path"], spec.get("revision"), allow_pickle=allow_pickle, family=entry)
    if not finetuned and spec.get("adapter"):
        adapter = Path(spec["adapter"])
        if not (adapter / "adapter_config.json").is_file():
            raise ValueError(
                f"{where}.adapter {spec['adapter']!r} is not a saved PEFT adapter (no adapter_config.json)"
            )
        _check_weights(f"{where}.adapter", spec["adapter"], [p.name for p in adapter.iterdir()], allow_pickle)
        if not spec["allow_adapter_transfer"]:
            check_adapter_base(where, spec["adapter"], spec["path"])


def _check_paraclap(where: str, spec: dict) -> None:
    """A ParaCLAP folder as cuealign/models/paraclap.py lays it out: the released checkpoint and
    the configs (and BERT's vocabulary) of its two base models; float32 only."""
    import json

    folder = Path(spec["path"])
    layout = (
        "best.pth.tar (hf download KeiKinn/paraclap best.pth.tar), speech/config.json "
        "(audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim) and text/config.json with vocab.txt "
        "(bert-base-uncased)"
    )
    if not folder.is_dir():
        raise ValueError(f"{where}.path {spec['path']!r} is not a folder; a paraclap folder holds {layout}")
    needed = ["best.pth.tar", "speech/config.json", "text/config.json", "text/vocab.txt"]
    if missing := [name for name in needed if not (folder / name).is_file()]:
        raise ValueError(f"{where}.path {spec['path']!r} lacks {missing}; a paraclap folder holds {layout}")
    for part, model_type in (("speech", "wav2vec2"), ("text", "bert")):
        found = json.loads((folder / part / "config.json").read_text()).get("model_type")
        if found != model_type:
            raise ValueError(f"{where}.path: {part}/config.json is a {found!r} model, not {model_type!r}; {layout}")
    if spec["dtype"] not in ("auto", "float32"):
        raise ValueError(f"{where}.dtype: paraclap runs in its checkpoint's float32; set dtype: auto")


# msclap's released checkpoints, and the text model each version reads (its configs' text_model)
MSCLAP_CHECKPOINT = re.compile(r"CLAP_weights_(2022|2023)\.pth$")
MSCLAP_TEXT_MODEL = {"2022": "bert", "2023": "gpt2"}


def _check_msclap(where: str, spec: dict) -> None:
    """An msclap folder as cuealign/models/msclap.py lays it out: one released checkpoint and its
    version's text model (config and tokenizer) under text/; float32 only."""
    import json

    folder = Path(spec["path"])
    layout = (
        "CLAP_weights_2022.pth (hf download microsoft/msclap CLAP_weights_2022.pth) with text/ holding "
        "bert-base-uncased's config.json, vocab.txt and tokenizer_config.json, or CLAP_weights_2023.pth with "
        "text/ holding gpt2's config.json, vocab.json, merges.txt and tokenizer_config.json"
    )
    if not folder.is_dir():
        raise ValueError(f"{where}.path {spec['path']!r} is not a folder; an msclap folder holds {layout}")
    found = sorted(p.name for p in folder.iterdir() if MSCLAP_CHECKPOINT.search(p.name))
    if len(found) != 1:
        held = found or "no CLAP_weights_*.pth"
        raise ValueError(f"{where}.path {spec['path']!r} holds {held}; it needs one of {layout}")
    version = MSCLAP_CHECKPOINT.search(found[0]).group(1)
    text = folder / "text"
    if not (text / "config.json").is_file():
        raise ValueError(f"{where}.path {spec['path']!r} lacks text/config.json; an msclap folder holds {layout}")
    expected = MSCLAP_TEXT_MODEL[version]
    if (model_type := json.loads((text / "config.json").read_text()).get("model_type")) != expected:
        raise ValueError(
            f"{where}.path: text/config.json is a {model_type!r} model, but {found[0]} reads text with {expected!r}; "
            f"an msclap folder holds {layout}"
        )
    tokenizer = ["vocab.txt"] if expected == "bert" else ["vocab.json", "merges.txt"]
    if not (text / "tokenizer.json").is_file() and (missing := [n for n in tokenizer if not (text / n).is_file()]):
        raise ValueError(f"{where}.path {spec['path']!r} lacks text/{missing[0]} (the tokenizer); {layout}")
    if spec["dtype"] not in ("auto", "float32"):
        raise ValueError(f"{where}.dtype: msclap runs in its checkpoint's float32; set dtype: auto")


def _check_numerics(where: str, spec: dict) -> None:
    if spec["numerics"] == "portable" and spec["device"] != "cpu":
        raise ValueError(
            f"{where}.numerics: portable is for CPU jobs (device {spec['device']!r} computes on a GPU, whose "
            "kernels have no portable mode); set numerics: auto, or device: cpu"
        )


def finetune_dtype(spec: dict) -> str:
    """finetune.<name>.dtype as applied: auto is the base's own dtype for LoRA (the frozen base
    stays as released), float32 for full fine-tuning and for a model built from architecture."""
    if spec["dtype"] != "auto":
        return spec["dtype"]
    return "auto" if spec["method"] == "lora" and spec["base"] else "float32"


def check_finetune_spec(name: str, spec: dict, corpora: list[str]) -> None:
    """config: finetune.<name>: a known family and corpus, a base for LoRA, some condition to train on."""
    where = f"config: finetune.{name}"
    if family(spec["family"]).backend != "alm":
        raise ValueError(
            f"{where}.family {spec['family']!r}: finetune trains audio-language models; "
            f"choose one of {sorted(k for k, v in FAMILIES.items() if v.backend == 'alm')}"
        )
    if spec["corpus"] not in corpora:
        raise ValueError(f"{where}.corpus {spec['corpus']!r} is not in corpora ({sorted(corpora)})")
    if spec["method"] == "lora" and not spec["base"]:
        raise ValueError(
            f"{where}: method lora trains an adapter on a pretrained model; set base to its folder or hub id"
        )
    if spec["base"]:
        _check_path(f"{where}.base", spec["base"], allow_pickle=spec["allow_pickle"], family=family(spec["family"]))
    _check_numerics(where, spec)
    window = spec["architecture"]["audio_window_s"]
    if not spec["base"] and window != 30 and spec["family"] != "qwen2-audio":
        raise ValueError(
            f"{where}.architecture.audio_window_s: {window} s is built for qwen2-audio only ({spec['family']} "
            "keeps its released window); remove the key or set family: qwen2-audio"
        )
    if not any(weight > 0 for weight in spec["mix"].values()):
        raise ValueError(
            f"{where}.mix gives every condition weight 0; give one of none, aligned, tokens_only a weight > 0"
        )


# generate mode's decoding, whatever a checkpoint's generation_config says; in every answer's
# cache key and in RUN.json
GREEDY_DECODING = {"do_sample": False, "num_beams": 1, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
