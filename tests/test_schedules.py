"""Schedules equal diffusers' β and ᾱ; NoiseSchedule reads scheduler configs; bad names are refused."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from course_utils.errors import CourseError
from course_utils.sampling.schedules import NoiseSchedule, alphas_cumprod, make_betas


@pytest.mark.parametrize(
    ("ours", "theirs"), [("linear", "linear"), ("scaled_linear", "scaled_linear"), ("cosine", "squaredcos_cap_v2")]
)
def test_betas_match_diffusers(ours, theirs):
    # diffusers' defaults are DDPM's β range; the scaled-linear schedule is Stable Diffusion's
    betas = {"beta_start": 0.00085, "beta_end": 0.012} if ours == "scaled_linear" else {}
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=theirs, **betas)
    torch.testing.assert_close(make_betas(ours, 1000), ref.betas, rtol=0, atol=1e-7)
    torch.testing.assert_close(alphas_cumprod(make_betas(ours, 1000)), ref.alphas_cumprod, rtol=0, atol=1e-6)


def test_alpha_bar_decreases_from_one_to_near_zero():
    for name in ("linear", "scaled_linear", "cosine"):
        a = NoiseSchedule.from_name(name).alphas_cumprod
        assert (a[1:] < a[:-1]).all(), name
        assert 0.99 < a[0] <= 1 and a[-1] < 0.01, name


def test_from_scheduler_reads_prediction_type_and_clipping():
    s = NoiseSchedule.from_scheduler(DDIMScheduler(prediction_type="v_prediction", clip_sample=False))
    assert s.prediction_type == "v_prediction" and s.clip_x0 is None and s.num_timesteps == 1000
    s = NoiseSchedule.from_scheduler(DDPMScheduler(clip_sample=True, clip_sample_range=2.0))
    assert s.clip_x0 == 2.0


def test_unknown_names_are_refused_with_valid_choices():
    with pytest.raises(CourseError, match="valid noise schedules: linear, scaled_linear, cosine"):
        make_betas("quadratic")
    with pytest.raises(CourseError, match="epsilon"):
        NoiseSchedule(torch.ones(3), prediction_type="x0")
