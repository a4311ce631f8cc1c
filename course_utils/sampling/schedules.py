"""Noise schedules: the variances β_t of the forward process and the products ᾱ_t.

Notation (see ``course_utils/GLOSSARY.md``): ``T`` training timesteps indexed ``t = 0 … T-1``,
``β_t`` the variance added at step ``t``, ``α_t = 1 − β_t`` and ``ᾱ_t = ∏_{s≤t} α_s``, so that
``q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)`` (Ho et al. 2020, "Denoising Diffusion Probabilistic
Models", eq. 4).

Schedules are pure functions returning float32 tensors of shape ``(T,)``, computed exactly as
diffusers' schedulers compute them, so a course model and a hub model share the same ``ᾱ``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from course_utils.errors import check_choice

__all__ = [
    "PREDICTION_TYPES",
    "SCHEDULES",
    "NoiseSchedule",
    "alphas_cumprod",
    "cosine_betas",
    "linear_betas",
    "make_betas",
    "scaled_linear_betas",
]


def linear_betas(num_timesteps: int = 1000, *, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """β_t rising linearly from ``beta_start`` to ``beta_end`` (Ho et al. 2020, §4). Shape ``(T,)``."""
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float32)


def scaled_linear_betas(
    num_timesteps: int = 1000, *, beta_start: float = 0.00085, beta_end: float = 0.012
) -> torch.Tensor:
    """√β_t linear in t, the schedule of latent diffusion / Stable Diffusion (Rombach et al. 2022). ``(T,)``."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float32) ** 2


def cosine_betas(num_timesteps: int = 1000, *, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine schedule of Nichol & Dhariwal 2021 ("Improved DDPM"), eq. 17.

    ``ᾱ(t) = f(t)/f(0)`` with ``f(t) = cos²((t/T + s)/(1 + s) · π/2)`` and
    ``β_t = min(1 − ᾱ(t+1)/ᾱ(t), max_beta)``. Shape ``(T,)``. diffusers calls it ``squaredcos_cap_v2``.
    """

    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - f((i + 1) / num_timesteps) / f(i / num_timesteps), max_beta) for i in range(num_timesteps)]
    return torch.tensor(betas, dtype=torch.float32)


SCHEDULES = {"linear": linear_betas, "scaled_linear": scaled_linear_betas, "cosine": cosine_betas}
"""Schedule name → function. The names diffusers uses map as: ``squaredcos_cap_v2`` → ``cosine``."""

_DIFFUSERS_NAMES = {"squaredcos_cap_v2": "cosine"}


def make_betas(name: str, num_timesteps: int = 1000, **kwargs: float) -> torch.Tensor:
    """β_t for a schedule by name (``linear``, ``scaled_linear``, ``cosine``, or diffusers' names)."""
    name = _DIFFUSERS_NAMES.get(name, name)
    check_choice("noise schedule", name, SCHEDULES)
    return SCHEDULES[name](num_timesteps, **kwargs)


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """ᾱ_t = ∏_{s≤t} (1 − β_s) (Ho et al. 2020, notation above eq. 4). ``(T,) → (T,)``."""
    return torch.cumprod(1.0 - betas, dim=0)


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


@dataclass(frozen=True)
class NoiseSchedule:
    """What a sampler needs to know about a trained model's forward process.

    Attributes:
        alphas_cumprod: ᾱ_t, shape ``(T,)``.
        prediction_type: what the network outputs: ``epsilon`` (ε, Ho et al. 2020),
            ``v_prediction`` (v = √ᾱ ε − √(1−ᾱ) x₀, Salimans & Ho 2022, eq. 9) or ``sample`` (x₀).
        clip_x0: clamp the x̂₀ estimate to ``[-clip_x0, clip_x0]`` at every step (pixel models), or
            ``None`` for no clamp (latent models).
    """

    alphas_cumprod: torch.Tensor
    prediction_type: str = "epsilon"
    clip_x0: float | None = None

    def __post_init__(self) -> None:
        check_choice("prediction type", self.prediction_type, PREDICTION_TYPES)

    @property
    def num_timesteps(self) -> int:
        """T, the number of training timesteps."""
        return int(self.alphas_cumprod.shape[0])

    @classmethod
    def from_name(cls, name: str, num_timesteps: int = 1000, **kwargs: object) -> NoiseSchedule:
        """A schedule by name (see :data:`SCHEDULES`), e.g. ``NoiseSchedule.from_name("linear")``."""
        return cls(alphas_cumprod(make_betas(name, num_timesteps)), **kwargs)

    @classmethod
    def from_scheduler(cls, scheduler: object) -> NoiseSchedule:
        """Read ᾱ, the prediction type and x̂₀ clipping from a diffusers scheduler (DDPM, DDIM, …)."""
        config = scheduler.config
        clip = config.get("clip_sample_range", 1.0) if config.get("clip_sample", False) else None
        return cls(
            scheduler.alphas_cumprod.clone(),
            prediction_type=config.get("prediction_type", "epsilon"),
            clip_x0=clip,
        )
