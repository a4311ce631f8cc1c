"""Views for visual anagrams: invertible pixel permutations of images ``(B, C, H, W)``.

Geng, Park & Owens 2024, "Visual Anagrams: Generating Multi-View Optical Illusions with Diffusion
Models" (arXiv:2311.17919), show that a view must be orthogonal (a permutation of pixels, like a flip
or rotation) for the noise estimate of the viewed image to stay Gaussian noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from course_utils.errors import check_choice

__all__ = ["VIEWS", "View", "get_view"]


@dataclass(frozen=True)
class View:
    """A named view ``forward`` and its inverse ``inverse`` (both ``(B, C, H, W) → (B, C, H, W)``)."""

    name: str
    forward: Callable[[torch.Tensor], torch.Tensor]
    inverse: Callable[[torch.Tensor], torch.Tensor]


VIEWS = {
    "identity": View("identity", lambda x: x, lambda x: x),
    "rot180": View("rot180", lambda x: x.flip(-2, -1), lambda x: x.flip(-2, -1)),  # turned upside down
    "flip_vertical": View("flip_vertical", lambda x: x.flip(-2), lambda x: x.flip(-2)),
    "flip_horizontal": View("flip_horizontal", lambda x: x.flip(-1), lambda x: x.flip(-1)),
    "rot90": View("rot90", lambda x: x.rot90(1, (-2, -1)), lambda x: x.rot90(-1, (-2, -1))),
    "transpose": View("transpose", lambda x: x.transpose(-2, -1), lambda x: x.transpose(-2, -1)),
}


def get_view(name: str) -> View:
    """The view called ``name``; an unknown name is one line naming the valid views."""
    check_choice("view", name, VIEWS)
    return VIEWS[name]
