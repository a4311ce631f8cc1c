"""Editing images with a denoiser: SDEdit, text-guided SDEdit and RePaint-style inpainting.

Each technique noises a given image part of the way and runs the reverse process from there
(:func:`course_utils.sampling.diffusion.ddpm_sample`), so every sampler keyword (``cond``, ``uncond``,
``guidance_scale``, ``generator``, ``callback``) works here too.

Papers:
    * Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing with Stochastic Differential
      Equations", arXiv:2108.01073.
    * Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion Probabilistic Models",
      arXiv:2201.09865.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from course_utils.errors import CourseError
from course_utils.runtime import randn_like
from course_utils.sampling.diffusion import Model, ddpm_sample, q_sample
from course_utils.sampling.masks import check_mask
from course_utils.sampling.schedules import NoiseSchedule

__all__ = ["check_i_start", "inpaint", "sdedit", "text_guided_sdedit"]


def check_i_start(i_start: int, timesteps: Sequence[int]) -> int:
    """``i_start`` must index ``timesteps``; else one line naming the valid range."""
    if not isinstance(i_start, int) or not 0 <= i_start < len(timesteps):
        raise CourseError(
            f"i_start must be an integer in 0..{len(timesteps) - 1} (the strided timesteps), got {i_start!r}"
        )
    return i_start


def sdedit(
    model: Model,
    image: torch.Tensor,
    timesteps: Sequence[int],
    *,
    i_start: int,
    schedule: NoiseSchedule,
    generator: torch.Generator | None = None,
    **sampler_kwargs: Any,
) -> torch.Tensor:
    """SDEdit (Meng et al. 2022, §3): noise ``image`` to ``t = timesteps[i_start]`` and denoise from there.

    Small ``i_start`` means a high ``t``: more noise, more freedom, less of the original left; large
    ``i_start`` stays close to the original. The result lies on the model's image manifold, so a rough
    input (a drawing, a photo from elsewhere) becomes a plausible image of the model's kind.

    Args:
        image: ``(B, C, H, W)`` in ``[-1, 1]``, the model's image shape.
        timesteps: strided timesteps, descending (see :func:`course_utils.sampling.diffusion.strided_timesteps`).
        i_start: index into ``timesteps`` where denoising starts.
        sampler_kwargs: ``cond``, ``uncond``, ``guidance_scale``, ``callback``, … for :func:`ddpm_sample`.

    Returns:
        The edited images, same shape as ``image``.
    """
    check_i_start(i_start, timesteps)
    x_t = q_sample(
        image, timesteps[i_start], randn_like(image, generator=generator), alphas_cumprod=schedule.alphas_cumprod
    )
    return ddpm_sample(model, x_t, timesteps[i_start:], schedule=schedule, generator=generator, **sampler_kwargs)


def text_guided_sdedit(
    model: Model,
    image: torch.Tensor,
    timesteps: Sequence[int],
    *,
    i_start: int,
    schedule: NoiseSchedule,
    cond: Any,
    **sampler_kwargs: Any,
) -> torch.Tensor:
    """Text-conditional image-to-image: SDEdit denoised towards ``cond`` (a prompt's embedding, a class).

    The more noise (smaller ``i_start``), the further the prompt pulls the image away from the original.
    Same arguments as :func:`sdedit`, with a required ``cond``.
    """
    if cond is None:
        raise CourseError("text_guided_sdedit needs a condition (the prompt to steer towards)")
    return sdedit(model, image, timesteps, i_start=i_start, schedule=schedule, cond=cond, **sampler_kwargs)


def inpaint(
    model: Model,
    image: torch.Tensor,
    mask: torch.Tensor,
    timesteps: Sequence[int],
    *,
    schedule: NoiseSchedule,
    generator: torch.Generator | None = None,
    **sampler_kwargs: Any,
) -> torch.Tensor:
    """RePaint-style inpainting (Lugmayr et al. 2022, Algorithm 1 without resampling).

    Sample from pure noise, and after every step force the known region back to the forward-noised
    original at the new timestep: ``x_{t'} ← m ⊙ x_{t'} + (1 − m) ⊙ q_sample(image, t')``. At the last
    step ``t' = −1`` that is the original itself, so outside the mask the result *equals* ``image``.

    Args:
        image: ``(B, C, H, W)`` in ``[-1, 1]``.
        mask: ``(H, W)`` (or broadcastable ``(1|B, 1|C, H, W)``) of ones where to generate, zeros where
            to keep ``image`` (see :mod:`course_utils.sampling.masks`).
        sampler_kwargs: ``cond``, ``uncond``, ``guidance_scale``, ``callback`` for :func:`ddpm_sample`.
    """
    mask = check_mask(mask, image)
    alphas_cumprod = schedule.alphas_cumprod

    def keep_known(x: torch.Tensor, t: int) -> torch.Tensor:
        known = (
            image
            if t < 0
            else q_sample(image, t, randn_like(image, generator=generator), alphas_cumprod=alphas_cumprod)
        )
        return mask * x + (1 - mask) * known

    x_T = keep_known(randn_like(image, generator=generator), timesteps[0])
    return ddpm_sample(
        model, x_T, timesteps, schedule=schedule, generator=generator, after_step=keep_known, **sampler_kwargs
    )
