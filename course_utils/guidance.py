"""Guidance: ways of combining a denoiser's outputs under different conditions.

Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", arXiv:2207.12598.
"""

from __future__ import annotations

import torch

__all__ = ["classifier_free_guidance"]


def classifier_free_guidance(out_cond: torch.Tensor, out_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """``ε̃ = ε_uncond + w (ε_cond − ε_uncond)`` (Ho & Salimans 2022, eq. 6, written with w = 1 + their w).

    ``w = 1`` is the conditional model, ``w = 0`` the unconditional one, ``w > 1`` extrapolates away
    from the unconditional estimate. Shapes: both outputs ``(B, C, H, W)``; returns the same shape.
    """
    return out_uncond + scale * (out_cond - out_uncond)
