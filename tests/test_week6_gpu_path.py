"""Week 6 on the ``gpu`` profile's code path: the dish titles, a tiny random-weight ``StableDiffusionPipeline``
(SD 2.x's classes) for Stable Diffusion 2.1 and a tiny Hub-layout ``CLIPModel`` for openai's, through the same cells
(run, kill and resume, shards, the grid with the seed's filler categories); the template captioner stands in for
gemma-3, whose path (a chat model through transformers) is tested on a tiny random model in test_synthetic.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from course_utils.course.paths import WEEKS_DIR


@pytest.mark.slow
def test_week6_notebook_runs_on_the_gpu_code_path(tiny_sd_family: dict[str, Path], tmp_path: Path) -> None:
    from notebooks import execute_notebook
    from tiny_pipelines import build_tiny_clip

    notebook = WEEKS_DIR / "06_synthetic_data" / "06_synthetic_data.ipynb"
    parameters = {"profile": "gpu", "device": "cpu", "text_to_image": str(tiny_sd_family["sd"]),
                  "captioner": "template", "clip_model": str(build_tiny_clip(tmp_path / "clip")),
                  "n_titles": 4, "inference_steps": 2, "kill_after": 4}  # fmt: skip
    text, images = execute_notebook(notebook, parameters, tmp_path)
    assert f"profile gpu: template captions, {tiny_sd_family['sd']} images, on cpu" in text
    assert "12 images of 4 titles, 0 failed" in text
    assert "Almond Horchata" in text  # the dish titles, not the shapes world
    assert "datasets reads 12 rows" in text
    assert len(images) >= 2  # the images by title, the grid
