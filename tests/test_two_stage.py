"""The two-stage (DeepFloyd IF stage I → stage II) step study, on tiny random-weight IF pipelines."""

from __future__ import annotations

import pytest
import torch
from tiny_pipelines import IF_SAMPLE_SIZE, build_tiny_if_upscaler

from course_utils.course.paths import MODELS_DIR
from course_utils.errors import CourseError
from course_utils.sd.two_stage import load_two_stage, two_stage_generate, two_stage_study

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread

PROMPTS = ["a rocket ship", "a man wearing a hat"]


@pytest.fixture(scope="module")
def upscaler(tmp_path_factory):
    return build_tiny_if_upscaler(tmp_path_factory.mktemp("tiny-if-ii") / "IF-II-tiny")


def test_two_stages_upscale_reproducibly(tiny_if_path, upscaler, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    stages = load_two_stage(str(tiny_if_path), str(upscaler), device="cpu")
    assert stages[1].text_encoder is None  # stage II reuses stage I's embeddings
    low, high = two_stage_generate(stages, PROMPTS, steps=(2, 3), seed=1213)
    assert low.shape == (2, 3, IF_SAMPLE_SIZE, IF_SAMPLE_SIZE) and high.shape == (
        2,
        3,
        2 * IF_SAMPLE_SIZE,
        2 * IF_SAMPLE_SIZE,
    )
    assert low.abs().max() <= 1 and high.abs().max() <= 1
    again = two_stage_generate(stages, PROMPTS, steps=(2, 3), seed=1213)[1]
    torch.testing.assert_close(high, again)
    assert not torch.equal(high, two_stage_generate(stages, PROMPTS, steps=(3, 3), seed=1213)[1])
    with pytest.raises(CourseError, match="two positive whole numbers"):
        two_stage_generate(stages, PROMPTS, steps=(0, 3), seed=0)


@pytest.mark.skipif(not (MODELS_DIR / "shapes-clip" / "config.json").is_file(), reason="run `make models`")
def test_the_study_grids_and_measures_every_pair(tiny_if_path, upscaler):
    pairs = [[1, 2], [2, 1]]
    study = two_stage_study(
        str(tiny_if_path),
        str(upscaler),
        prompts=PROMPTS,
        steps=pairs,
        device="cpu",
        clip_model=str(MODELS_DIR / "shapes-clip"),
    )
    assert study.table["steps (I, II)"] == ["1, 2", "2, 1"] and len(study.table["clip_score"]) == 2
    assert len(study.images) == 4 and study.ncols == 2 and study.labels[:2] == ["steps 1, 2", "steps 2, 1"]


def test_a_non_if_model_is_refused(tiny_shapes_sd_path, upscaler):
    with pytest.raises(CourseError, match="takes DeepFloyd IF stages"):
        load_two_stage(str(tiny_shapes_sd_path), str(upscaler), device="cpu")
