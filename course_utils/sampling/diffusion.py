"""The forward process and the hand-written DDPM and DDIM sampling loops.

Papers:
    * Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (DDPM), arXiv:2006.11239.
    * Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models" (DDIM), arXiv:2010.02502.

Notation follows the papers (see ``course_utils/GLOSSARY.md``): ``x_0`` clean data, ``x_t`` its noisy
version at timestep ``t``, ``ε`` standard Gaussian noise, ``ᾱ_t`` the cumulative signal fraction,
``x̂_0`` the model's estimate of ``x_0``. Images are tensors of shape ``(B, C, H, W)`` scaled to
``[-1, 1]``; timesteps are integers in ``[0, T)``.

A *model* here is any callable ``model(x_t, t, cond) -> output`` with ``x_t`` of shape
``(B, C, H, W)``, ``t`` a long tensor of shape ``(B,)`` and ``output`` of shape ``(B, C, H, W)``,
interpreted according to ``schedule.prediction_type``. The denoisers of
:mod:`course_utils.denoisers` (the course's digits model, DeepFloyd IF) are such callables.

Both samplers share one signature and one loop, :func:`denoise_steps`, which *yields* a
:class:`DiffusionStep` per timestep, so a notebook can plot a trajectory without copying the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from course_utils.errors import CourseError, check_choice
from course_utils.runtime import randn_like
from course_utils.sampling.guidance import classifier_free_guidance, evaluate_together
from course_utils.sampling.schedules import NoiseSchedule

__all__ = [
    "UPDATE_RULES",
    "DiffusionStep",
    "ddim_sample",
    "ddim_step",
    "ddpm_sample",
    "ddpm_step",
    "denoise_steps",
    "eps_and_x0",
    "predict_x0",
    "q_sample",
    "strided_timesteps",
]

Model = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


def _at(values: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """``values[t]`` broadcast against ``like``: ``(T,)`` indexed by ``(B,)`` → ``(B, 1, 1, 1)``."""
    t = torch.as_tensor(t, device=values.device).long()
    out = values[t].to(device=like.device, dtype=like.dtype)
    return out.reshape(out.shape + (1,) * (like.ndim - out.ndim))


def q_sample(
    x0: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor, *, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """Sample the forward process in one jump: ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε`` (Ho et al. 2020, eq. 4).

    Args:
        x0: clean images ``(B, C, H, W)`` in ``[-1, 1]``.
        t: timestep(s): an int, or a long tensor of shape ``(B,)``.
        eps: standard Gaussian noise, same shape as ``x0``.
        alphas_cumprod: ᾱ, shape ``(T,)``.

    Returns:
        ``x_t``, same shape as ``x0``.
    """
    if eps.shape != x0.shape:
        raise CourseError(f"q_sample: eps has shape {tuple(eps.shape)} but x0 has {tuple(x0.shape)}")
    alpha_bar = _at(alphas_cumprod, t, x0)
    return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps


def predict_x0(
    x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor, *, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """One-step denoising: invert eq. 4 for ``x_0`` given a noise estimate (Ho et al. 2020, eq. 15).

    ``x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t``. Shapes as in :func:`q_sample`.
    """
    alpha_bar = _at(alphas_cumprod, t, x_t)
    return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def eps_and_x0(
    output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn a network output into the pair (ε̂, x̂_0), whatever the network predicts.

    ``alpha_bar`` is ᾱ_t broadcastable to ``x_t``. For ``v_prediction``, ``v = √ᾱ ε − √(1−ᾱ) x_0``
    (Salimans & Ho 2022, eq. 9), hence ``x̂_0 = √ᾱ x_t − √(1−ᾱ) v`` and ``ε̂ = √ᾱ v + √(1−ᾱ) x_t``.
    """
    check_choice("prediction type", prediction_type, ("epsilon", "v_prediction", "sample"))
    beta_bar = 1 - alpha_bar
    if prediction_type == "epsilon":
        return output, (x_t - beta_bar**0.5 * output) / alpha_bar**0.5
    if prediction_type == "v_prediction":
        return alpha_bar**0.5 * output + beta_bar**0.5 * x_t, alpha_bar**0.5 * x_t - beta_bar**0.5 * output
    return (x_t - alpha_bar**0.5 * output) / beta_bar**0.5, output


def _alpha_bars(
    alphas_cumprod: torch.Tensor, t: int, t_prev: int, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ᾱ_t, ᾱ_prev) as tensors like ``like``; ᾱ_prev = 1 when ``t_prev < 0`` (the clean image)."""
    alpha_bar = alphas_cumprod[t].to(device=like.device, dtype=like.dtype)
    alpha_bar_prev = alphas_cumprod[t_prev] if t_prev >= 0 else torch.ones((), dtype=alphas_cumprod.dtype)
    return alpha_bar, alpha_bar_prev.to(device=like.device, dtype=like.dtype)


def _clip(x0: torch.Tensor, clip_x0: float | None) -> torch.Tensor:
    return x0 if clip_x0 is None else x0.clamp(-clip_x0, clip_x0)


def ddpm_step(
    x_t: torch.Tensor,
    output: torch.Tensor,
    *,
    t: int,
    t_prev: int,
    schedule: NoiseSchedule,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral DDPM step ``x_t → x_{t'}`` with ``t' = t_prev < t`` (strides allowed).

    Sample the posterior ``q(x_{t'} | x_t, x̂_0) = N(μ̃, β̃ I)`` (Ho et al. 2020, eqs. 6–7), where for
    a stride ``α = ᾱ_t / ᾱ_{t'}`` and ``β = 1 − α``:

        μ̃ = √ᾱ_{t'} β / (1 − ᾱ_t) · x̂_0  +  √α (1 − ᾱ_{t'}) / (1 − ᾱ_t) · x_t
        β̃ = (1 − ᾱ_{t'}) / (1 − ᾱ_t) · β

    Args:
        x_t: current images ``(B, C, H, W)``.
        output: the network's output at ``(x_t, t)``, same shape.
        t, t_prev: current and next timestep; ``t_prev = -1`` means "to the clean image".
        schedule: ᾱ, prediction type and x̂_0 clipping.
        noise: ``z ~ N(0, I)`` of the shape of ``x_t``; required when ``t > 0``, ignored at ``t = 0``.

    Returns:
        ``(x_{t'}, x̂_0)``.
    """
    alpha_bar, alpha_bar_prev = _alpha_bars(schedule.alphas_cumprod, t, t_prev, x_t)
    alpha = alpha_bar / alpha_bar_prev  # α for this (possibly strided) step
    beta = 1 - alpha
    _, x0 = eps_and_x0(output, x_t, alpha_bar, schedule.prediction_type)
    x0 = _clip(x0, schedule.clip_x0)
    # eq. 7: posterior mean μ̃(x_t, x̂_0)
    mean = (alpha_bar_prev**0.5 * beta) / (1 - alpha_bar) * x0 + alpha**0.5 * (1 - alpha_bar_prev) / (
        1 - alpha_bar
    ) * x_t
    if t == 0:
        return mean, x0
    if noise is None:
        raise CourseError("ddpm_step: a noise tensor is required when t > 0")
    # eq. 7: posterior variance β̃ ("fixed_small" in diffusers)
    variance = ((1 - alpha_bar_prev) / (1 - alpha_bar) * beta).clamp(min=1e-20)
    return mean + variance**0.5 * noise, x0


def ddim_step(
    x_t: torch.Tensor,
    output: torch.Tensor,
    *,
    t: int,
    t_prev: int,
    schedule: NoiseSchedule,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step ``x_t → x_{t'}`` (Song et al. 2021, eq. 12 with σ from eq. 16).

        x_{t'} = √ᾱ_{t'} x̂_0  +  √(1 − ᾱ_{t'} − σ_t²) ε̂  +  σ_t z
        σ_t = η √((1 − ᾱ_{t'}) / (1 − ᾱ_t)) √(1 − ᾱ_t / ᾱ_{t'})

    ``eta = 0`` is the deterministic DDIM sampler; ``eta = 1`` has DDPM's variance.
    Arguments and return value as in :func:`ddpm_step`; ``noise`` is required when ``eta > 0``.

    When the schedule clips x̂_0, ε̂ is re-derived from the clipped x̂_0 (as GLIDE does; diffusers'
    ``use_clipped_model_output=True``), so the two terms of eq. 12 agree. Without it, strong
    classifier-free guidance breaks pixel-space DDIM: on the course's digits model, agreement at
    w = 3 falls from 100 % to 4 %.
    """
    # above 1, σ_t² can pass 1 − ᾱ_{t−1}, and the direction term's root is of a negative number
    if not 0 <= eta <= 1:
        raise CourseError(f"ddim_step: eta must lie in [0, 1] (0: deterministic, 1: DDPM's variance), got {eta}")
    alpha_bar, alpha_bar_prev = _alpha_bars(schedule.alphas_cumprod, t, t_prev, x_t)
    eps, x0 = eps_and_x0(output, x_t, alpha_bar, schedule.prediction_type)
    if schedule.clip_x0 is not None:
        x0 = _clip(x0, schedule.clip_x0)
        eps = (x_t - alpha_bar ** (0.5) * x0) / (1 - alpha_bar) ** (0.5)  # ε̂ consistent with the clipped x̂_0
    # eq. 16: σ_t(η)
    sigma = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)) ** 0.5
    # eq. 12: "predicted x_0" + "direction pointing to x_t" (+ "random noise")
    x_prev = alpha_bar_prev**0.5 * x0 + (1 - alpha_bar_prev - sigma**2) ** 0.5 * eps
    if eta > 0:
        if noise is None:
            raise CourseError("ddim_step: a noise tensor is required when eta > 0")
        x_prev = x_prev + sigma * noise
    return x_prev, x0


UPDATE_RULES = ("ddpm", "ddim")


def strided_timesteps(num_train_timesteps: int = 1000, num_steps: int = 50) -> list[int]:
    """Evenly spaced timesteps, descending and ending at 0: ``T=1000, steps=50 → [980, 960, …, 0]``.

    The spacing diffusers calls ``leading`` (its default for DDPM and DDIM without offset).
    """
    if not 1 <= num_steps <= num_train_timesteps:
        raise CourseError(f"num_steps must be in 1..{num_train_timesteps}, got {num_steps}")
    stride = num_train_timesteps // num_steps
    return list(range(0, num_steps * stride, stride))[::-1]


@dataclass(frozen=True)
class DiffusionStep:
    """One step of a sampling loop, as yielded by :func:`denoise_steps`.

    Attributes:
        index: position of ``t`` in the timesteps.
        t, t_prev: the step goes from ``x_t`` to ``x_{t_prev}`` (``t_prev = -1``: to ``x_0``).
        x_t: the input ``(B, C, H, W)``.
        x0_pred: x̂_0 estimated at this step.
        x_prev: the output, ``x_{t_prev}``.
    """

    index: int
    t: int
    t_prev: int
    x_t: torch.Tensor
    x0_pred: torch.Tensor
    x_prev: torch.Tensor


def _model_output(
    model: Model,
    x: torch.Tensor,
    t: int,
    *,
    cond: Any,
    uncond: Any,
    guidance_scale: float,
    guidance: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor],
) -> torch.Tensor:
    """The (guided) network output at ``(x, t)``: one call, or the conditional and unconditional outputs combined
    by ``guidance`` (the two branches as one batch where they can be: :func:`evaluate_together`)."""
    t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    if guidance_scale == 1.0 and guidance is classifier_free_guidance:
        return model(x, t_batch, cond)
    out_cond, out_uncond = evaluate_together(model, [(x, t_batch, cond), (x, t_batch, uncond)])
    return guidance(out_cond, out_uncond, guidance_scale)


def _check_arguments(
    *, update: str, eta: float, uncond: Any, guidance_scale: float, guidance: Callable[..., torch.Tensor]
) -> None:
    """Refuse a setting the sampler would otherwise ignore: η off DDIM, guidance without an unconditional input
    to guide against (:func:`ddim_step` checks η's range)."""
    if update != "ddim" and eta != 0:
        raise CourseError(f"eta={eta:g} applies to the DDIM update only; the {update} update draws its own noise")
    if uncond is None and (guidance_scale != 1.0 or guidance is not classifier_free_guidance):
        setting = f"guidance_scale={guidance_scale:g}" if guidance_scale != 1.0 else f"guidance={guidance.__name__}"
        raise CourseError(
            f"{setting} needs an unconditional input (uncond=...) to guide against; pass one, or guidance_scale=1"
        )


def denoise_steps(
    model: Model,
    x: torch.Tensor,
    timesteps: Sequence[int],
    *,
    schedule: NoiseSchedule,
    update: str = "ddpm",
    eta: float = 0.0,
    cond: Any = None,
    uncond: Any = None,
    guidance_scale: float = 1.0,
    guidance: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] = classifier_free_guidance,
    generator: torch.Generator | None = None,
    noises: Iterable[torch.Tensor] | None = None,
    after_step: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    progress: bool = False,
) -> Iterator[DiffusionStep]:
    """Run the reverse process over ``timesteps`` (descending), yielding a :class:`DiffusionStep` each.

    Args:
        model: ``model(x_t, t, cond) -> output``, see the module docstring.
        x: the starting ``x_{timesteps[0]}``, ``(B, C, H, W)``: pure noise to sample, or a noised
            image to denoise from the middle (SDEdit, iterative denoising from ``i_start``).
        timesteps: descending ints; the step after the last one goes to ``x_0``.
        schedule: ᾱ, prediction type and x̂_0 clipping of the model.
        update: ``"ddpm"`` (:func:`ddpm_step`) or ``"ddim"`` (:func:`ddim_step` with ``eta``).
        cond, uncond: conditioning passed to ``model`` (class labels, text embeddings, …).
        guidance_scale: w; with ``w ≠ 1`` the model is called twice per step, on ``cond`` and on ``uncond``
            (which must then be given), and the outputs are combined by ``guidance(out_cond, out_uncond, w)``.
        generator: draws the per-step noise ``z`` when ``noises`` is not given.
        noises: explicit per-step noise tensors, consumed in order where a step needs one.
        after_step: ``after_step(x_prev, t_prev) -> x_prev``, applied to every step's output before the
            next step (inpainting forces the known region here, see :func:`course_utils.sampling.editing.inpaint`).
        progress: show a tqdm bar.
    """
    check_choice("update rule", update, UPDATE_RULES)
    _check_arguments(update=update, eta=eta, uncond=uncond, guidance_scale=guidance_scale, guidance=guidance)
    timesteps = [int(t) for t in timesteps]
    if any(b >= a for a, b in zip(timesteps, timesteps[1:], strict=False)):
        raise CourseError("timesteps must be strictly decreasing")
    if timesteps and not 0 <= timesteps[-1] <= timesteps[0] < schedule.num_timesteps:
        raise CourseError(f"timesteps must lie in 0..{schedule.num_timesteps - 1}")
    noise_iter = iter(noises) if noises is not None else None

    def draw() -> torch.Tensor:
        if noise_iter is not None:
            try:
                return next(noise_iter).to(x)
            except StopIteration:
                raise CourseError("fewer noise tensors than sampling steps need") from None
        return randn_like(x, generator=generator)

    for i in tqdm(range(len(timesteps)), desc=f"{update} sampling", disable=not progress, leave=False):
        t = timesteps[i]
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        with torch.no_grad():
            output = _model_output(
                model, x, t, cond=cond, uncond=uncond, guidance_scale=guidance_scale, guidance=guidance
            )
        if update == "ddpm":
            noise = draw() if t > 0 else None
            x_prev, x0 = ddpm_step(x, output, t=t, t_prev=t_prev, schedule=schedule, noise=noise)
        else:
            noise = draw() if eta > 0 else None
            x_prev, x0 = ddim_step(x, output, t=t, t_prev=t_prev, schedule=schedule, eta=eta, noise=noise)
        if after_step is not None:
            x_prev = after_step(x_prev, t_prev)
        yield DiffusionStep(index=i, t=t, t_prev=t_prev, x_t=x, x0_pred=x0, x_prev=x_prev)
        x = x_prev


def _run(
    steps: Iterator[DiffusionStep], x: torch.Tensor, callback: Callable[[DiffusionStep], None] | None
) -> torch.Tensor:
    for step in steps:
        if callback is not None:
            callback(step)
        x = step.x_prev
    return x


def ddpm_sample(
    model: Model,
    x: torch.Tensor,
    timesteps: Sequence[int],
    *,
    schedule: NoiseSchedule,
    callback: Callable[[DiffusionStep], None] | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2) over ``timesteps``; returns ``x_0``.

    Keyword arguments are those of :func:`denoise_steps` (cond, uncond, guidance_scale, guidance,
    generator, noises, progress); ``callback(step)`` sees every :class:`DiffusionStep`.
    """
    steps = denoise_steps(model, x, timesteps, schedule=schedule, update="ddpm", **kwargs)
    return _run(steps, x, callback)


def ddim_sample(
    model: Model,
    x: torch.Tensor,
    timesteps: Sequence[int],
    *,
    schedule: NoiseSchedule,
    eta: float = 0.0,
    callback: Callable[[DiffusionStep], None] | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """DDIM sampling (Song et al. 2021, eq. 12) over ``timesteps`` with stochasticity ``eta``; returns ``x_0``.

    Same signature as :func:`ddpm_sample` plus ``eta``.
    """
    steps = denoise_steps(model, x, timesteps, schedule=schedule, update="ddim", eta=eta, **kwargs)
    return _run(steps, x, callback)
