"""Guidance: combining a denoiser's noise estimates under several conditions or views.

Every rule here is a pure function of noise estimates (shape ``(B, C, H, W)``), and the model
wrappers :func:`visual_anagram` and :func:`hybrid` turn a denoiser into another one that the samplers
of :mod:`course_utils.sampling.diffusion` run unchanged. Both wrappers are *linear* in the model's output, so
classifier-free guidance composes with them: guiding the wrapped model equals wrapping guided models.

Papers:
    * Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", arXiv:2207.12598.
    * Geng, Park & Owens 2024, "Visual Anagrams", arXiv:2311.17919.
    * Geng, Park & Owens 2024, "Factorized Diffusion: Perceptual Illusions by Noise Decomposition"
      (hybrid images), arXiv:2404.11615.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from course_utils.data.images import gaussian_blur
from course_utils.errors import CourseError
from course_utils.sampling.views import View, get_view

__all__ = [
    "anagram_combine",
    "classifier_free_guidance",
    "high_pass",
    "hybrid",
    "hybrid_combine",
    "low_pass",
    "visual_anagram",
]

Model = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


def classifier_free_guidance(out_cond: torch.Tensor, out_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """``ε̃ = ε_uncond + w (ε_cond − ε_uncond)`` (Ho & Salimans 2022, eq. 6, written with w = 1 + their w).

    ``w = 1`` is the conditional model, ``w = 0`` the unconditional one, ``w > 1`` extrapolates away
    from the unconditional estimate. Shapes: both outputs ``(B, C, H, W)``; returns the same shape.
    """
    return out_uncond + scale * (out_cond - out_uncond)


def anagram_combine(eps_a: torch.Tensor, eps_b_in_view: torch.Tensor, view: View) -> torch.Tensor:
    """``ε = ½ (ε_a(x) + V⁻¹ ε_b(V x))`` (Geng et al. 2024, Visual Anagrams, eq. 3 with two views).

    ``eps_a`` is the estimate for the image as it is under condition a; ``eps_b_in_view`` the estimate
    for the *viewed* image ``V x`` under condition b, which is mapped back with the inverse view.
    """
    return 0.5 * (eps_a + view.inverse(eps_b_in_view))


def low_pass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The low frequencies of ``x``: a Gaussian blur of std ``sigma`` pixels. ``(B, C, H, W)``."""
    return gaussian_blur(x, sigma)


def high_pass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The high frequencies of ``x``: ``x − low_pass(x)``, so ``low_pass + high_pass = x``."""
    return x - gaussian_blur(x, sigma)


def hybrid_combine(eps_low: torch.Tensor, eps_high: torch.Tensor, sigma: float) -> torch.Tensor:
    """``ε = f_low(ε_1) + f_high(ε_2)`` (Geng et al. 2024, Factorized Diffusion, eq. 5 for two components).

    The image's low frequencies follow condition 1 (what is seen from afar, or blurred) and its high
    frequencies condition 2 (what is seen close up).
    """
    return low_pass(eps_low, sigma) + high_pass(eps_high, sigma)


def evaluate_together(model: Model, calls: Sequence[tuple[torch.Tensor, torch.Tensor, Any]]) -> list[torch.Tensor]:
    """``[model(x, t, cond) for x, t, cond in calls]``, run as one batch.

    Where every ``cond`` is a tensor of one shape with one row per image (class labels ``(B,)``, prompt
    embeddings ``(B, L, D)``), the calls stack into one network call of ``len(calls) × B`` instead of several
    small ones, as diffusers' pipelines batch the two branches of guidance. Other conditions run call by call.
    A call repeated with the very same tensors (a hybrid's unconditional pair ``(∅, ∅)`` on one ``x_t``) runs
    once."""
    unique: list[tuple[torch.Tensor, torch.Tensor, Any]] = []
    slot = []  # calls[i] is unique[slot[i]]
    for call in calls:
        same = [j for j, u in enumerate(unique) if all(a is b for a, b in zip(u, call, strict=True))]
        if not same:
            unique.append(call)
        slot.append(same[0] if same else len(unique) - 1)
    conds = [c for _, _, c in unique]
    batched = all(  # one condition per image, of one shape: they stack along the batch
        isinstance(c, torch.Tensor) and c.ndim > 0 and c.shape == conds[0].shape and c.shape[0] == x.shape[0]
        for x, _, c in unique
    )
    if len(unique) > 1 and batched:
        out = model(torch.cat([x for x, _, _ in unique]), torch.cat([t for _, t, _ in unique]), torch.cat(conds))
        outputs = list(out.chunk(len(unique)))
    else:
        outputs = [model(x, t, c) for x, t, c in unique]
    return [outputs[j] for j in slot]


def _pair(cond: Any, technique: str) -> tuple[Any, Any]:
    if not (isinstance(cond, tuple | list) and len(cond) == 2):
        raise CourseError(f"{technique} conditions come in pairs (cond_a, cond_b), got {type(cond).__name__}")
    return cond[0], cond[1]


def visual_anagram(model: Model, *, view: str | View = "rot180") -> Model:
    """A model whose samples read as condition a as they are and as condition b in ``view``.

    The returned ``anagram(x_t, t, (cond_a, cond_b))`` evaluates ``model`` on ``x_t`` under ``cond_a``
    and on ``view(x_t)`` under ``cond_b`` and combines them with :func:`anagram_combine`. Pass pairs
    as ``cond`` and ``uncond`` to a sampler.
    """
    view = get_view(view) if isinstance(view, str) else view

    def anagram(x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        cond_a, cond_b = _pair(cond, "visual anagram")
        eps_a, eps_b = evaluate_together(model, [(x_t, t, cond_a), (view.forward(x_t), t, cond_b)])
        return anagram_combine(eps_a, eps_b, view)

    return anagram


def hybrid(model: Model, *, sigma: float) -> Model:
    """A model whose samples show condition 1 in their low and condition 2 in their high frequencies.

    The returned ``hybrid_model(x_t, t, (cond_low, cond_high))`` combines the two estimates with
    :func:`hybrid_combine`; ``sigma`` is the blur (in pixels) that separates the bands.
    """
    if sigma <= 0:
        raise CourseError(f"sigma must be positive, got {sigma}")

    def hybrid_model(x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        cond_low, cond_high = _pair(cond, "hybrid image")
        eps_low, eps_high = evaluate_together(model, [(x_t, t, cond_low), (x_t, t, cond_high)])
        return hybrid_combine(eps_low, eps_high, sigma)

    return hybrid_model
