"""Week 4a on the ``gpu`` profile's code path: a tiny random-weight ``StableDiffusionPipeline`` (SD 2.x's classes,
``tests/tiny_pipelines.py``) stands in for Stable Diffusion 2.1, loaded by the same ``from_pretrained`` call. The
anatomy tables and the cross-attention maps run on it; the two studies, which need the shapes world's scenes, say
that they are skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from course_utils.course.paths import WEEKS_DIR


@pytest.mark.slow
def test_week4a_notebook_runs_on_the_gpu_code_path(tiny_sd_family: dict[str, Path], tmp_path: Path) -> None:
    from notebooks import execute_notebook

    notebook = WEEKS_DIR / "04_unet_from_scratch" / "04a_unet_internals.ipynb"
    parameters = {"profile": "gpu", "device": "cpu", "text_to_image": str(tiny_sd_family["sd"]), "steps": 2}
    text, images = execute_notebook(notebook, parameters, tmp_path)
    assert f"profile gpu: {tiny_sd_family['sd']} on cpu" in text
    assert "CrossAttnDownBlock2D" in text and "mid_block" in text
    assert "the attention-mass study needs the shapes world's object masks" in text
    assert "the coarse-to-fine study uses the shapes world's renders" in text
    # τ(t), and one token-map grid per prompt at each of the two coarsest resolutions
    assert len(images) == 1 + 2 * 3
