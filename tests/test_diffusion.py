"""The forward process and the hand-written samplers.

1. Parity: on the same model, initial noise, timesteps and per-step noise, ``ddpm_sample`` and
   ``ddim_sample`` reproduce diffusers' ``DDPMScheduler`` / ``DDIMScheduler`` loops to ≤ 1e-5.
2. Behaviour: with the *exact* ε-predictor of Gaussian data, sampling recovers the data's mean and std.
3. Golden values on a full loop (produced by diffusers' schedulers on the same inputs).
"""

import re

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from course_utils.errors import CourseError
from course_utils.sampling.diffusion import (
    ddim_sample,
    ddim_step,
    ddpm_sample,
    ddpm_step,
    denoise_steps,
    eps_and_x0,
    predict_x0,
    q_sample,
    strided_timesteps,
)
from course_utils.sampling.schedules import NoiseSchedule

PARITY_TOL = 1e-5


@pytest.fixture(scope="module")
def tiny_unet():
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
        num_class_embeds=11,
    ).eval()
    return lambda x, t, c: unet(x, t, class_labels=c).sample


def reference_loop(scheduler, model, x, cond, generator, **step_kwargs):
    """diffusers' own sampling loop: the reference the course's loops must reproduce."""
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(model(x, t, cond), t, x, generator=generator, **step_kwargs).prev_sample
    return x


SCHEDULER_CONFIGS = [
    {"beta_schedule": "linear", "clip_sample": True},
    {"beta_schedule": "squaredcos_cap_v2", "clip_sample": False},
    {"beta_schedule": "scaled_linear", "clip_sample": False, "prediction_type": "v_prediction"},
]


@pytest.mark.parametrize("config", SCHEDULER_CONFIGS)
@pytest.mark.parametrize("num_steps", [10, 50])
def test_ddpm_parity_with_diffusers(tiny_unet, config, num_steps):
    scheduler = DDPMScheduler(num_train_timesteps=1000, **config)
    scheduler.set_timesteps(num_steps)
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(4)
    ref = reference_loop(scheduler, tiny_unet, x_T.clone(), labels, torch.Generator().manual_seed(2))
    ours = ddpm_sample(
        tiny_unet,
        x_T.clone(),
        scheduler.timesteps.tolist(),
        schedule=NoiseSchedule.from_scheduler(scheduler),
        cond=labels,
        generator=torch.Generator().manual_seed(2),
    )
    torch.testing.assert_close(ours, ref, rtol=0, atol=PARITY_TOL)


@pytest.mark.parametrize("config", SCHEDULER_CONFIGS)
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_parity_with_diffusers(tiny_unet, config, eta):
    scheduler = DDIMScheduler(num_train_timesteps=1000, **config)
    scheduler.set_timesteps(25)
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    labels = torch.arange(4)
    ref = reference_loop(
        scheduler,
        tiny_unet,
        x_T.clone(),
        labels,
        torch.Generator().manual_seed(4),
        eta=eta,
        use_clipped_model_output=config["clip_sample"],  # the course re-derives ε̂ whenever it clips x̂_0
    )
    ours = ddim_sample(
        tiny_unet,
        x_T.clone(),
        scheduler.timesteps.tolist(),
        schedule=NoiseSchedule.from_scheduler(scheduler),
        eta=eta,
        cond=labels,
        generator=torch.Generator().manual_seed(4),
    )
    torch.testing.assert_close(ours, ref, rtol=0, atol=PARITY_TOL)


def test_explicit_noises_match_generator_noise(tiny_unet):
    """Passing the per-step noise explicitly gives the same result as drawing it from the generator."""
    schedule = NoiseSchedule.from_name("linear", clip_x0=1.0)
    ts = strided_timesteps(1000, 20)
    x_T = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(6)
    noises = [torch.randn(x_T.shape, generator=gen) for t in ts if t > 0]
    labels = torch.tensor([1, 2])
    a = ddpm_sample(tiny_unet, x_T, ts, schedule=schedule, cond=labels, noises=noises)
    b = ddpm_sample(tiny_unet, x_T, ts, schedule=schedule, cond=labels, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(CourseError, match="fewer noise tensors"):
        ddpm_sample(tiny_unet, x_T, ts, schedule=schedule, cond=labels, noises=noises[:3])


class GaussianDataEps:
    """The exact ε-predictor when data is N(μ, s² I): E[ε | x_t] = √(1-ᾱ)(x_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ)."""

    def __init__(self, alphas_cumprod, mu, s):
        self.a, self.mu, self.s = alphas_cumprod, mu, s
        self.calls = 0

    def __call__(self, x, t, cond):
        self.calls += 1
        a = self.a[t].view(-1, 1, 1, 1)
        return (1 - a).sqrt() * (x - a.sqrt() * self.mu) / (a * self.s**2 + 1 - a)


@pytest.mark.parametrize("sampler", [ddpm_sample, ddim_sample])
def test_exact_denoiser_samples_recover_the_data_distribution(sampler, num_steps=1000):
    schedule = NoiseSchedule.from_name("linear")
    model = GaussianDataEps(schedule.alphas_cumprod, mu=0.5, s=0.2)
    x_T = torch.randn(4096, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    x0 = sampler(model, x_T, strided_timesteps(1000, num_steps), schedule=schedule, generator=torch.Generator())
    assert abs(x0.mean().item() - 0.5) < 0.01
    assert abs(x0.std().item() - 0.2) < 0.01
    assert model.calls == num_steps


def test_few_steps_shrink_the_spread():
    """With the exact ε, 50 strided steps under-disperse (a discretisation error) and 1000 do not."""
    schedule = NoiseSchedule.from_name("linear")
    x_T = torch.randn(4096, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    stds = {}
    for n in (20, 50, 1000):
        model = GaussianDataEps(schedule.alphas_cumprod, mu=0.5, s=0.2)
        stds[n] = ddim_sample(model, x_T, strided_timesteps(1000, n), schedule=schedule).std().item()
    assert stds[20] < stds[50] < stds[1000]
    assert abs(stds[1000] - 0.2) < 0.01


def test_guidance_hook_combines_cond_and_uncond():
    schedule = NoiseSchedule.from_name("linear")
    seen = []

    def model(x, t, cond):
        return torch.full_like(x, float(cond))

    def hook(out_c, out_u, w):
        seen.append((out_c.mean().item(), out_u.mean().item(), w))
        return out_u + w * (out_c - out_u)

    x = torch.zeros(1, 1, 2, 2)
    steps = list(
        denoise_steps(
            model,
            x,
            [500, 0],
            schedule=schedule,
            update="ddim",
            cond=1.0,
            uncond=0.0,
            guidance_scale=3.0,
            guidance=hook,
        )
    )
    assert seen == [(1.0, 0.0, 3.0), (1.0, 0.0, 3.0)]
    # with w = 3 the guided ε̂ is 3: x̂_0 = (0 − √(1−ᾱ) · 3) / √ᾱ at the first step
    a = schedule.alphas_cumprod[500]
    torch.testing.assert_close(steps[0].x0_pred, torch.full_like(x, (-(1 - a).sqrt() * 3 / a.sqrt()).item()))


def test_q_sample_then_predict_x0_with_true_noise_is_identity():
    a = NoiseSchedule.from_name("cosine").alphas_cumprod
    x0 = torch.rand(3, 3, 4, 4) * 2 - 1
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 500, 900])
    x_t = q_sample(x0, t, eps, alphas_cumprod=a)
    torch.testing.assert_close(predict_x0(x_t, t, eps, alphas_cumprod=a), x0, rtol=1e-4, atol=1e-3)
    # per-sample t: sample 1 equals the scalar-t result
    torch.testing.assert_close(x_t[1:2], q_sample(x0[1:2], 500, eps[1:2], alphas_cumprod=a))


def test_prediction_types_agree_on_the_same_truth():
    a_bar = torch.tensor(0.3)
    x0, eps = torch.randn(2, 1, 3, 3), torch.randn(2, 1, 3, 3)
    x_t = a_bar.sqrt() * x0 + (1 - a_bar).sqrt() * eps
    v = a_bar.sqrt() * eps - (1 - a_bar).sqrt() * x0
    for output, kind in [(eps, "epsilon"), (v, "v_prediction"), (x0, "sample")]:
        e, x = eps_and_x0(output, x_t, a_bar, kind)
        torch.testing.assert_close(e, eps, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(x, x0, rtol=1e-4, atol=1e-5)


def test_final_steps_go_to_the_clean_estimate():
    """With t_prev = -1 (ᾱ = 1) both steps return x̂_0 itself."""
    s = NoiseSchedule.from_name("linear")
    x_t, eps = torch.randn(1, 1, 2, 2), torch.randn(1, 1, 2, 2)
    for step in (ddpm_step, ddim_step):
        x_prev, x0 = step(x_t, eps, t=0, t_prev=-1, schedule=s)
        torch.testing.assert_close(x_prev, x0)


def test_callback_sees_every_step_in_order():
    schedule = NoiseSchedule.from_name("linear")
    model = GaussianDataEps(schedule.alphas_cumprod, mu=0.0, s=1.0)
    ts = strided_timesteps(1000, 5)
    seen = []
    ddim_sample(
        model, torch.zeros(1, 1, 2, 2), ts, schedule=schedule, callback=lambda st: seen.append((st.t, st.t_prev))
    )
    assert seen == [(800, 600), (600, 400), (400, 200), (200, 0), (0, -1)]


# Golden values: the sum and the sum of squares of x_0 after a full 1000-step DDPM loop and a 50-step
# DDIM (η = 0.5) loop on GaussianDataEps(μ = 0.5, s = 0.2) with the cosine schedule, x_T and noise from
# torch.Generator seeds 7 and 8. Produced by diffusers 0.42.1's DDPMScheduler / DDIMScheduler
# (squaredcos_cap_v2, clip_sample=False) stepping the same model on the same inputs.
GOLDEN = {"ddpm": (15.0362, 8.0215), "ddim": (16.9877, 10.1263)}


@pytest.mark.parametrize("update", ["ddpm", "ddim"])
def test_golden_values_full_loop(update):
    schedule = NoiseSchedule.from_name("cosine")
    model = GaussianDataEps(schedule.alphas_cumprod, mu=0.5, s=0.2)
    x_T = torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(7))
    ts = list(range(999, -1, -1)) if update == "ddpm" else strided_timesteps(1000, 50)
    sampler = ddpm_sample if update == "ddpm" else ddim_sample
    kwargs = {} if update == "ddpm" else {"eta": 0.5}
    x0 = sampler(model, x_T, ts, schedule=schedule, generator=torch.Generator().manual_seed(8), **kwargs)
    total, squares = GOLDEN[update]
    assert x0.sum().item() == pytest.approx(total, abs=1e-3)
    assert x0.pow(2).sum().item() == pytest.approx(squares, abs=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"update": "euler"}, "valid update rules: ddpm, ddim"),
        ({"timesteps": [10, 20]}, "strictly decreasing"),
        ({"timesteps": [1000, 0]}, "must lie in 0..999"),
    ],
)
def test_bad_sampler_input_is_refused(kwargs, message):
    schedule = NoiseSchedule.from_name("linear")
    args = {"timesteps": [10, 0], **kwargs}
    with pytest.raises(CourseError, match=message):
        list(denoise_steps(lambda x, t, c: x, torch.zeros(1, 1, 2, 2), schedule=schedule, **args))
    with pytest.raises(CourseError, match="num_steps"):
        strided_timesteps(1000, 0)
    with pytest.raises(CourseError, match="eps has shape"):
        q_sample(torch.zeros(1, 1, 2, 2), 5, torch.zeros(1, 1, 3, 3), alphas_cumprod=schedule.alphas_cumprod)


def _constant_model(x, t, cond):
    return torch.zeros_like(x)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"update": "ddpm", "eta": 0.5}, "eta=0.5 applies to the DDIM update only"),
        ({"update": "ddpm", "eta": -7}, "eta=-7 applies to the DDIM update only"),
        ({"update": "ddim", "eta": -7}, "eta must lie in [0, 1]"),
        ({"update": "ddim", "eta": 1.5}, "eta must lie in [0, 1]"),
        ({"cond": 1.0, "guidance_scale": 7.5}, "guidance_scale=7.5 needs an unconditional input"),
        ({"cond": 1.0, "guidance": lambda c, u, w: c}, "needs an unconditional input"),
    ],
)
def test_a_setting_the_sampler_would_ignore_is_refused(kwargs, message):
    schedule = NoiseSchedule.from_name("linear")
    with pytest.raises(CourseError, match=re.escape(message)):
        list(denoise_steps(_constant_model, torch.zeros(1, 1, 2, 2), [500, 0], schedule=schedule, **kwargs))


def test_ddpm_sample_refuses_eta():
    schedule = NoiseSchedule.from_name("linear")
    with pytest.raises(CourseError, match="DDIM update only"):
        ddpm_sample(_constant_model, torch.zeros(1, 1, 2, 2), [500, 0], schedule=schedule, eta=-7)


def test_guidance_with_an_unconditional_input_still_guides():
    schedule = NoiseSchedule.from_name("linear")
    x = torch.zeros(1, 1, 2, 2)

    def model(x, t, cond):
        return torch.full_like(x, float(cond))

    common = {"schedule": schedule, "update": "ddim", "cond": 1.0}
    guided = list(denoise_steps(model, x, [500], **common, uncond=0.0, guidance_scale=3.0))
    plain = list(denoise_steps(model, x, [500], **common))
    assert not torch.allclose(guided[0].x0_pred, plain[0].x0_pred)
