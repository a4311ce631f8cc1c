"""The course's miniature Stable Diffusion: a text-conditional U-Net on the shapes VAE's latents.

Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models"): an
autoencoder compresses images to latents ``z = s · E(x)`` (here 3×32×32 → 4×8×8, ``s`` the VAE's
``scaling_factor``) and a U-Net ``ε_θ(z_t, t, τ(y))`` learns to denoise them, conditioned on the prompt ``y``
through cross-attention to the text encoder's hidden states ``τ(y)`` (their eq. 3; the loss is Ho et al.'s
ε-prediction, eq. 2 there). Here:

- ``τ`` starts as the text tower of the shapes CLIP (:mod:`course_utils.models.shapes_clip`): its last hidden
  states ``(B, 32, 64)`` for the prompt padded to 32 tokens, exactly what ``StableDiffusionPipeline.encode_prompt``
  computes (:func:`prompt_embeds`). Stable Diffusion keeps its CLIP frozen; this one is fine-tuned with the U-Net
  (``train_text_encoder``), because a CLIP trained only through its pooled end-of-text vector says too little, token
  by token, about which colour belongs to which shape: with it frozen, two-object captions came out with their
  attributes mixed (about 0.76 of their attributes right at guidance 7.5 after 2,500 steps, against 0.85 tuned);
- the U-Net is a diffusers ``UNet2DConditionModel`` (:class:`UNetConfig`: two levels, cross-attention at 8×8
  and in the 4×4 middle block), the class of Stable Diffusion 1.x/2.x;
- the noise schedule is Stable Diffusion's (scaled-linear β from 0.00085 to 0.012, T = 1000), and the loss is
  weighted by Min-SNR-γ (Hang et al. 2023, :func:`min_snr_weights`), which converges faster on this CPU budget;
- classifier-free guidance (Ho & Salimans 2022) needs the unconditional model too: 10 % of training prompts
  are replaced by the empty prompt ``""``, which is what the pipeline encodes when there is no negative prompt;
- besides, each optional attribute of a training caption is left out with probability 10 %
  (``shapes.caption(scene, omit=…)``), so the model also draws partial prompts ("a red circle") and a negative
  prompt naming one attribute ("red") has something to push against.

:func:`assemble_pipeline` puts U-Net, VAE, text encoder, tokenizer and a ``DDIMScheduler`` into a real
``StableDiffusionPipeline``; saved with ``save_pretrained`` it loads with
``DiffusionPipeline.from_pretrained(path)``, and its components drive ``StableDiffusionImg2ImgPipeline`` and
``StableDiffusionInpaintPipeline`` unchanged (``Pipeline(**pipe.components)``).

Shapes: latents ``(B, 4, 8, 8)``; prompt embeddings ``(B, 32, 64)``; timesteps ``(B,)``; images
``(B, 3, 32, 32)`` in ``[-1, 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from course_utils.data.shapes import OMITTABLE, Scene, caption
from course_utils.errors import CourseError, check_choice
from course_utils.models.shapes_clip import encode_captions
from course_utils.runtime import quiet_loading
from course_utils.sampling.diffusion import q_sample
from course_utils.training.loop import TrainConfig, fit, v_target

__all__ = [
    "P_OMIT",
    "P_UNCOND",
    "UNetConfig",
    "assemble_pipeline",
    "build_shapes_scheduler",
    "build_shapes_unet",
    "build_test_size_pipeline",
    "load_shapes_sd",
    "min_snr_weights",
    "prompt_embeds",
    "training_prompts",
    "train_shapes_unet",
]

P_UNCOND = 0.1  # share of training prompts replaced by "" (classifier-free guidance)
P_OMIT = 0.1  # probability of leaving out each optional attribute of a training caption


@dataclass(frozen=True)
class UNetConfig:
    """Sizes of the shapes U-Net (a diffusers ``UNet2DConditionModel``).

    Attributes:
        sample_size: latent side (the VAE's 32 / 4).
        latent_channels: the VAE's latent channels.
        block_out_channels: channels per level; the first level (full latent resolution) has cross-attention,
            the last does not; the middle block (at the lowest resolution) has it too.
        layers_per_block: ResNet (+ transformer) layers per level.
        attention_heads: heads of every attention layer (diffusers calls this ``attention_head_dim``).
        cross_attention_dim: width of the text encoder's hidden states.
    """

    sample_size: int = 8
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (64, 128)
    layers_per_block: int = 1
    attention_heads: int = 4
    cross_attention_dim: int = 64
    norm_num_groups: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        if len(self.block_out_channels) < 2:
            raise CourseError("UNetConfig.block_out_channels needs at least two levels")
        if any(c % self.norm_num_groups or c % self.attention_heads for c in self.block_out_channels):
            raise CourseError(
                f"UNetConfig.block_out_channels {self.block_out_channels} must be multiples of norm_num_groups"
                f" ({self.norm_num_groups}) and attention_heads ({self.attention_heads})"
            )
        if self.sample_size % 2 ** (len(self.block_out_channels) - 1):
            raise CourseError(
                f"UNetConfig.sample_size={self.sample_size} does not halve {len(self.block_out_channels) - 1} times"
            )


def build_shapes_unet(config: UNetConfig = UNetConfig(), *, seed: int = 0) -> UNet2DConditionModel:
    """An untrained ``UNet2DConditionModel`` of ``config``'s sizes; one seed always gives the same weights (the
    global RNG is left as it was)."""
    n = len(config.block_out_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DConditionModel(
            sample_size=config.sample_size,
            in_channels=config.latent_channels,
            out_channels=config.latent_channels,
            down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            attention_head_dim=config.attention_heads,
            cross_attention_dim=config.cross_attention_dim,
            norm_num_groups=config.norm_num_groups,
        )


def build_shapes_scheduler() -> DDIMScheduler:
    """Stable Diffusion 1.x/2.x's training schedule (scaled-linear β 0.00085 → 0.012, T = 1000) in a DDIM
    scheduler, configured as SD's own (``steps_offset=1``, no clipping, ``set_alpha_to_one=False``)."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


@torch.no_grad()
def prompt_embeds(text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """``τ(y)``: the text encoder's last hidden states ``(B, L, D)`` for ``prompts`` padded to
    ``L = tokenizer.model_max_length``, without an attention mask: what ``StableDiffusionPipeline`` feeds its
    U-Net. Words outside the shapes vocabulary are refused in one line."""
    return _embed(text_encoder, tokenizer, prompts)


def _embed(text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, prompts: Sequence[str]) -> torch.Tensor:
    ids = encode_captions(tokenizer, list(prompts), padding="max_length")["input_ids"]
    return text_encoder(ids.to(text_encoder.device))[0]


def training_prompts(
    scenes: Sequence[Scene], generator: torch.Generator, *, p_uncond: float = P_UNCOND, p_omit: float = P_OMIT
) -> list[str]:
    """One training prompt per scene: ``""`` with probability ``p_uncond``, else its caption with each of
    :data:`course_utils.data.shapes.OMITTABLE` left out with probability ``p_omit`` (draws from ``generator``)."""
    n = len(scenes)
    uncond = torch.rand(n, generator=generator) < p_uncond
    omit = torch.rand(n, len(OMITTABLE), generator=generator) < p_omit
    prompts = []
    for i, scene in enumerate(scenes):
        left_out = [key for key, o in zip(OMITTABLE, omit[i].tolist(), strict=True) if o]
        if len(scene.objects) == 2 and "position" in left_out:
            left_out.remove("position")  # a relation always names both positions
        prompts.append("" if uncond[i] else caption(scene, omit=left_out))
    return prompts


def min_snr_weights(
    t: torch.Tensor, alphas_cumprod: torch.Tensor, *, gamma: float, prediction_type: str = "epsilon"
) -> torch.Tensor:
    """Min-SNR-γ loss weights ``min(SNR_t, γ) / SNR_t`` for ε-prediction, ``SNR_t = ᾱ_t / (1 − ᾱ_t)`` (Hang et al.
    2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy", eq. 9 with the ε-loss). Low-noise steps,
    whose ε is nearly impossible to tell from the picture and which dominate the plain loss's gradients, get less
    weight; the paper reports about 3× faster convergence with γ = 5. For v-prediction the weights are
    ``min(SNR_t, γ) / (SNR_t + 1)``: since ``‖v − v̂‖² = ‖ε − ε̂‖² (SNR_t + 1) / SNR_t``, the same weighting of the
    ε-error. ``t`` ``(B,)`` → weights ``(B,)``."""
    check_choice("prediction type", prediction_type, ("epsilon", "v_prediction"))
    abar = alphas_cumprod.to(t.device)[t]
    snr = abar / (1 - abar)
    return snr.clamp(max=gamma) / (snr if prediction_type == "epsilon" else snr + 1)


def train_shapes_unet(
    unet: UNet2DConditionModel,
    latents: torch.Tensor,
    scenes: Sequence[Scene],
    *,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    config: TrainConfig,
    train_text_encoder: bool = False,
    snr_gamma: float | None = None,
    alphas_cumprod: torch.Tensor | None = None,
    prediction_type: str = "epsilon",
    description: str = "shapes U-Net",
) -> tuple[torch.nn.ModuleDict, list[float]]:
    """Train ``unet`` to predict ε on ``latents`` ``(N, 4, 8, 8)`` (scaled, from the VAE) of ``scenes``.

    Each step (with :func:`course_utils.training.loop.fit`): a batch, its prompts (:func:`training_prompts`), their
    embeddings ``τ(y)`` from ``text_encoder``, ``t ~ U{0..T-1}``, ``ε ~ N(0, I)``,
    ``z_t = √ᾱ_t z_0 + √(1 − ᾱ_t) ε`` and the loss ``‖ε − ε_θ(z_t, t, τ(y))‖²``, each sample weighted by
    :func:`min_snr_weights` when ``snr_gamma`` is given.

    Args:
        train_text_encoder: fine-tune the text encoder with the U-Net (Stable Diffusion keeps CLIP frozen; the
            shapes CLIP is so small that letting it learn what the U-Net needs to read is cheap).
        prediction_type: what the U-Net predicts, ``epsilon`` (ε) or ``v_prediction`` (``v = √ᾱ_t ε − √(1 − ᾱ_t) z_0``,
            Salimans & Ho 2022), the target of the loss.

    Returns:
        (the EMA of ``ModuleDict(unet=…, text_encoder=…)``, the loss of every step).
    """
    if len(latents) != len(scenes):
        raise CourseError(f"{len(latents)} latents but {len(scenes)} scenes")
    expected = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    if latents.ndim != 4 or tuple(latents.shape[1:]) != expected:
        raise CourseError(
            f"the U-Net trains on latents (N, {', '.join(map(str, expected))}), got {tuple(latents.shape)}"
        )
    if alphas_cumprod is None:
        alphas_cumprod = build_shapes_scheduler().alphas_cumprod
    text_encoder.requires_grad_(train_text_encoder)
    models = torch.nn.ModuleDict({"unet": unet, "text_encoder": text_encoder})
    num_timesteps = alphas_cumprod.shape[0]

    def loss_fn(net: torch.nn.ModuleDict, gen: torch.Generator) -> torch.Tensor:
        # 1) a batch and its (partly dropped) prompts, 2) τ(y), t, ε, z_t, 3) ‖ε − ε_θ(z_t, t, τ(y))‖², weighted
        idx = torch.randint(0, len(latents), (config.batch_size,), generator=gen)
        prompts = training_prompts([scenes[i] for i in idx.tolist()], gen)
        with torch.set_grad_enabled(train_text_encoder):
            cond = _embed(net["text_encoder"], tokenizer, prompts)
        z0 = latents[idx]
        t = torch.randint(0, num_timesteps, (config.batch_size,), generator=gen)
        eps = torch.randn(z0.shape, generator=gen)
        z_t = q_sample(z0, t, eps, alphas_cumprod=alphas_cumprod)
        target = eps if prediction_type == "epsilon" else v_target(z0, t, eps, alphas_cumprod=alphas_cumprod)
        per_sample = (net["unet"](z_t, t, encoder_hidden_states=cond).sample - target).pow(2).mean(dim=(1, 2, 3))
        if snr_gamma is not None:
            per_sample = per_sample * min_snr_weights(
                t, alphas_cumprod, gamma=snr_gamma, prediction_type=prediction_type
            )
        return per_sample.mean()

    return fit(models, loss_fn=loss_fn, config=config, description=description)


def assemble_pipeline(
    *, unet: UNet2DConditionModel, vae, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer
) -> StableDiffusionPipeline:
    """A ``StableDiffusionPipeline`` of the course's components and :func:`build_shapes_scheduler` (no safety
    checker: the shapes world has nothing to filter)."""
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=build_shapes_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_test_size_pipeline(*, seed: int = 0) -> StableDiffusionPipeline:
    """The course's miniature Stable Diffusion at test size, with random weights: the shapes tokenizer, a one-layer
    ``CLIPTextModel`` of width 32, a VAE of 8/16/16 channels (3×32×32 ↔ 4×8×8) and a U-Net of 32/32 channels — every
    part the diffusers class of the real thing, each call in well under a second. The tests and week 3's assignment
    build it; its pictures are noise."""
    from transformers import CLIPTextConfig

    from course_utils.models.shapes_clip import build_shapes_tokenizer
    from course_utils.models.shapes_vae import VAEConfig, build_shapes_vae

    tokenizer = build_shapes_tokenizer()
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()
    vae = build_shapes_vae(VAEConfig(block_out_channels=(8, 16, 16), norm_num_groups=4), seed=seed)
    config = UNetConfig(block_out_channels=(32, 32), attention_heads=4, cross_attention_dim=32, norm_num_groups=8)
    unet = build_shapes_unet(config, seed=seed)
    pipe = assemble_pipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_shapes_sd(path: str | Path, **kwargs) -> StableDiffusionPipeline:
    """``StableDiffusionPipeline.from_pretrained(path)`` with a one-line error where no model is saved."""
    path = Path(path)
    if not (path / "model_index.json").is_file():
        raise CourseError(f"no miniature Stable Diffusion at {path} (expected model_index.json; run `make models`)")
    with quiet_loading():
        pipe = StableDiffusionPipeline.from_pretrained(path, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe
