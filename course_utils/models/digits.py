"""A class-conditional pixel-space DDPM for scikit-learn's 8×8 digits.

A diffusers ``UNet2DModel`` with a class embedding (``num_class_embeds = 11``: digits 0–9 and a
*null* class 10 used for classifier-free guidance, Ho & Salimans 2022), trained with the ε-prediction
loss of Ho et al. 2020 (Algorithm 1). Saved as a diffusers ``DDPMPipeline`` folder (``unet/``,
``scheduler/``, ``model_index.json``; safetensors weights) so ``DiffusionPipeline.from_pretrained``
loads it exactly as it loads a Hub pipeline.

:class:`DigitsPipeline` samples such a folder in one call (a plain ``DDPMPipeline`` cannot: the U-Net needs
``class_labels``): ``DigitsPipeline.from_pretrained("data/models/digits-ddpm")(class_labels=[3, 7],
guidance_scale=3.0)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import DDPMPipeline, DDPMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor

from course_utils.errors import CourseError, check_choice
from course_utils.sampling.guidance import classifier_free_guidance

__all__ = [
    "NULL_CLASS",
    "NUM_CLASSES",
    "DigitsPipeline",
    "build_digits_scheduler",
    "build_digits_unet",
    "save_digits_pipeline",
]

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


def build_digits_scheduler(*, beta_schedule: str = "linear", prediction_type: str = "epsilon") -> DDPMScheduler:
    """The training schedule: T = 1000, linear β from 1e-4 to 0.02 (Ho et al. 2020) or diffusers'
    ``squaredcos_cap_v2`` (Nichol & Dhariwal 2021), x̂₀ clipped to [-1, 1]; the network predicts ε or v."""
    check_choice("beta schedule", beta_schedule, ("linear", "squaredcos_cap_v2"))
    check_choice("prediction type", prediction_type, ("epsilon", "v_prediction"))
    return DDPMScheduler(
        num_train_timesteps=1000, beta_schedule=beta_schedule, clip_sample=True, prediction_type=prediction_type
    )


def save_digits_pipeline(unet: UNet2DModel, path: str | Path, *, scheduler: DDPMScheduler | None = None) -> Path:
    """Save ``unet`` with its scheduler (default :func:`build_digits_scheduler`) as a diffusers ``DDPMPipeline``
    folder (safetensors), the layout of ``data/models/digits-ddpm``."""
    path = Path(path)
    scheduler = scheduler or build_digits_scheduler()
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(path, safe_serialization=True)
    return path


class DigitsPipeline(DiffusionPipeline):
    """Class-conditional sampling of a digits DDPM folder with classifier-free guidance, in one call.

    Loads the folders :func:`save_digits_pipeline` writes (``data/models/digits-ddpm``, ``diffusion-course train
    digits``): ``DigitsPipeline.from_pretrained(path)``; another diffusers scheduler can be passed as
    ``scheduler=`` (``DDIMScheduler.from_pretrained(path, subfolder="scheduler")``).
    At each step (Ho & Salimans 2022, eq. 6) the U-Net's outputs for the labels and for the null class
    :data:`NULL_CLASS` are combined as ``out_∅ + w (out_c − out_∅)``; ``w = 1`` is the conditional model alone.
    With a DDIM scheduler each step uses ``use_clipped_model_output=True``, so it equals the course's
    :func:`course_utils.sampling.diffusion.ddim_step`.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(
        self,
        class_labels: int | Sequence[int] | torch.Tensor,
        *,
        guidance_scale: float = 1.0,
        num_inference_steps: int = 50,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """One image per label.

        Args:
            class_labels: digits ``0``–``9`` (one int, a list, or a ``(B,)`` tensor).
            guidance_scale: ``w``; 1 is conditional sampling without guidance.
            num_inference_steps: denoising steps (the scheduler's spacing over T = 1000).
            generator: draws the starting noise and the scheduler's noise (a CPU generator gives the same
                images on every device).
            output_type: ``pil``, ``np`` (``(B, 8, 8, 1)`` in [0, 1]) or ``pt`` (``(B, 1, 8, 8)`` in [0, 1]).

        Returns:
            ``ImagePipelineOutput(images=…)``, or ``(images,)`` when ``return_dict`` is False.
        """
        check_choice("output type", output_type, ("pil", "np", "pt"))
        labels = torch.as_tensor(class_labels).reshape(-1).long()
        if labels.numel() == 0 or not ((labels >= 0) & (labels < NUM_CLASSES)).all():
            raise CourseError(f"class_labels are digits 0-{NUM_CLASSES - 1}, got {labels.tolist()}")
        if num_inference_steps < 1:
            raise CourseError(f"num_inference_steps must be positive, got {num_inference_steps}")
        device, size = self._execution_device, self.unet.config.sample_size
        shape = (labels.numel(), self.unet.config.in_channels, size, size)  # (B, 1, 8, 8)
        x = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        labels = labels.to(device)
        null = torch.full_like(labels, NULL_CLASS)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        # DDIM with clipped x̂₀: ε̂ re-derived from the clipped x̂₀, as the course's ddim_step does (without it strong
        # guidance breaks pixel-space DDIM); DDPM's step has no such option
        step_options = {}
        if "use_clipped_model_output" in inspect.signature(self.scheduler.step).parameters:
            step_options["use_clipped_model_output"] = True
        for t in self.progress_bar(self.scheduler.timesteps):
            if guidance_scale == 1.0:
                out = self.unet(x, t, class_labels=labels).sample
            else:  # both branches in one batch: (2B, 1, 8, 8)
                both = self.unet(torch.cat([x, x]), t, class_labels=torch.cat([labels, null])).sample
                out_cond, out_uncond = both.chunk(2)
                out = classifier_free_guidance(out_cond, out_uncond, guidance_scale)
            x = self.scheduler.step(out, t, x, generator=generator, **step_options).prev_sample
        images = (x / 2 + 0.5).clamp(0, 1)
        if output_type != "pt":
            images = images.cpu().permute(0, 2, 3, 1).float().numpy()  # (B, 8, 8, 1)
            if output_type == "pil":
                images = self.numpy_to_pil(images)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)


def class_labels(labels: torch.Tensor, *, p_uncond: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Label dropout: replace each label by :data:`NULL_CLASS` with probability ``p_uncond``. ``(B,) → (B,)``."""
    drop = torch.rand(labels.shape, generator=generator) < p_uncond
    return torch.where(drop, torch.full_like(labels, NULL_CLASS), labels)
