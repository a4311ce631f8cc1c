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


@pytest.fixture(scope="session")
def tiny_shapes_sd_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight miniature Stable Diffusion folder of the course's architecture at test size."""
    from tiny_pipelines import build_tiny_shapes_sd

    return build_tiny_shapes_sd(tmp_path_factory.mktemp("tiny-shapes-sd") / "shapes-sd")


@pytest.fixture(scope="session")
def tiny_sd_family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random-weight SD 2.x, SDXL and SD3 pipeline folders, by family name."""
    from tiny_pipelines import build_tiny_sd, build_tiny_sd3, build_tiny_sdxl

    root = tmp_path_factory.mktemp("tiny-sd-family")
    return {
        "sd": build_tiny_sd(root / "sd"),
        "sdxl": build_tiny_sdxl(root / "sdxl"),
        "sd3": build_tiny_sd3(root / "sd3"),
    }


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests: the models are tiny, so one thread is as fast, and two threads on a
    busy 2-core machine run up to 40 × slower (OpenMP workers spin against each other)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
