"""Shared fixtures: small corpora in their real layouts (built by tests/fakes.py)."""

from pathlib import Path

import pytest

from tests.fakes import make_aibo, make_iemocap


@pytest.fixture
def iemocap_root(tmp_path: Path) -> Path:
    return make_iemocap(tmp_path / "IEMOCAP")


@pytest.fixture
def aibo_root(tmp_path: Path) -> Path:
    return make_aibo(tmp_path / "aibo")


PROMPT_TEXTS = [
    "What emotion does the speaker express? Answer with one word from: angry, happy, neutral, sad.",
    "\nAcoustic cues measured from the audio: ENERGY=VERY_HIGH; PITCH=MID; BRIGHTNESS=VERY_BRIGHT; "
    "DYNAMICS=VERY_DYNAMIC; FORMANTS=LOW; VOICE_QUALITY=BREATHY.",
    "VERY_LOW LOW MID HIGH VERY_HIGH VERY_DARK DARK BRIGHT VERY_STATIC STATIC DYNAMIC MODAL PRESSED ROUGH CREAKY",
    "angry happy neutral sad",
]


def _tiny(family, tmp_path_factory) -> Path:
    from cuealign.backends.tiny import build_tiny_alm

    return build_tiny_alm(family, tmp_path_factory.mktemp("models") / family, PROMPT_TEXTS * 3)


@pytest.fixture(scope="session")
def tiny_qwen2_audio(tmp_path_factory) -> Path:
    """A ~0.5 MB random-weight Qwen2-Audio of the real class, saved with save_pretrained."""
    return _tiny("qwen2-audio", tmp_path_factory)


@pytest.fixture(scope="session", params=["qwen2-audio", "audio-flamingo-3"])
def tiny_alm(request, tmp_path_factory) -> tuple[str, Path]:
    """(family, path) of a tiny random-weight model of each registered audio-language family."""
    return request.param, _tiny(request.param, tmp_path_factory)
