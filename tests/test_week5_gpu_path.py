"""Week 5 on the ``gpu`` profile's code path: a tiny random-weight ``StableDiffusionPipeline`` (SD 2.x's classes,
``tests/tiny_pipelines.py``) stands in for Stable Diffusion 2.1, loaded by the same ``from_pretrained`` call and
fine-tuned by the same cells (DreamBooth with prior preservation, reloaded from its folder); the shapes reader's
measures are skipped there."""

from __future__ import annotations

from pathlib import Path

import pytest

from course_utils.course.paths import WEEKS_DIR


@pytest.mark.slow
def test_week5_notebook_runs_on_the_gpu_code_path(tiny_sd_family: dict[str, Path], tmp_path: Path) -> None:
    from notebooks import execute_notebook

    notebook = WEEKS_DIR / "05_finetuning" / "05_finetuning.ipynb"
    parameters = {"profile": "gpu", "device": "cpu", "text_to_image": str(tiny_sd_family["sd"]),
                  "finetune_steps": 3, "n_seeds": 2, "inference_steps": 2}  # fmt: skip
    text, images = execute_notebook(notebook, parameters, tmp_path)
    assert f"profile gpu: fine-tuning {tiny_sd_family['sd']}" in text
    assert "3 steps (all steps)" in text
    assert "datasets loads 14 rows" in text
    assert len(images) >= 3  # instance pictures, the loss curves, the before/after grid
