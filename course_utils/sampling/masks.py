"""Inpainting masks: ``1`` where the model generates, ``0`` where the original image is kept.

Masks are float tensors of shape ``(H, W)`` with values in ``{0, 1}``; :func:`check_mask` broadcasts
one against images ``(B, C, H, W)``.
"""

from __future__ import annotations

import numpy as np
import torch

from course_utils.errors import CourseError

__all__ = ["box_mask", "check_mask", "circle_mask", "mask_from_image"]


def box_mask(size: int | tuple[int, int], *, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """A rectangle of ones (the region to fill) in an ``(H, W)`` mask of zeros."""
    h, w = (size, size) if isinstance(size, int) else size
    if not (0 <= top < h and 0 <= left < w and height > 0 and width > 0):
        raise CourseError(f"box (top={top}, left={left}, {height}×{width}) does not lie in a {h}×{w} image")
    mask = torch.zeros(h, w)
    mask[top : top + height, left : left + width] = 1.0
    return mask


def circle_mask(size: int | tuple[int, int], *, center: tuple[float, float], radius: float) -> torch.Tensor:
    """A disc of ones of ``radius`` pixels around ``center = (row, col)`` in an ``(H, W)`` mask."""
    h, w = (size, size) if isinstance(size, int) else size
    if radius <= 0:
        raise CourseError(f"radius must be positive, got {radius}")
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (((rows - center[0]) ** 2 + (cols - center[1]) ** 2) <= radius**2).float()


def mask_from_image(image: np.ndarray | torch.Tensor, *, threshold: float = 0.5) -> torch.Tensor:
    """A mask from a picture: pixels brighter than ``threshold`` (in ``[0, 1]``, or 0–255) become ones.

    Accepts ``(H, W)``, ``(H, W, C)`` arrays (e.g. a PNG read with ``imageio``) or ``(C, H, W)`` tensors.
    """
    x = torch.as_tensor(np.asarray(image), dtype=torch.float32)
    if x.max() > 1:
        x = x / 255.0
    if x.ndim == 3:
        x = x.mean(dim=0) if x.shape[0] in (1, 3, 4) and x.shape[-1] not in (1, 3, 4) else x.mean(dim=-1)
    if x.ndim != 2:
        raise CourseError(f"mask image must be 2-D or an image with channels, got shape {tuple(x.shape)}")
    return (x > threshold).float()


def check_mask(mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Return ``mask`` shaped to broadcast against ``image`` ``(B, C, H, W)``; a wrong size is one line."""
    if mask.ndim == 2:
        mask = mask[None, None]
    if mask.ndim != 4 or mask.shape[-2:] != image.shape[-2:] or mask.shape[1] not in (1, image.shape[1]):
        raise CourseError(
            f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(image.shape)}; "
            f"use an (H, W) = {tuple(image.shape[-2:])} mask"
        )
    if not torch.all((mask == 0) | (mask == 1)):
        raise CourseError("mask values must be 0 (keep) or 1 (generate)")
    return mask.to(image)
