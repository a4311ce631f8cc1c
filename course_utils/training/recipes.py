"""Training recipes: what ``diffusion-course train RECIPE`` trains, each a model, a loss and a :class:`TrainConfig`
run by :func:`course_utils.training.loop.fit`, saved in the layout its model family loads from.

- ``digits``: the course's class-conditional digits DDPM (:mod:`course_utils.models.digits`), saved as the
  ``DDPMPipeline`` folder of ``data/models/digits-ddpm``: the committed model's settings on a 2,000-step schedule,
  so the cosine decay of the learning rate ends within the 2-minute budget of ``make bench`` on 2 idle cores
  (the benchmark's course recipe);
- ``digits-ddpm``: the recipe of the committed ``data/models/digits-ddpm`` (``make models``: 4,000 steps);
- ``digits-reference``: diffusers' reference recipe on the same U-Net and data (``UNet2DModel`` with
  ``DDPMScheduler()``'s defaults, ε-prediction, AdamW at a constant 1e-4, no EMA), the benchmark's baseline.

Every digits recipe trains on the training split of :func:`course_utils.data.digits.load_digits_split` with
10 % label dropout (the null class for classifier-free guidance, Ho & Salimans 2022).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from diffusers import UNet2DModel

from course_utils.data.digits import load_digits_split
from course_utils.errors import check_choice
from course_utils.models.digits import build_digits_scheduler, build_digits_unet, class_labels, save_digits_pipeline
from course_utils.training.loop import TrainConfig, train_denoiser

__all__ = ["RECIPES", "DigitsRecipe", "recipe"]


@dataclass(frozen=True)
class DigitsRecipe:
    """A class-conditional digits DDPM: U-Net size, noise schedule, what the network predicts, loss weights, and
    the loop's configuration.

    Attributes:
        name, summary: how ``diffusion-course train`` lists it.
        config: the loop's settings (``steps``, ``seed`` and the checkpoint fields are set per run).
        block_out_channels, layers_per_block: the ``UNet2DModel`` (:func:`build_digits_unet`).
        beta_schedule: ``linear`` (Ho et al. 2020) or ``squaredcos_cap_v2`` (Nichol & Dhariwal 2021).
        prediction_type: ``epsilon`` or ``v_prediction`` (Salimans & Ho 2022).
        snr_gamma: Min-SNR-γ loss weights (Hang et al. 2023); ``None``: the plain loss.
        p_uncond: label dropout.
    """

    name: str
    summary: str
    config: TrainConfig = field(default_factory=TrainConfig)
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    beta_schedule: str = "linear"
    prediction_type: str = "epsilon"
    snr_gamma: float | None = None
    p_uncond: float = 0.1

    def signature(self) -> dict:
        """What a resumed run must share with its checkpoints besides the loop's configuration."""
        return {
            "recipe": self.name,
            "block_out_channels": list(self.block_out_channels),
            "layers_per_block": self.layers_per_block,
            "beta_schedule": self.beta_schedule,
            "prediction_type": self.prediction_type,
            "snr_gamma": self.snr_gamma,
            "p_uncond": self.p_uncond,
        }

    def build(self, *, seed: int) -> UNet2DModel:
        """The untrained U-Net, initialised from the global RNG seeded with ``seed``."""
        torch.manual_seed(seed)
        return build_digits_unet(block_out_channels=self.block_out_channels, layers_per_block=self.layers_per_block)

    def scheduler(self):
        return build_digits_scheduler(beta_schedule=self.beta_schedule, prediction_type=self.prediction_type)

    def train(
        self, unet: UNet2DModel, config: TrainConfig, *, accelerator=None, description: str | None = None
    ) -> tuple[UNet2DModel, list[float]]:
        """Train ``unet`` with :func:`train_denoiser` under ``config``; return (EMA U-Net, losses)."""
        split = load_digits_split()
        return train_denoiser(
            unet,
            x0=split.x_train,
            cond=split.y_train,
            alphas_cumprod=self.scheduler().alphas_cumprod,
            forward=lambda m, x_t, t, c: m(x_t, t, class_labels=c).sample,
            drop_condition=lambda c, g: class_labels(c, p_uncond=self.p_uncond, generator=g),
            prediction_type=self.prediction_type,
            snr_gamma=self.snr_gamma,
            config=config,
            description=description or self.name,
            accelerator=accelerator,
            signature=self.signature(),
        )

    def save(self, unet: UNet2DModel, path: str | Path) -> Path:
        """Write the ``DDPMPipeline`` folder (``unet/``, ``scheduler/``, ``model_index.json``)."""
        return save_digits_pipeline(unet, path, scheduler=self.scheduler())


COMMITTED_CONFIG = TrainConfig(steps=4000, batch_size=128, lr=2e-3, warmup_steps=200, ema_decay=0.995, seed=0)
"""The loop settings of the committed ``data/models/digits-ddpm`` (``make models``)."""

RECIPES: dict[str, DigitsRecipe] = {
    "digits": DigitsRecipe(
        name="digits",
        summary="the course's class-conditional digits DDPM on a 2,000-step schedule (DDPMPipeline folder)",
        config=replace(COMMITTED_CONFIG, steps=2000),
    ),
    "digits-ddpm": DigitsRecipe(
        name="digits-ddpm",
        summary="the recipe of the committed data/models/digits-ddpm (4,000 steps, ε, linear β)",
        config=COMMITTED_CONFIG,
    ),
    "digits-reference": DigitsRecipe(
        name="digits-reference",
        summary="diffusers' reference recipe: DDPMScheduler defaults, ε, AdamW 1e-4 constant, no EMA",
        config=replace(COMMITTED_CONFIG, lr=1e-4, warmup_steps=0, lr_schedule="constant", ema_decay=0.0),
    ),
}


def recipe(name: str) -> DigitsRecipe:
    """The recipe called ``name``; an unknown name is one line naming the valid ones."""
    return RECIPES[check_choice("recipe", name, RECIPES)]
