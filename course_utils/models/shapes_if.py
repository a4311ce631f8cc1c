"""The course's pixel-space, text-conditional shapes denoiser: the offline stand-in for DeepFloyd IF stage I.

DeepFloyd IF stage I (Saharia et al. 2022's cascaded, pixel-space recipe; the model the sampling-loop weeks use on a
GPU) denoises 64×64 RGB pixels directly, conditioned on a frozen T5's hidden states through cross-attention, with a
cosine noise schedule over T = 1000 steps (``squaredcos_cap_v2``, Nichol & Dhariwal 2021, eq. 17). This model is the
same recipe at the shapes world's size:

- ``ε_θ(x_t, t, τ(y))`` is a diffusers ``UNet2DConditionModel`` on 3×32×32 pixels in ``[-1, 1]``
  (:class:`PixelUNetConfig`: three levels of 32, 64 and 128 channels at 32×32, 16×16 and 8×8, cross-attention in the
  8×8 level and the middle block);
- ``τ`` is the course's text encoder, the shapes CLIP's text tower as :mod:`course_utils.models.shapes_sd` tuned it,
  fine-tuned again with this U-Net (hidden states ``(B, 32, 64)``), where IF has T5-XXL;
- the U-Net predicts ``v = √ᾱ_t ε − √(1 − ᾱ_t) x_0`` (Salimans & Ho 2022, eq. 9) where IF predicts ε: at the
  highest noise levels ``ᾱ_t`` is about 0.003, so an ε-model's x̂₀ = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t multiplies its
  error by about 18, and the first steps fix a wrong background colour (trained for the same 1,600 steps, the
  ε-model read right only 0.46 of the backgrounds); v is the clean picture there, which the network draws well.
  The loss is weighted by Min-SNR-γ as :mod:`course_utils.models.shapes_sd` trains its latent U-Net; 10 % of
  training prompts are empty for classifier-free guidance;
- :class:`~course_utils.denoisers.ShapesIFDenoiser` turns v back into ε̂ = √ᾱ_t v + √(1 − ᾱ_t) x_t, so the course's
  samplers and the notebooks' hand-written steps see an ε-predictor, as with IF;
- IF's U-Net also predicts a variance (6 output channels) and IF thresholds x̂₀ dynamically; this one predicts v only
  and the samplers clip x̂₀ to ``[-1, 1]``.

:class:`ShapesIFPipeline` holds the four parts (``unet``, ``scheduler``, ``text_encoder``, ``tokenizer``); saved with
``save_pretrained`` it loads with ``ShapesIFPipeline.from_pretrained(path)`` and through
:func:`course_utils.denoisers.load_denoiser` (``course/shapes-if``), and calling it samples with classifier-free
guidance as ``IFPipeline`` does.

Shapes: images ``(B, 3, 32, 32)`` in ``[-1, 1]``; prompt embeddings ``(B, 32, 64)``; timesteps ``(B,)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DDPMScheduler, DiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from course_utils.errors import CourseError
from course_utils.models.shapes_sd import prompt_embeds
from course_utils.runtime import quiet_loading

__all__ = [
    "PixelUNetConfig",
    "ShapesIFPipeline",
    "build_pixel_unet",
    "build_shapes_if_scheduler",
    "load_shapes_if",
]


@dataclass(frozen=True)
class PixelUNetConfig:
    """Sizes of the pixel-space shapes U-Net (a diffusers ``UNet2DConditionModel``).

    Attributes:
        sample_size: image side in pixels.
        block_out_channels: channels per level, one level per resolution (32, 16, 8 pixels).
        cross_attention_levels: which levels have cross-attention (the middle block always has it); attention at
            16×16 costs a third more per step on a CPU than at 8×8 alone.
        layers_per_block: ResNet (+ transformer) layers per level.
        attention_heads: heads of every attention layer (diffusers calls this ``attention_head_dim``).
        cross_attention_dim: width of the text encoder's hidden states.
    """

    sample_size: int = 32
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    cross_attention_levels: tuple[bool, ...] = (False, False, True)
    layers_per_block: int = 1
    attention_heads: int = 4
    cross_attention_dim: int = 64
    norm_num_groups: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        object.__setattr__(self, "cross_attention_levels", tuple(bool(a) for a in self.cross_attention_levels))
        if len(self.cross_attention_levels) != len(self.block_out_channels):
            raise CourseError(
                f"PixelUNetConfig: {len(self.block_out_channels)} levels but {len(self.cross_attention_levels)}"
                " cross_attention_levels"
            )
        if any(c % self.norm_num_groups or c % self.attention_heads for c in self.block_out_channels):
            raise CourseError(
                f"PixelUNetConfig.block_out_channels {self.block_out_channels} must be multiples of norm_num_groups"
                f" ({self.norm_num_groups}) and attention_heads ({self.attention_heads})"
            )
        if self.sample_size % 2 ** (len(self.block_out_channels) - 1):
            raise CourseError(
                f"PixelUNetConfig.sample_size={self.sample_size} does not halve {len(self.block_out_channels) - 1}"
                " times"
            )


def build_pixel_unet(config: PixelUNetConfig = PixelUNetConfig(), *, seed: int = 0) -> UNet2DConditionModel:
    """An untrained ``UNet2DConditionModel`` on RGB pixels of ``config``'s sizes; one seed always gives the same
    weights (the global RNG is left as it was)."""
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in config.cross_attention_levels)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.cross_attention_levels))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DConditionModel(
            sample_size=config.sample_size,
            in_channels=3,
            out_channels=3,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            attention_head_dim=config.attention_heads,
            cross_attention_dim=config.cross_attention_dim,
            norm_num_groups=config.norm_num_groups,
        )


def build_shapes_if_scheduler() -> DDPMScheduler:
    """DeepFloyd IF stage I's schedule: cosine ᾱ (``squaredcos_cap_v2``), T = 1000, x̂₀ clipped to ``[-1, 1]`` (IF
    thresholds it dynamically) and the fixed posterior variance (IF learns its own); v-prediction where IF's is ε."""
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        clip_sample=True,
        clip_sample_range=1.0,
        variance_type="fixed_small",
    )


class ShapesIFPipeline(DiffusionPipeline):
    """Text to 32×32 image in pixel space: the four parts of the course's IF stage I stand-in.

    ``pipe(prompts, num_inference_steps=50, guidance_scale=7.5, generator=g)`` returns images ``(B, 3, 32, 32)`` in
    ``[-1, 1]`` (``output_type="pt"``) or PIL images (``"pil"``), sampled by the scheduler with classifier-free
    guidance ``ε̃ = ε_∅ + w (ε_c − ε_∅)`` (Ho & Salimans 2022, eq. 6) against the empty prompt.
    """

    model_cpu_offload_seq = "text_encoder->unet"

    def __init__(
        self,
        unet: UNet2DConditionModel,
        scheduler: DDPMScheduler,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer)

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        """``τ(y)`` ``(B, 32, 64)``: the text encoder's last hidden states; words outside the shapes vocabulary are
        refused in one line."""
        return prompt_embeds(self.text_encoder, self.tokenizer, list(prompts)).to(self.unet.dtype)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | Sequence[str],
        *,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
    ):
        if output_type not in ("pil", "pt"):
            raise CourseError(f"output_type must be 'pil' or 'pt', got {output_type!r}")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        cond = self.encode_prompt(prompts)
        uncond = self.encode_prompt([""] * len(prompts))
        size = self.unet.config.sample_size
        x = torch.randn((len(prompts), 3, size, size), generator=generator).to(self.device, self.unet.dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        # DDIM with clipped x̂₀: ε̂ re-derived from the clipped x̂₀, as the course's ddim_step does; DDPM has no option
        options = {}
        if "use_clipped_model_output" in inspect.signature(self.scheduler.step).parameters:
            options["use_clipped_model_output"] = True
        for t in self.progress_bar(self.scheduler.timesteps):
            both = self.unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
            out_u, out_c = both.chunk(2)  # the U-Net's v (or ε), unconditional and conditional
            out = out_u + guidance_scale * (out_c - out_u)
            x = self.scheduler.step(out, t, x, generator=generator, **options).prev_sample
        x = x.clamp(-1, 1).float().cpu()
        if output_type == "pt":
            return x
        return self.numpy_to_pil(((x + 1) / 2).permute(0, 2, 3, 1).numpy())


def load_shapes_if(path: str | Path, **kwargs) -> ShapesIFPipeline:
    """``ShapesIFPipeline.from_pretrained(path)`` with a one-line error where no model is saved."""
    path = Path(path)
    if not (path / "model_index.json").is_file():
        raise CourseError(f"no pixel-space shapes model at {path} (expected model_index.json; run `make models`)")
    with quiet_loading():
        pipe = ShapesIFPipeline.from_pretrained(path, **{"dtype": torch.float32, **kwargs})
    pipe.set_progress_bar_config(disable=True)
    return pipe
