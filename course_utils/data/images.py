"""Small image operations on tensors ``(B, C, H, W)`` in ``[-1, 1]``: the classical baseline and conversions."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from course_utils.errors import CourseError

__all__ = ["from_pil", "gaussian_blur", "gaussian_kernel", "to_numpy_image"]


def gaussian_kernel(sigma: float, *, radius: int | None = None) -> torch.Tensor:
    """A normalised 1-D Gaussian ``exp(−x² / 2σ²)`` of length ``2·radius + 1`` (default radius ⌈3σ⌉)."""
    if sigma <= 0:
        raise CourseError(f"sigma must be positive, got {sigma}")
    radius = int(np.ceil(3 * sigma)) if radius is None else radius
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each channel with a separable Gaussian of std ``sigma`` pixels (reflect padding).

    The classical denoiser: it removes high-frequency noise and the image's own detail alike.
    ``(B, C, H, W) → (B, C, H, W)``.
    """
    k = gaussian_kernel(sigma).to(images)
    r = k.numel() // 2
    b, c, h, w = images.shape
    x = images.reshape(b * c, 1, h, w)
    mode = "reflect" if r < min(h, w) else "replicate"
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))  # along W
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))  # along H
    return x.reshape(b, c, h, w)


def to_numpy_image(x: torch.Tensor) -> np.ndarray:
    """One image ``(C, H, W)`` in ``[-1, 1]`` → ``(H, W)`` or ``(H, W, 3)`` floats in ``[0, 1]`` for matplotlib."""
    if x.ndim != 3:
        raise CourseError(f"expected one image (C, H, W), got shape {tuple(x.shape)}")
    img = ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
    return img[..., 0] if img.shape[-1] == 1 else img


def from_pil(image) -> torch.Tensor:
    """A PIL image (what diffusers pipelines return) → ``(3, H, W)`` floats in ``[-1, 1]``."""
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 127.5 - 1
