"""The autoencoder of the course's offline miniature Stable Diffusion: 32×32 shapes images ↔ 4×8×8 latents.

A variational autoencoder (Kingma & Welling 2014): the encoder gives a diagonal Gaussian posterior
``q(z | x)``, the decoder maps a sample ``z`` back to pixels, and training minimises a reconstruction
loss plus ``kl_weight · KL(q(z | x) ‖ N(0, I))``. As in latent diffusion (Rombach et al. 2022, §3) the KL
weight is tiny: it only keeps the latent space from drifting to huge values, and the latents are
perceptually compressed images (here ×4 smaller per side, 3·32·32 = 3072 values → 4·8·8 = 256) on
which a U-Net then learns the diffusion model. Unlike Stable Diffusion's autoencoder there is no
perceptual (LPIPS) or adversarial loss, only a mean squared error, and the posterior starts nearly
deterministic (log-variance −8, std ≈ 0.02). Both matter on a CPU budget of a few thousand steps: at
250 steps MSE beat L1 by about 2.5 dB PSNR and the low start added about 1.4 dB; 600 steps of L1 from
unit variance kept only blurred blobs (19 dB), 800 steps of this recipe keep colour, size and position
(about 30 dB).

The network is a diffusers ``AutoencoderKL`` (the class of Stable Diffusion's VAE), saved with
``save_pretrained(path, safe_serialization=True)`` and loaded with ``AutoencoderKL.from_pretrained(path)``,
the call that loads ``stabilityai/sd-vae-ft-mse``. Its ``config.scaling_factor`` is ``1 / std`` of the
training latents (:func:`latent_scaling_factor`), as Stable Diffusion's 0.18215 is, so that
:func:`encode` gives latents of roughly unit variance, the scale the noise schedule assumes.

Shapes: images ``(B, 3, 32, 32)`` in ``[-1, 1]`` (:func:`course_utils.data.shapes.to_tensor`); latents
``(B, 4, 8, 8)``, already multiplied by ``scaling_factor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from course_utils.errors import CourseError
from course_utils.metrics import psnr
from course_utils.training.loop import TrainConfig, fit

__all__ = [
    "VAEConfig",
    "build_shapes_vae",
    "decode",
    "encode",
    "latent_scaling_factor",
    "latent_shape",
    "load_shapes_vae",
    "reconstruction_psnr",
    "save_shapes_vae",
    "train_shapes_vae",
    "vae_loss",
]

_CHUNK = 256  # images per forward pass in encode / decode (bounded memory for any N)


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of the shapes VAE (a diffusers ``AutoencoderKL``).

    Attributes:
        image_size: side of the square RGB input images, in pixels.
        block_out_channels: channels of each encoder block (the decoder mirrors them); ``n`` blocks
            downsample ``n - 1`` times, so ``(32, 64, 64)`` maps 32×32 to 8×8.
        layers_per_block: ResNet blocks per encoder block (the decoder has one more per block).
        latent_channels: channels of the latent, as in Stable Diffusion.
        norm_num_groups: GroupNorm groups; must divide every entry of ``block_out_channels``.
        mid_block_attention: self-attention in the middle block, at the latent resolution (as in SD).
    """

    image_size: int = 32
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 8
    mid_block_attention: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        if not self.block_out_channels or min(self.block_out_channels) <= 0:
            raise CourseError(f"VAEConfig.block_out_channels must be positive, got {self.block_out_channels}")
        for name in ("image_size", "layers_per_block", "latent_channels", "norm_num_groups"):
            if getattr(self, name) <= 0:
                raise CourseError(f"VAEConfig.{name} must be positive, got {getattr(self, name)}")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise CourseError(
                f"VAEConfig.norm_num_groups={self.norm_num_groups} must divide every block_out_channels "
                f"entry {self.block_out_channels}"
            )
        factor = 2 ** (len(self.block_out_channels) - 1)
        if self.image_size % factor:
            raise CourseError(f"VAEConfig.image_size={self.image_size} must be divisible by {factor} (downsampling)")


def build_shapes_vae(
    config: VAEConfig = VAEConfig(), *, seed: int = 0, initial_log_variance: float = -8.0
) -> AutoencoderKL:
    """An untrained ``AutoencoderKL`` for ``(B, 3, S, S)`` images → ``(B, latent_channels, S / 2^(n-1), …)``.

    The weights are initialised from ``seed`` (the global RNG is left as it was), so one config and
    seed always give the same network. The posterior's log-variance starts near ``initial_log_variance``
    (the bias of its output channels is shifted), so early training is not drowned in sampling noise.
    ``scaling_factor`` is 1 until :func:`train_shapes_vae` measures it.
    """
    n = len(config.block_out_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            latent_channels=config.latent_channels,
            norm_num_groups=config.norm_num_groups,
            sample_size=config.image_size,
            scaling_factor=1.0,
            mid_block_add_attention=config.mid_block_attention,
        )
    with torch.no_grad():  # quant_conv outputs (mean, log-variance) channel blocks
        vae.quant_conv.bias[config.latent_channels :] += initial_log_variance
    return vae.eval()


def latent_shape(vae: AutoencoderKL) -> tuple[int, int, int]:
    """``(C, h, w)`` of one image's latent, e.g. ``(4, 8, 8)`` for the course's 32×32 VAE."""
    side = vae.config.sample_size // 2 ** (len(vae.config.block_out_channels) - 1)
    return (vae.config.latent_channels, side, side)


def _check_images(vae: AutoencoderKL, images: torch.Tensor) -> None:
    size, channels = vae.config.sample_size, vae.config.in_channels
    expected = f"(B, {channels}, {size}, {size})"
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        kind = f"a {images.dtype} tensor" if isinstance(images, torch.Tensor) else type(images).__name__
        raise CourseError(f"the VAE expects float images {expected} in [-1, 1] (shapes.to_tensor), got {kind}")
    if images.ndim != 4 or tuple(images.shape[1:]) != (channels, size, size):
        raise CourseError(f"the VAE expects images {expected} in [-1, 1], got shape {tuple(images.shape)}")
    if images.numel() and images.abs().max() > 1.01:
        raise CourseError(
            f"the VAE expects images in [-1, 1] (shapes.to_tensor), got values in "
            f"[{images.min().item():.3g}, {images.max().item():.3g}]"
        )


def _check_latents(vae: AutoencoderKL, latents: torch.Tensor) -> None:
    expected = (-1, *latent_shape(vae))
    if not isinstance(latents, torch.Tensor) or not latents.is_floating_point() or latents.ndim != 4:
        got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise CourseError(f"the VAE decodes float latents (B, {', '.join(map(str, expected[1:]))}), got {got}")
    if tuple(latents.shape[1:]) != expected[1:]:
        raise CourseError(
            f"the VAE decodes latents (B, {', '.join(map(str, expected[1:]))}), got shape {tuple(latents.shape)}"
        )


@torch.no_grad()
def encode(
    vae: AutoencoderKL, images: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Images ``(B, 3, 32, 32)`` in ``[-1, 1]`` → latents ``(B, 4, 8, 8)`` times ``vae.config.scaling_factor``.

    The latent is the posterior mean, or with ``sample=True`` a draw ``z ~ q(z | x)`` (using ``generator``),
    as Stable Diffusion's training scripts do; the trained posterior's std is about 0.02, so the two differ
    very little. No gradients; the result is on ``images``' device.
    """
    _check_images(vae, images)
    if len(images) == 0:
        return images.new_zeros((0, *latent_shape(vae)))
    vae.eval()
    out = []
    for chunk in images.split(_CHUNK):
        posterior = vae.encode(chunk.to(vae.device, vae.dtype)).latent_dist
        z = posterior.sample(generator=generator) if sample else posterior.mode()
        out.append(z.float().to(images.device))
    return torch.cat(out) * vae.config.scaling_factor


@torch.no_grad()
def decode(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents ``(B, 4, 8, 8)`` (as :func:`encode` returns them) → images ``(B, 3, 32, 32)``, clamped
    to ``[-1, 1]``, on ``latents``' device; no gradients."""
    _check_latents(vae, latents)
    if len(latents) == 0:
        size = vae.config.sample_size
        return latents.new_zeros((0, vae.config.out_channels, size, size))
    vae.eval()
    out = [
        vae.decode(chunk.to(vae.device, vae.dtype) / vae.config.scaling_factor).sample.float().to(latents.device)
        for chunk in latents.split(_CHUNK)
    ]
    return torch.cat(out).clamp(-1.0, 1.0)


def reconstruction_psnr(vae: AutoencoderKL, images: torch.Tensor) -> float:
    """PSNR in dB of ``decode(encode(images))`` against ``images`` ``(N, 3, 32, 32)`` in ``[-1, 1]``."""
    return psnr(decode(vae, encode(vae, images)), images)


@torch.no_grad()
def latent_scaling_factor(vae: AutoencoderKL, images: torch.Tensor) -> float:
    """``1 / std`` of the unscaled latents (posterior means) of ``images`` ``(N, 3, 32, 32)``.

    Latent diffusion sets its scale factor this way, from training latents (Stable Diffusion's is
    0.18215); multiplying by it gives the diffusion model latents of about unit standard deviation.
    """
    if len(images) < 2:
        raise CourseError(f"measuring the latent scale needs at least two images, got {len(images)}")
    latents = encode(vae, images) / vae.config.scaling_factor
    return float(1.0 / latents.std())


def vae_loss(
    vae: AutoencoderKL, x: torch.Tensor, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(reconstruction, kl)`` for a batch ``x`` ``(B, 3, 32, 32)``; train on ``reconstruction + kl_weight · kl``
    (the caller weighs the two, as :func:`train_shapes_vae` does).

    ``reconstruction`` is the mean squared error of the decoded posterior sample; ``kl`` is
    ``KL(q(z | x) ‖ N(0, I))`` summed over the latent and divided by the number of pixel values
    ``3·32·32``: both terms are per pixel value, the ratio latent diffusion's KL weight of 1e-6 sets
    between its two terms, both summed over the image.
    """
    posterior = vae.encode(x).latent_dist
    x_hat = vae.decode(posterior.sample(generator=generator)).sample
    reconstruction = torch.nn.functional.mse_loss(x_hat, x)
    kl = posterior.kl().mean() / x[0].numel()
    return reconstruction, kl


def train_shapes_vae(
    vae: AutoencoderKL,
    images: torch.Tensor,
    *,
    config: TrainConfig,
    kl_weight: float = 1e-6,
    description: str = "shapes VAE",
) -> tuple[AutoencoderKL, list[float]]:
    """Train ``vae`` on ``images`` ``(N, 3, 32, 32)`` in ``[-1, 1]`` with :func:`course_utils.training.loop.fit`.

    Each step draws ``config.batch_size`` images and a posterior sample with fit's seeded generator
    and minimises ``MSE + kl_weight · KL`` (:func:`vae_loss`), so one seed gives the same losses and
    weights. The returned EMA model has ``config.scaling_factor`` set from the training images
    (:func:`latent_scaling_factor`, at most 2,048 of them).

    Returns:
        (the EMA VAE, ready to save, the loss of every step).
    """
    _check_images(vae, images)
    if len(images) < 2:
        raise CourseError(f"training the VAE needs at least two images, got {len(images)}")
    if not 0.0 <= kl_weight < 1.0:
        raise CourseError(f"kl_weight must lie in [0, 1), got {kl_weight}")
    data = images.to(vae.device, vae.dtype)

    def loss_fn(model: AutoencoderKL, gen: torch.Generator) -> torch.Tensor:
        # 1) a batch, 2) z ~ q(z | x) and its decoding, 3) MSE + kl_weight · KL
        idx = torch.randint(0, data.shape[0], (config.batch_size,), generator=gen)
        reconstruction, kl = vae_loss(model, data[idx], generator=gen)
        return reconstruction + kl_weight * kl

    ema, losses = fit(vae, loss_fn=loss_fn, config=config, description=description)
    ema.register_to_config(scaling_factor=latent_scaling_factor(ema, images[:2048]))
    return ema, losses


def save_shapes_vae(vae: AutoencoderKL, path: str | Path) -> Path:
    """Save ``vae`` as a diffusers folder (``config.json``, ``diffusion_pytorch_model.safetensors``)."""
    path = Path(path)
    vae.save_pretrained(path, safe_serialization=True)
    return path


def load_shapes_vae(path: str | Path) -> AutoencoderKL:
    """``AutoencoderKL.from_pretrained(path)``, in eval mode; a missing folder is one line, not a traceback."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CourseError(f"no VAE at {path} (expected config.json and safetensors weights; run `make models`)")
    return AutoencoderKL.from_pretrained(path).eval()
