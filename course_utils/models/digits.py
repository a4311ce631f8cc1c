"""A class-conditional pixel-space DDPM for scikit-learn's 8×8 digits.

A diffusers ``UNet2DModel`` with a class embedding (``num_class_embeds = 11``: digits 0–9 and a
*null* class 10 used for classifier-free guidance, Ho & Salimans 2022), trained with the ε-prediction
loss of Ho et al. 2020 (Algorithm 1). Saved as a diffusers ``DDPMPipeline`` folder (``unet/``,
``scheduler/``, ``model_index.json``; safetensors weights) so ``DiffusionPipeline.from_pretrained``
loads it exactly as it loads a Hub pipeline.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

__all__ = ["NULL_CLASS", "NUM_CLASSES", "build_digits_scheduler", "build_digits_unet", "save_digits_pipeline"]

NUM_CLASSES = 10
NULL_CLASS = NUM_CLASSES  # the "no label" class, seen with probability p_uncond during training


def build_digits_unet(*, block_out_channels: tuple[int, ...] = (32, 64), layers_per_block: int = 1) -> UNet2DModel:
    """An untrained U-Net for ``(B, 1, 8, 8)`` digits: 8×8 → 4×4 and back, class-conditional."""
    n = len(block_out_channels)
    return UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=block_out_channels,
        down_block_types=("DownBlock2D",) * n,
        up_block_types=("UpBlock2D",) * n,
        layers_per_block=layers_per_block,
        norm_num_groups=8,
        num_class_embeds=NUM_CLASSES + 1,
    )


def build_digits_scheduler() -> DDPMScheduler:
    """The training schedule: T = 1000, linear β from 1e-4 to 0.02, x̂₀ clipped to [-1, 1] (Ho et al. 2020)."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)


def save_digits_pipeline(unet: UNet2DModel, path: str | Path) -> Path:
    """Save ``unet`` with its scheduler as a diffusers ``DDPMPipeline`` folder (safetensors)."""
    path = Path(path)
    DDPMPipeline(unet=unet, scheduler=build_digits_scheduler()).save_pretrained(path, safe_serialization=True)
    return path


def class_labels(labels: torch.Tensor, *, p_uncond: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Label dropout: replace each label by :data:`NULL_CLASS` with probability ``p_uncond``. ``(B,) → (B,)``."""
    drop = torch.rand(labels.shape, generator=generator) < p_uncond
    return torch.where(drop, torch.full_like(labels, NULL_CLASS), labels)
