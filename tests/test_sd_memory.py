"""Memory plans for small GPUs (course_utils.sd.memory): what each seed model gets on a 15 GB T4 and on bigger GPUs,
the command line's overrides and their refusals, and applying a plan to a tiny pipeline on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from diffusers.models.attention_processor import SlicedAttnProcessor
from tiny_pipelines import build_tiny_sd, build_tiny_sd3

from course_utils.errors import CourseError
from course_utils.sd.memory import (
    FOOTPRINTS,
    USABLE_SHARE,
    MemoryPlan,
    apply_memory_plan,
    estimated_peak_gb,
    footprint_of,
    override_plan,
    plan_memory,
)
from course_utils.sd.support import check_request

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread

T4_GB = 15.0

# (attention slicing, model offload, sequential offload, VAE tiling) on a 15 GB T4, float16
T4_PLANS = {
    "stabilityai/stable-diffusion-2-1": (True, False, False, False),
    "stabilityai/stable-diffusion-2-1-base": (True, False, False, False),
    "stabilityai/sd-turbo": (True, False, False, False),
    "stabilityai/stable-diffusion-xl-base-1.0": (False, True, False, True),
    "stabilityai/sdxl-turbo": (True, False, False, False),  # 512²: the whole pipeline fits
    "stabilityai/stable-diffusion-3.5-medium": (False, True, False, False),
    "stabilityai/stable-diffusion-3.5-large-turbo": (False, False, True, False),  # 16 GB transformer
}


def levers(plan: MemoryPlan) -> tuple[bool, bool, bool, bool]:
    return plan.attention_slicing, plan.model_cpu_offload, plan.sequential_cpu_offload, plan.vae_tiling


@pytest.mark.parametrize("model_id", list(T4_PLANS))
def test_each_seed_model_fits_a_t4(model_id):
    settings, _ = check_request(model_id)
    plan = plan_memory(settings, gpu_memory_gb=T4_GB)
    assert plan.dtype == "float16" and plan.device == "cuda"  # a T4 has no bfloat16
    assert levers(plan) == T4_PLANS[model_id], plan.reasons
    assert all("\n" not in r for r in plan.reasons)


@pytest.mark.parametrize("model_id", list(T4_PLANS))
def test_each_seed_models_t4_plan_keeps_its_estimated_peak_within_the_t4(model_id):
    """The footprint, not the levers: under its plan each model's estimated peak fits the T4's usable memory, and
    a plan that offloads does so because leaving everything on the GPU would not fit."""
    settings, _ = check_request(model_id)
    plan = plan_memory(settings, gpu_memory_gb=T4_GB)
    assert estimated_peak_gb(settings, plan) <= USABLE_SHARE * T4_GB, plan.reasons
    whole = MemoryPlan("float16", False, False, False, False, "cuda")
    offloads = plan.model_cpu_offload or plan.sequential_cpu_offload
    assert offloads == (estimated_peak_gb(settings, whole) > USABLE_SHARE * T4_GB), plan.reasons
    if plan.sequential_cpu_offload:  # model offload would not have done
        model = MemoryPlan("float16", False, True, False, False, "cuda")
        assert estimated_peak_gb(settings, model) > USABLE_SHARE * T4_GB


def test_the_estimate_adds_the_weights_and_the_larger_activation_peak():
    settings, _ = check_request("stabilityai/stable-diffusion-2-1-base")
    whole = MemoryPlan("float16", False, False, False, False, "cuda")
    fp = FOOTPRINTS["stabilityai/stable-diffusion-2-1-base"]
    assert estimated_peak_gb(settings, whole) == pytest.approx(fp.total_gb + max(1.0, 0.7))
    model = MemoryPlan("float16", False, True, False, False, "cuda")
    assert estimated_peak_gb(settings, model) == pytest.approx(fp.weights_gb["unet"] + 1.0)  # the U-Net at work


def test_sdxl_turbo_at_1024_gets_sdxls_plan():
    settings, _ = check_request("stabilityai/sdxl-turbo", height=1024, width=1024)
    assert levers(plan_memory(settings, gpu_memory_gb=T4_GB)) == T4_PLANS["stabilityai/stable-diffusion-xl-base-1.0"]


def test_bigger_gpus_offload_less():
    large_turbo, _ = check_request("stabilityai/stable-diffusion-3.5-large-turbo")
    assert levers(plan_memory(large_turbo, gpu_memory_gb=24.0)) == (False, True, False, False)
    for model_id in T4_PLANS:
        settings, _ = check_request(model_id)
        assert levers(plan_memory(settings, gpu_memory_gb=80.0)) == (False, False, False, False), model_id


def test_footprints_add_up_from_the_model_cards():
    medium = FOOTPRINTS["stabilityai/stable-diffusion-3.5-medium"]
    assert max(medium.weights_gb, key=medium.weights_gb.get) == "text_encoder_3"  # T5-XXL, 4.76 B parameters
    assert FOOTPRINTS["stabilityai/stable-diffusion-3.5-large-turbo"].weights_gb["transformer"] == pytest.approx(16.2)
    assert 16 < medium.total_gb < 17 and 6.5 < FOOTPRINTS["stabilityai/sdxl-turbo"].total_gb < 7.5


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "sd")


def test_a_folders_footprint_is_read_from_its_safetensors_headers(tiny_sd):
    settings, _ = check_request(str(tiny_sd))
    pipe = DiffusionPipeline.from_pretrained(tiny_sd)
    fp = footprint_of(settings)
    assert set(fp.weights_gb) == {"unet", "vae", "text_encoder"} and fp.denoiser == "unet"
    for name, gb in fp.weights_gb.items():
        assert gb == pytest.approx(sum(p.numel() for p in getattr(pipe, name).parameters()) * 2 / 1e9)
    plan = plan_memory(settings, gpu_memory_gb=T4_GB)
    assert levers(plan) == (False, False, False, False)  # a test-size model needs nothing


def test_the_cpu_runs_float32_with_nothing_else(tiny_sd):
    settings, _ = check_request(str(tiny_sd))
    plan = plan_memory(settings, device="cpu")
    assert plan == MemoryPlan("float32", False, False, False, False, "cpu")
    hub, _ = check_request("stabilityai/stable-diffusion-3.5-large-turbo")
    assert plan_memory(hub, device="cpu") == plan


def test_flags_override_the_plan():
    settings, _ = check_request("stabilityai/stable-diffusion-xl-base-1.0")
    plan = plan_memory(settings, gpu_memory_gb=T4_GB)
    changed = override_plan(
        plan, family="sdxl", dtype="bfloat16", attention_slicing=True, cpu_offload="sequential", vae_tiling=False
    )
    assert changed.dtype == "bfloat16" and levers(changed) == (True, False, True, False)
    assert changed.cpu_offload == "sequential" and "overridden" in changed.reasons[-1]
    assert override_plan(plan, family="sdxl", cpu_offload="none").cpu_offload == "none"
    assert override_plan(plan, family="sdxl") is plan


def test_overrides_that_cannot_work_are_refused():
    cpu = MemoryPlan("float32", False, False, False, False, "cpu")
    with pytest.raises(CourseError, match="dtype 'float16' needs a GPU"):
        override_plan(cpu, family="sd", dtype="float16")
    with pytest.raises(CourseError, match="--cpu_offload model moves weights to a CUDA GPU; the device is cpu"):
        override_plan(cpu, family="sd", cpu_offload="model")
    with pytest.raises(CourseError, match="unknown cpu_offload 'all'; valid cpu_offloads: none, model, sequential"):
        override_plan(cpu, family="sd", cpu_offload="all")
    with pytest.raises(CourseError, match="SD3's transformer has none"):
        override_plan(cpu, family="sd3", attention_slicing=True)
    with pytest.raises(CourseError, match="choose one CPU offload"):
        MemoryPlan("float16", False, True, True, False, "cuda")
    with pytest.raises(CourseError, match="unknown dtype 'float8'"):
        MemoryPlan("float8", False, False, False, False, "cuda")


def test_a_plan_applies_to_a_tiny_pipeline_on_the_cpu(tiny_sd, tmp_path):
    def images(pipe):
        pipe.set_progress_bar_config(disable=True)
        out = pipe("a red dog", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
        return out.images

    reference = images(DiffusionPipeline.from_pretrained(tiny_sd))
    pipe = apply_memory_plan(
        DiffusionPipeline.from_pretrained(tiny_sd), MemoryPlan("float32", True, False, False, True, "cpu")
    )
    assert all(isinstance(p, SlicedAttnProcessor) for p in pipe.unet.attn_processors.values())
    assert pipe.vae.use_tiling and pipe.device.type == "cpu"
    np.testing.assert_allclose(images(pipe), reference, atol=1e-5)  # slicing and tiling change memory, not images

    sd3 = DiffusionPipeline.from_pretrained(build_tiny_sd3(tmp_path / "sd3"))
    with pytest.raises(CourseError, match="attention slicing is for U-Net pipelines"):
        apply_memory_plan(sd3, MemoryPlan("float32", True, False, False, False, "cpu"))


def test_apple_silicon_runs_half_precision_and_slices_u_nets():
    sd, _ = check_request("stabilityai/sd-turbo")
    sd3, _ = check_request("stabilityai/stable-diffusion-3.5-medium")
    assert plan_memory(sd, device=torch.device("mps")) == MemoryPlan("float16", True, False, False, False, "mps")
    assert plan_memory(sd3, device=torch.device("mps")) == MemoryPlan("float16", False, False, False, False, "mps")


def test_a_device_that_disagrees_with_the_plan_is_refused_and_one_that_agrees_is_used(tiny_sd):
    from course_utils.sd.pipeline import load_pipeline

    cpu_plan = MemoryPlan("float32", False, False, False, False, "cpu")
    with pytest.raises(CourseError, match="device='mps' and a memory plan for 'cpu' disagree"):
        load_pipeline(str(tiny_sd), plan=cpu_plan, device="mps")
    loaded = load_pipeline(str(tiny_sd), plan=cpu_plan, device="cpu")
    assert loaded.pipe.device.type == "cpu" and loaded.plan == cpu_plan
