"""Shared pytest fixtures: tiny random-weight pipelines (see ``tests/tiny_pipelines.py``), built once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so tests import ``tiny_pipelines`` wherever pytest runs

from tiny_pipelines import build_tiny_if  # noqa: E402


@pytest.fixture(scope="session")
def tiny_if_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight DeepFloyd IF stage I pipeline folder (``IFPipeline``, 16×16 pixels, T5 d_model 32)."""
    return build_tiny_if(tmp_path_factory.mktemp("tiny-if") / "IF-I-tiny")
