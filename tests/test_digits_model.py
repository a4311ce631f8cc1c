"""The committed digits DDPM: loads offline through from_pretrained, samples the digits it is asked for."""

import subprocess
import sys

import pytest
import torch
from diffusers import DDPMPipeline, DiffusionPipeline, UNet2DModel

from course_utils.course.paths import MODELS_DIR
from course_utils.denoisers import DigitsDenoiser, load_denoiser
from course_utils.errors import CourseError
from course_utils.metrics import agreement
from course_utils.sampling.diffusion import ddim_sample, strided_timesteps


@pytest.fixture(scope="module")
def den():
    return load_denoiser("course/digits-ddpm", device="cpu")


def test_loads_offline_with_the_hub_call(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = DiffusionPipeline.from_pretrained(MODELS_DIR / "digits-ddpm")
    assert isinstance(pipe, DDPMPipeline) and isinstance(pipe.unet, UNet2DModel)
    assert pipe.unet.config.num_class_embeds == 11 and pipe.unet.config.sample_size == 8
    weights = list((MODELS_DIR / "digits-ddpm").rglob("*.safetensors"))
    assert weights and not list((MODELS_DIR / "digits-ddpm").rglob("*.bin"))


def test_denoiser_interface(den):
    assert isinstance(den, DigitsDenoiser) and den.sample_shape == (1, 8, 8)
    assert den.schedule.clip_x0 == 1.0 and den.schedule.num_timesteps == 1000
    assert den.condition(["3", 7]).tolist() == [3, 7]
    assert den.null_condition(2).tolist() == [10, 10]
    with pytest.raises(CourseError, match="digit 0-9"):
        den.condition(["a cat"])


def sample(den, labels, *, seed, w=1.0, steps=25):
    x_T = den.noise(len(labels), generator=torch.Generator().manual_seed(seed))
    return ddim_sample(
        den,
        x_T,
        strided_timesteps(1000, steps),
        schedule=den.schedule,
        cond=den.condition(labels.tolist()),
        uncond=den.null_condition(len(labels)),
        guidance_scale=w,
    )


@pytest.mark.parametrize("w", [1.0, 3.0])
def test_samples_are_the_requested_digits(den, w):
    labels = torch.arange(10).repeat(3)
    assert agreement(sample(den, labels, seed=0, w=w), labels) >= 0.9


def test_unconditional_samples_do_not_follow_labels(den):
    """w = 0 ignores the label: agreement falls to roughly chance, so the label really steers the model."""
    labels = torch.arange(10).repeat(3)
    assert agreement(sample(den, labels, seed=0, w=0.0), labels) < 0.5


def test_sampling_is_deterministic_under_a_seed(den):
    labels = torch.arange(4)
    assert torch.equal(sample(den, labels, seed=1), sample(den, labels, seed=1))
    assert not torch.equal(sample(den, labels, seed=1), sample(den, labels, seed=2))


def test_build_refuses_bad_input_in_one_line():
    out = subprocess.run(
        [sys.executable, "-m", "course_utils.models.build", "--steps", "0", "--out", "/nonexistent"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--steps must be a positive number" in out.stderr


def test_eval_only_keeps_the_steps_the_saved_model_trained_and_the_card_says_them(tmp_path):
    import json
    import shutil

    from course_utils.models.build import main

    copy = shutil.copytree(MODELS_DIR / "digits-ddpm", tmp_path / "digits-ddpm")
    metrics = json.loads((copy / "metrics.json").read_text())
    (copy / "metrics.json").write_text(json.dumps({**metrics, "train_steps": 1234}))
    assert main(["--only", "digits", "--eval-only", "--out", str(tmp_path)]) == 0
    assert json.loads((copy / "metrics.json").read_text())["train_steps"] == 1234
    assert "- Training: 1234 steps," in (copy / "README.md").read_text()

    (copy / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "train_steps"}))
    assert main(["--only", "digits", "--eval-only", "--out", str(tmp_path)]) == 0
    assert "- Training: steps not recorded," in (copy / "README.md").read_text()


@pytest.fixture(scope="module")
def pipe():
    from course_utils.models.digits import DigitsPipeline

    pipe = DigitsPipeline.from_pretrained(MODELS_DIR / "digits-ddpm")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_pipeline_samples_the_requested_digits_in_one_call(pipe):
    """A plain DDPMPipeline cannot sample this folder (its U-Net needs class labels); DigitsPipeline can."""
    with pytest.raises(ValueError, match="class_labels should be provided"):
        DDPMPipeline.from_pretrained(MODELS_DIR / "digits-ddpm")(num_inference_steps=2)
    labels = torch.arange(10).repeat(3)
    out = pipe(
        class_labels=labels, guidance_scale=3.0, num_inference_steps=25, generator=torch.Generator().manual_seed(0)
    )
    assert len(out.images) == 30 and out.images[0].size == (8, 8)
    images = pipe(
        class_labels=labels, num_inference_steps=25, generator=torch.Generator().manual_seed(0), output_type="pt"
    ).images  # (B, 1, 8, 8) in [0, 1]
    assert images.shape == (30, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
    assert agreement(images * 2 - 1, labels) >= 0.9


@pytest.mark.parametrize("w", [1.0, 3.0])
def test_the_pipeline_equals_the_course_sampler_on_the_same_noise(pipe, den, w):
    """With DDIM, DigitsPipeline's guided loop is the course's ddim_sample (same x_T, same timesteps)."""
    from diffusers import DDIMScheduler

    from course_utils.models.digits import DigitsPipeline

    ddim = DigitsPipeline(unet=pipe.unet, scheduler=DDIMScheduler.from_config(pipe.scheduler.config))
    ddim.set_progress_bar_config(disable=True)
    labels = torch.tensor([0, 3, 7, 9])
    ddim.scheduler.set_timesteps(20)
    x_T = den.noise(4, generator=torch.Generator().manual_seed(5))
    course = ddim_sample(
        den,
        x_T,
        ddim.scheduler.timesteps.tolist(),
        schedule=den.schedule,
        cond=den.condition(labels.tolist()),
        uncond=den.null_condition(4),
        guidance_scale=w,
    )
    expected = (course / 2 + 0.5).clamp(0, 1)
    got = ddim(
        class_labels=labels,
        guidance_scale=w,
        num_inference_steps=20,
        generator=torch.Generator().manual_seed(5),
        output_type="pt",
    ).images
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_the_pipeline_refuses_what_is_not_a_digit(pipe):
    with pytest.raises(CourseError, match="digits 0-9"):
        pipe(class_labels=[3, 10])
    with pytest.raises(CourseError, match="output type"):
        pipe(class_labels=[3], output_type="latent")
