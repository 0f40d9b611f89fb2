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
