"""The ``gpu`` profile's DeepFloyd IF stage I code path, on a tiny random-weight ``IFPipeline``.

``DeepFloyd/IF-I-XL-v1.0`` can never be loaded here, so the fixture ``tiny_if_path`` (``tests/conftest.py``)
builds a pipeline of the same classes and configuration kind (T5 encoder, 6-channel pixel U-Net with
text cross-attention, IF's DDPM scheduler) with random weights, and these tests load it through the very
same ``load_denoiser`` → ``DiffusionPipeline.from_pretrained`` call, sample with the course's loops, check
them against diffusers' schedulers and run the week-1 notebook on it. Random weights give noise images:
what is tested is the code path, not image quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from course_utils.course.paths import WEEKS_DIR
from course_utils.denoisers import IFDenoiser, load_denoiser
from course_utils.errors import CourseError
from course_utils.sampling.diffusion import ddim_sample, ddpm_sample, strided_timesteps

PROMPTS = ["a rocket ship", "a man wearing a hat"]
NUM_STEPS = 5  # strided timesteps 800, 600, …, 0: enough to chain steps, cheap on a loaded CPU
GUIDANCE = 3.0


@pytest.fixture(scope="module")
def den(tiny_if_path: Path) -> IFDenoiser:
    den = load_denoiser(str(tiny_if_path), device="cpu", dtype="float32")
    assert isinstance(den, IFDenoiser)
    return den


@pytest.fixture(scope="module")
def conds(den: IFDenoiser) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond, uncond) text embeddings for :data:`PROMPTS`."""
    return den.condition(PROMPTS), den.null_condition(len(PROMPTS))


def _sample(den: IFDenoiser, conds: tuple[torch.Tensor, torch.Tensor], sampler, seed: int, **kwargs) -> torch.Tensor:
    """x_T and the per-step noise from one seeded generator; classifier-free guidance with w = 3."""
    generator = torch.Generator().manual_seed(seed)
    x_T = den.noise(len(PROMPTS), generator=generator)
    cond, uncond = conds
    timesteps = strided_timesteps(den.schedule.num_timesteps, NUM_STEPS)
    return sampler(
        den,
        x_T,
        timesteps,
        schedule=den.schedule,
        cond=cond,
        uncond=uncond,
        guidance_scale=GUIDANCE,
        generator=generator,
        **kwargs,
    )


# --- loading and the denoiser interface ------------------------------------------------------------------


def test_tiny_if_is_tiny_and_its_tokenizer_survives_save_and_load(den: IFDenoiser) -> None:
    from tiny_pipelines import tiny_t5_tokenizer

    pipe = den.pipeline
    assert type(pipe).__name__ == "IFPipeline"
    assert sum(p.numel() for p in pipe.unet.parameters()) < 1_000_000
    assert (pipe.unet.config.in_channels, pipe.unet.config.out_channels) == (3, 6)
    assert pipe.text_encoder.config.d_model == 32 and pipe.text_encoder.config.num_layers == 2
    built, loaded = tiny_t5_tokenizer(), pipe.tokenizer
    ids = loaded("a rocket ship").input_ids
    assert ids == built("a rocket ship").input_ids
    assert ids[-1] == loaded.eos_token_id == 1 and loaded.pad_token_id == 0
    assert loaded.unk_token_id not in ids  # the prompts' words are in the vocabulary
    assert loaded.convert_ids_to_tokens(ids[:-1]) == ["▁a", "▁rocket", "▁ship"]


def test_load_denoiser_gives_an_if_denoiser_with_the_schedulers_alpha_bar(den: IFDenoiser) -> None:
    assert den.sample_shape == (3, 16, 16)
    assert den.device == torch.device("cpu") and den.dtype == torch.float32
    assert den.schedule.prediction_type == "epsilon"
    assert den.schedule.clip_x0 == 1.0  # IF's dynamic thresholding replaced by clipping x̂₀ to [-1, 1]
    torch.testing.assert_close(den.schedule.alphas_cumprod, den.pipeline.scheduler.alphas_cumprod, rtol=0, atol=0)
    assert den.pipeline.scheduler.config.beta_schedule == "squaredcos_cap_v2"
    from course_utils.sampling.schedules import NoiseSchedule

    cosine = NoiseSchedule.from_name("cosine").alphas_cumprod  # the course's own cosine ᾱ matches IF's
    torch.testing.assert_close(den.schedule.alphas_cumprod, cosine)


def test_condition_and_null_condition_are_t5_hidden_states(den: IFDenoiser) -> None:
    cond = den.condition(["a rocket ship"])
    null = den.null_condition(2)
    assert cond.ndim == 3 and cond.shape[0] == 1 and cond.shape[2] == 32
    assert null.shape == (2, cond.shape[1], 32)
    assert cond.dtype == torch.float32 and torch.isfinite(cond).all() and torch.isfinite(null).all()
    assert torch.equal(null[0], null[1])  # the empty prompt, twice
    assert not torch.allclose(cond[0], null[0])  # the prompt changes the embedding
    assert not torch.allclose(cond, den.condition(["a man wearing a hat"]))
    batch = den.condition(PROMPTS)  # a batch encodes each prompt as on its own
    torch.testing.assert_close(batch[:1], cond, rtol=1e-5, atol=1e-6)


def test_denoiser_returns_the_eps_half_of_the_unet_output(den: IFDenoiser) -> None:
    generator = torch.Generator().manual_seed(0)
    x_t = torch.randn((2, 3, 16, 16), generator=generator)
    t = torch.tensor([999, 250])
    cond = den.condition(PROMPTS)
    eps = den(x_t, t, cond)
    assert eps.shape == (2, 3, 16, 16)
    with torch.no_grad():
        raw = den.unet(x_t, t, encoder_hidden_states=cond).sample
    assert raw.shape == (2, 6, 16, 16)  # ε and the learned-range variance
    torch.testing.assert_close(eps, raw[:, :3], rtol=0, atol=0)
    assert not torch.allclose(eps, den(x_t, t, den.null_condition(2)))  # the text conditioning reaches the U-Net


@pytest.fixture(scope="module")
def half_pipeline(tiny_if_path: Path):
    """The pipeline as ``load_denoiser(..., dtype="float16")`` loads it on a GPU (the gpu profile's dtype)."""
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(str(tiny_if_path), torch_dtype=torch.float16)


def test_float16_code_path(half_pipeline) -> None:
    """The gpu profile's float16 path, on the CPU: ``load_denoiser`` refuses half precision there, so the
    denoiser is built the way it builds it on a GPU, from a pipeline loaded with ``torch_dtype=float16``."""
    den = IFDenoiser(half_pipeline, model_id="tiny-if", device=torch.device("cpu"), dtype=torch.float16)
    cond = den.condition(["a rocket ship"])
    assert cond.dtype == torch.float16 and torch.isfinite(cond).all()
    x_t = den.noise(1, generator=torch.Generator().manual_seed(0))
    assert x_t.dtype == torch.float16
    eps = den(x_t, torch.tensor([500]), cond)
    assert eps.shape == (1, 3, 16, 16) and eps.dtype == torch.float16 and torch.isfinite(eps).all()


def test_float16_keeps_t5_feed_forward_outputs_in_float32(half_pipeline) -> None:
    """transformers keeps T5's ``wo`` projections in float32 under float16 (``_keep_in_fp32_modules``) because
    T5 v1.1 activations overflow half precision there; the denoiser must not cast them back."""

    def wo_dtypes(model) -> set[torch.dtype]:
        return {p.dtype for name, p in model.named_parameters() if name.endswith("DenseReluDense.wo.weight")}

    assert wo_dtypes(half_pipeline.text_encoder) == {torch.float32}  # as loaded
    IFDenoiser(half_pipeline, model_id="tiny-if", device=torch.device("cpu"), dtype=torch.float16)
    assert wo_dtypes(half_pipeline.text_encoder) == {torch.float32}


# --- sampling ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", [ddpm_sample, ddim_sample], ids=["ddpm", "ddim"])
def test_guided_sampling_is_finite_and_seeded(den: IFDenoiser, conds, sampler) -> None:
    kwargs = {"eta": 0.5} if sampler is ddim_sample else {}  # η > 0 so the generator matters after x_T too
    first = _sample(den, conds, sampler, seed=7, **kwargs)
    assert first.shape == (len(PROMPTS), 3, 16, 16)
    assert torch.isfinite(first).all()
    assert torch.equal(first, _sample(den, conds, sampler, seed=7, **kwargs))
    assert not torch.allclose(first, _sample(den, conds, sampler, seed=8, **kwargs))


def _diffusers_loop(den: IFDenoiser, scheduler, conds, seed: int, **step_kwargs) -> tuple[torch.Tensor, list[int]]:
    """A diffusers scheduler driven by the ε half of the same guided model output, from the same seeded noise."""
    cond, uncond = conds
    generator = torch.Generator().manual_seed(seed)
    x = den.noise(len(PROMPTS), generator=generator)
    scheduler.set_timesteps(NUM_STEPS)
    for t in scheduler.timesteps:
        t_batch = torch.full((x.shape[0],), int(t), dtype=torch.long)
        eps_cond, eps_uncond = den(x, t_batch, cond), den(x, t_batch, uncond)
        eps = eps_uncond + GUIDANCE * (eps_cond - eps_uncond)
        x = scheduler.step(eps, t, x, generator=generator, **step_kwargs).prev_sample
    return x, [int(t) for t in scheduler.timesteps]


PARITY_ATOL = 1e-4
"""Twenty float32 steps summed in another order: up to 1.5e-5 apart on some CPUs (1.4e-5 seen on an AMD EPYC,
1.5e-5 with ``ATEN_CPU_CAPABILITY=default``), on images in [-1, 1]."""


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_sample_matches_diffusers_ddim_scheduler(den: IFDenoiser, conds, eta: float) -> None:
    """The course's ``ddim_sample`` equals diffusers' ``DDIMScheduler`` built from IF's scheduler config.

    Made comparable: IF's config has dynamic thresholding (``thresholding=True``) and a learned-range
    variance, while the course's IFDenoiser clips x̂₀ to [-1, 1] and keeps only the ε half. So the DDIM
    scheduler gets ``thresholding=False, clip_sample=True, clip_sample_range=1.0`` (and DDIM has no learned
    variance: its σ comes from η; ``variance_type`` is set to ``fixed_small`` only to mark that the learned half
    is dropped); ``set_alpha_to_one=True`` and ``leading`` spacing with ``steps_offset=0`` so the last step goes
    to ᾱ = 1 over the same timesteps 800, 600, …, 0. Same seed → same x_T and (for η > 0) same per-step noise.
    The course re-derives ε̂ from the clipped x̂₀, diffusers' ``use_clipped_model_output=True``.
    """
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(
        den.pipeline.scheduler.config,
        thresholding=False,
        clip_sample=True,
        clip_sample_range=1.0,
        variance_type="fixed_small",
        set_alpha_to_one=True,
        timestep_spacing="leading",
        steps_offset=0,
    )
    torch.testing.assert_close(scheduler.alphas_cumprod, den.schedule.alphas_cumprod, rtol=0, atol=0)
    expected, timesteps = _diffusers_loop(den, scheduler, conds, seed=3, eta=eta, use_clipped_model_output=True)
    assert timesteps == strided_timesteps(1000, NUM_STEPS)
    ours = _sample(den, conds, ddim_sample, seed=3, eta=eta)
    torch.testing.assert_close(ours, expected, rtol=0, atol=PARITY_ATOL)


def test_ddpm_sample_matches_diffusers_ddpm_scheduler(den: IFDenoiser, conds) -> None:
    """The course's ``ddpm_sample`` equals IF's own ``DDPMScheduler`` class with the same config made comparable.

    ``thresholding=False, clip_sample=True`` (the course clips x̂₀ to [-1, 1]) and ``variance_type="fixed_small"``
    (the course uses the posterior variance β̃, not IF's learned range); 3-channel ε only. Both draw x_T and then
    one noise tensor per step with t > 0 from the same seeded generator, in the same order.
    """
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(
        den.pipeline.scheduler.config,
        thresholding=False,
        clip_sample=True,
        clip_sample_range=1.0,
        variance_type="fixed_small",
        timestep_spacing="leading",
        steps_offset=0,
    )
    expected, timesteps = _diffusers_loop(den, scheduler, conds, seed=5)
    assert timesteps == strided_timesteps(1000, NUM_STEPS)
    ours = _sample(den, conds, ddpm_sample, seed=5)
    torch.testing.assert_close(ours, expected, rtol=0, atol=PARITY_ATOL)


# --- the week-1 notebook on the IF code path ---------------------------------------------------------------


def _run_on_if(notebook: Path, parameters: dict, tmp_path: Path):
    """Execute a week notebook on the gpu profile's code path, pointed at the tiny IF on the CPU."""
    from notebooks import execute_notebook

    return execute_notebook(notebook, {"profile": "gpu", "device": "cpu", "dtype": "float32", **parameters}, tmp_path)


@pytest.mark.slow
def test_week1_notebook_runs_on_the_if_code_path(tiny_if_path: Path, tmp_path: Path) -> None:
    notebook = WEEKS_DIR / "01_sampling_loops" / "01_sampling_loops.ipynb"
    parameters = {"denoiser": str(tiny_if_path), "samples_per_prompt": 1, "num_strided_steps": 10, "i_start": 3}
    text, images = _run_on_if(notebook, parameters, tmp_path)
    assert f"profile gpu: {tiny_if_path} denoises images of shape (3, 16, 16)" in text
    assert "== course_utils.sampling.diffusion.ddpm_step" in text  # the hand-written step matched the package on IF
    assert len(images) >= 5  # schedule, forward process ×2, blur, one-step, trajectory, comparison, samples


@pytest.mark.slow
def test_week2a_notebook_runs_on_the_if_code_path(tiny_if_path: Path, tmp_path: Path) -> None:
    notebook = WEEKS_DIR / "02_sampling_loops_2" / "02a_guidance_illusions.ipynb"
    parameters = {
        "denoiser": str(tiny_if_path), "steps": 5, "cfg_scales": [1, 3], "samples_per_condition": 2,
        "hybrid_sigmas": [1.0],
    }  # fmt: skip
    text, images = _run_on_if(notebook, parameters, tmp_path)
    assert f"profile gpu: {tiny_if_path}, images of shape (3, 16, 16)" in text
    for technique in ("classifier_free_guidance", "anagram_combine", "hybrid_combine"):
        assert f"== course_utils.sampling.guidance.{technique}" in text
    assert "adherence" not in text  # no digit classifier for IF
    assert len(images) >= 4  # a grid per study, curves where something was measured


@pytest.mark.slow
def test_week2b_notebook_runs_on_the_if_code_path(tiny_if_path: Path, tmp_path: Path) -> None:
    notebook = WEEKS_DIR / "02_sampling_loops_2" / "02b_editing.ipynb"
    parameters = {"denoiser": str(tiny_if_path), "steps": 5, "sdedit_levels": [1, 3], "img2img_levels": [1, 3]}
    text, images = _run_on_if(notebook, parameters, tmp_path)
    assert f"profile gpu: {tiny_if_path}, images of shape (3, 16, 16)" in text
    assert "known_region_max_error" in text  # the inpainting study measured its guarantee on IF
    assert len(images) >= 4  # a grid per study, curves where something was measured


# --- refusals ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("class_name", "message"),
    [
        ("FluxPipeline", "pipeline class FluxPipeline is not one the course loads"),
        ("StableDiffusionPipeline", "is not a pixel-space denoiser"),
    ],
)
def test_load_denoiser_refuses_a_pipeline_it_cannot_denoise_with(tmp_path: Path, class_name: str, message: str):
    folder = tmp_path / "pipeline"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name, "_diffusers_version": "0.42.1"}))
    with pytest.raises(CourseError) as err:
        load_denoiser(str(folder), device="cpu", dtype="float32")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_model_cpu_offload_gives_the_same_estimates(den: IFDenoiser, tiny_if_path: Path) -> None:
    """The path a 15 GB GPU takes (model CPU offload, on by default on CUDA), exercised here on the CPU."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(tiny_if_path)
    offloaded = IFDenoiser(pipe, model_id="tiny-if", device=torch.device("cpu"), dtype=torch.float32, offload=True)
    assert hasattr(pipe.unet, "_hf_hook") and hasattr(pipe.text_encoder, "_hf_hook")
    cond = den.condition(["a rocket ship"])
    torch.testing.assert_close(offloaded.condition(["a rocket ship"]), cond)
    x_t = den.noise(2, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500, 100])
    torch.testing.assert_close(offloaded(x_t, t, cond.expand(2, -1, -1)), den(x_t, t, cond.expand(2, -1, -1)))
