"""Diffusion from scratch: the recipes of CS180 part B and of the "single image → single class → class-conditional
→ latent" path, and the measures that read what they learnt.

Recipes (each one algorithm, each trained by the course's one loop, :func:`course_utils.training.loop.fit`, for a
number of **steps**, seeded):

- :func:`train_single_step_denoiser`: CS180 part B §1, the single-step denoiser ``D(z)`` trained at one noise
  level σ on ``z = x + σε`` with the L2 loss ``‖D(z) − x‖²``;
- :func:`train_time_conditioned`: CS180 part B §2 (Ho et al. 2020, Algorithm 1): ``ε_θ(x_t, t)`` with
  ``‖ε − ε_θ(x_t, t)‖²``, T = 300, β linear 1e-4 → 0.02 (:func:`ddpm_schedule`); the same recipe at T = 1000
  is the learning-rate study's, and on the shapes VAE's latents it is latent diffusion (Rombach et al. 2022);
- :func:`train_class_conditioned`: CS180 part B §2.4: ``ε_θ(x_t, t, c)`` with one-hot classes dropped to the
  null class with probability ``p_uncond = 0.1`` (Ho & Salimans 2022, Algorithm 1), sampled with guidance w = 5;
- :func:`training_subset`: the first N images of a seeded permutation, or every image of one class.

Measures:

- :func:`optimal_denoiser`: the posterior mean ``E[x | z]`` of the training set under Gaussian noise, the best any
  denoiser can do in mean squared error on the training images themselves;
- :func:`denoising_errors`: per-image squared error of a denoiser at each σ;
- :func:`memorization_ratio`: ℓ2 to the nearest over the second-nearest training image, below 1/3 a copy (the
  nearest-neighbour test of Carlini et al. 2023, "Extracting Training Data from Diffusion Models", as a ratio);
- :func:`held_out_loss_per_level`: the ε-loss on held-out images in buckets of ``t``;
- :func:`sample_ddpm`: ancestral sampling of a :class:`~course_utils.models.course_unet.CourseUNet` through
  :func:`course_utils.sampling.diffusion.ddpm_sample`, with classifier-free guidance when classes are given.

Shapes: images ``(N, C, H, W)`` in ``[-1, 1]`` (the digits: ``(N, 1, 8, 8)``; the shapes latents ``(N, 4, 8, 8)``);
labels ``(N,)`` long.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from course_utils.errors import CourseError
from course_utils.models.course_unet import CourseUNet, class_vectors, drop_classes
from course_utils.sampling.diffusion import ddpm_sample, q_sample, strided_timesteps
from course_utils.sampling.schedules import NoiseSchedule, alphas_cumprod, linear_betas
from course_utils.training.loop import TrainConfig, fit, train_denoiser

__all__ = [
    "CFG_SCALE",
    "COPY_RATIO",
    "DDPM_TIMESTEPS",
    "P_UNCOND",
    "SIGMAS",
    "TRAIN_SIGMA",
    "ddpm_schedule",
    "denoising_errors",
    "held_out_loss_per_level",
    "memorization_ratio",
    "nearest_distances",
    "optimal_denoiser",
    "sample_ddpm",
    "train_class_conditioned",
    "train_single_step_denoiser",
    "train_time_conditioned",
    "training_subset",
]

TRAIN_SIGMA = 0.5  # CS180 part B §1.2: the single-step denoiser trains at σ = 0.5
SIGMAS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0)  # and is tested at these σ (§1.2.1)
DDPM_TIMESTEPS = 300  # CS180 part B §2: T = 300, β linear from 1e-4 to 0.02
P_UNCOND = 0.1  # §2.4: the class is dropped one time in ten
CFG_SCALE = 5.0  # §2.5: sampled with guidance w = 5
COPY_RATIO = 1 / 3  # a sample nearer than a third of the second-nearest distance is a copy


def ddpm_schedule(num_timesteps: int = DDPM_TIMESTEPS, *, clip_x0: float | None = 1.0) -> NoiseSchedule:
    """β_t linear from 1e-4 to 0.02 over ``num_timesteps`` (Ho et al. 2020, §4; CS180 part B uses T = 300), for an
    ε-predicting network; ``clip_x0=None`` for latents, which are not bounded by 1."""
    return NoiseSchedule(alphas_cumprod(linear_betas(num_timesteps)), prediction_type="epsilon", clip_x0=clip_x0)


# ---- recipes ---------------------------------------------------------------------------------------------------


def train_single_step_denoiser(
    model: CourseUNet,
    *,
    x0: torch.Tensor,
    sigma: float = TRAIN_SIGMA,
    config: TrainConfig,
    description: str = "single-step denoiser",
    show_progress: bool = True,
) -> tuple[CourseUNet, list[float]]:
    """CS180 part B §1.2: train ``D(z)`` (a CourseUNet without time input) to map ``z = x + σε`` back to ``x``.

    Loss ``E_{x, ε} ‖D(x + σε) − x‖²`` (mean over pixels), one σ for the whole run, batches and noise drawn from
    :func:`fit`'s generator. ``x0``: training images ``(N, C, H, W)``. Returns (EMA model, loss per step).
    """
    if model.config.time_embedding is not None or model.config.num_classes is not None:
        raise CourseError("the single-step denoiser is a CourseUNet with time_embedding=None and num_classes=None")
    if sigma < 0:
        raise CourseError(f"σ must be ≥ 0, got {sigma}")

    def l2_loss(net: torch.nn.Module, gen: torch.Generator) -> torch.Tensor:
        # 1) a batch, 2) z = x + σε, 3) ‖D(z) − x‖²
        device = next(net.parameters()).device
        idx = torch.randint(0, x0.shape[0], (config.batch_size,), generator=gen)
        x = x0[idx]
        eps = torch.randn(x.shape, generator=gen)
        x, z = x.to(device), (x + sigma * eps).to(device)
        return torch.nn.functional.mse_loss(net(z).sample, x)

    return fit(
        model,
        loss_fn=l2_loss,
        config=config,
        description=description,
        signature={"sigma": sigma},
        show_progress=show_progress,
    )


def train_time_conditioned(
    model: CourseUNet,
    *,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    config: TrainConfig,
    description: str = "time-conditioned DDPM",
    show_progress: bool = True,
) -> tuple[CourseUNet, list[float]]:
    """CS180 part B §2.2 (Ho et al. 2020, Algorithm 1): train ``ε_θ(x_t, t)`` with ``‖ε − ε_θ(x_t, t)‖²``,
    ``t ~ U{0..T−1}``, through :func:`~course_utils.training.loop.train_denoiser`.

    ``x0``: images ``(N, C, H, W)`` (pixels, or scaled VAE latents for latent diffusion). Returns (EMA, losses).
    """
    if model.config.time_embedding is None or model.config.num_classes is not None:
        raise CourseError("the time-conditioned DDPM is a CourseUNet with a time embedding and no classes")
    _check_timesteps(model, schedule)
    return train_denoiser(
        model,
        x0=x0,
        cond=torch.zeros(x0.shape[0]),  # no condition: one placeholder per image
        alphas_cumprod=schedule.alphas_cumprod,
        forward=lambda m, x_t, t, c: m(x_t, t).sample,
        config=config,
        description=description,
        signature={"recipe": "time-conditioned", "num_timesteps": schedule.num_timesteps},
        show_progress=show_progress,
    )


def train_class_conditioned(
    model: CourseUNet,
    *,
    x0: torch.Tensor,
    labels: torch.Tensor,
    schedule: NoiseSchedule,
    config: TrainConfig,
    p_uncond: float = P_UNCOND,
    description: str = "class-conditioned DDPM",
    show_progress: bool = True,
) -> tuple[CourseUNet, list[float]]:
    """CS180 part B §2.4: train ``ε_θ(x_t, t, c)`` with one-hot ``c`` zeroed (the null class ∅) with probability
    ``p_uncond`` (Ho & Salimans 2022, Algorithm 1), so one network gives ε_c and ε_∅ for guidance.

    ``x0``: images ``(N, C, H, W)``; ``labels``: ``(N,)`` in ``0..K−1``. Returns (EMA model, losses).
    """
    k = model.config.num_classes
    if model.config.time_embedding is None or k is None:
        raise CourseError("the class-conditioned DDPM is a CourseUNet with a time embedding and num_classes")
    _check_timesteps(model, schedule)
    return train_denoiser(
        model,
        x0=x0,
        cond=class_vectors(labels, num_classes=k),  # (N,) → (N, K) one-hot
        alphas_cumprod=schedule.alphas_cumprod,
        forward=lambda m, x_t, t, c: m(x_t, t, class_labels=c).sample,
        drop_condition=lambda c, g: drop_classes(c, p_uncond=p_uncond, generator=g),
        config=config,
        description=description,
        signature={"recipe": "class-conditioned", "num_timesteps": schedule.num_timesteps, "p_uncond": p_uncond},
        show_progress=show_progress,
    )


def _check_timesteps(model: CourseUNet, schedule: NoiseSchedule) -> None:
    if model.config.num_train_timesteps != schedule.num_timesteps:
        raise CourseError(
            f"the CourseUNet was built for T = {model.config.num_train_timesteps},"
            f" the schedule has T = {schedule.num_timesteps}"
        )


def training_subset(
    labels: torch.Tensor, *, n: int | None = None, digit: int | None = None, seed: int = 0
) -> torch.Tensor:
    """Indices ``(n,)`` of a training subset: the first ``n`` of a seeded permutation of all images (seed 003's
    memorization-vs-size study), or every image of class ``digit`` (its single-class step); exactly one of the two.

    The subsets are nested: for one seed the first 10 contain the first 1, the first 100 the first 10.
    """
    if (n is None) == (digit is None):
        raise CourseError("training_subset takes exactly one of n (a number of images) and digit (a class)")
    if digit is not None:
        idx = torch.nonzero(labels == digit).flatten()
        if idx.numel() == 0:
            raise CourseError(f"no image of class {digit}; classes present: {sorted(set(labels.tolist()))}")
        return idx
    if not 1 <= n <= labels.numel():
        raise CourseError(f"n must be in 1..{labels.numel()}, got {n}")
    order = torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(seed))
    return order[:n]


# ---- sampling --------------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_ddpm(
    model: CourseUNet,
    *,
    n: int,
    schedule: NoiseSchedule,
    generator: torch.Generator,
    class_labels: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    steps: int | None = None,
) -> torch.Tensor:
    """Ancestral DDPM samples (Ho et al. 2020, Algorithm 2) of a CourseUNet: ``(n, C, H, W)``.

    Args:
        class_labels: ``(n,)`` classes for a class-conditioned network; with ``guidance_scale ≠ 1`` the null class
            is the unconditional branch of classifier-free guidance, ``ε_∅ + w (ε_c − ε_∅)``.
        steps: strided DDPM over this many timesteps (``None``: all T, as CS180 part B samples).
        generator: draws the starting noise and every step's noise (CPU generator; samples come out on the
            model's device).
    """
    device = next(model.parameters()).device
    c, size = model.config.in_channels, model.config.sample_size
    x = torch.randn((n, c, size, size), generator=generator).to(device)
    timesteps = strided_timesteps(schedule.num_timesteps, steps or schedule.num_timesteps)
    kwargs: dict = {}
    if model.config.num_classes is None:
        if class_labels is not None:
            raise CourseError("this network has no classes: sample it without class_labels")
        eps_model: Callable = lambda x_t, t, _: model(x_t, t).sample  # noqa: E731
    else:
        if class_labels is None or class_labels.shape != (n,):
            raise CourseError(f"a class-conditioned network samples with class_labels of shape ({n},)")
        k = model.config.num_classes
        kwargs["cond"] = class_vectors(class_labels, num_classes=k).to(device)  # (n, K)
        kwargs["uncond"] = torch.zeros_like(kwargs["cond"])  # the null class ∅: the zero vector
        kwargs["guidance_scale"] = guidance_scale
        eps_model = lambda x_t, t, cond: model(x_t, t, class_labels=cond).sample  # noqa: E731
    noises = [torch.randn(x.shape, generator=generator).to(device) for _ in timesteps]
    return ddpm_sample(eps_model, x, timesteps, schedule=schedule, noises=noises, **kwargs)


# ---- measures --------------------------------------------------------------------------------------------------


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.detach().reshape(x.shape[0], -1).double().cpu()  # (N, C, H, W) → (N, CHW)


@torch.no_grad()
def optimal_denoiser(z: torch.Tensor, train_images: torch.Tensor, sigma: float) -> torch.Tensor:
    """The best denoiser of the training set: the posterior mean ``E[x | z]`` when ``x`` is drawn uniformly from
    the ``N`` training images and ``z = x + σε``, ``ε ~ N(0, I)``.

    By Bayes' rule with ``p(z | x_i) ∝ exp(−‖z − x_i‖² / (2σ²))``,

        ``E[x | z] = Σ_i w_i(z) x_i``,  ``w_i(z) = softmax_i(−‖z − x_i‖² / (2σ²))``,

    a softmax-weighted mean of the training images; no function of ``z`` has a lower expected squared error on
    them, so it is the reference the σ curve of a trained ``D(z)`` is read against (Karras et al. 2022, App. B.3,
    call it the ideal denoiser). As σ → 0 the weights concentrate on the nearest training image, which is what
    ``sigma=0`` returns; as σ → ∞ it tends to the mean image. On held-out images it memorises: it can only ever
    answer with a blend of training images.

    Args:
        z: noisy images ``(B, C, H, W)``.
        train_images: ``(N, C, H, W)``.
        sigma: the noise level σ ≥ 0.

    Returns:
        ``(B, C, H, W)``, float32, on ``z``'s device.
    """
    if sigma < 0:
        raise CourseError(f"σ must be ≥ 0, got {sigma}")
    zf, xf = _flat(z), _flat(train_images)  # (B, D), (N, D)
    d2 = torch.cdist(zf, xf).pow(2)  # (B, N) squared distances
    if sigma == 0:
        weights = torch.nn.functional.one_hot(d2.argmin(dim=1), xf.shape[0]).double()  # (B, N): the nearest
    else:
        weights = torch.softmax(-d2 / (2 * sigma**2), dim=1)  # (B, N), rows sum to 1
    return (weights @ xf).float().reshape(z.shape).to(z.device)  # (B, N) @ (N, D) → (B, C, H, W)


@torch.no_grad()
def denoising_errors(
    denoise: Callable[[torch.Tensor, float], torch.Tensor],
    x: torch.Tensor,
    *,
    sigmas: Sequence[float] = SIGMAS,
    seed: int = 0,
) -> dict[float, np.ndarray]:
    """Per-image mean squared error of ``denoise(z, σ)`` against ``x`` ``(N, C, H, W)`` at each σ, on
    ``z = x + σε`` with ε drawn once from ``seed`` (the same noise for every σ and every denoiser compared).

    Returns σ → ``(N,)`` array.
    """
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    out = {}
    for sigma in sigmas:
        z = x + sigma * eps
        err = (denoise(z, sigma).float().cpu() - x.cpu()).pow(2).flatten(1).mean(dim=1)  # (N,)
        out[float(sigma)] = err.numpy()
    return out


@torch.no_grad()
def nearest_distances(samples: torch.Tensor, images: torch.Tensor, *, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """ℓ2 distances from each sample ``(B, C, H, W)`` to its ``k`` nearest ``images`` ``(N, C, H, W)``, ascending,
    and their indices: two ``(B, k)`` arrays."""
    if images.shape[0] < k:
        raise CourseError(f"{k} nearest neighbours need at least {k} images, got {images.shape[0]}")
    d = torch.cdist(_flat(samples), _flat(images))  # (B, N)
    values, index = d.topk(k, dim=1, largest=False)  # (B, k) ascending
    return values.numpy(), index.numpy()


def memorization_ratio(samples: torch.Tensor, train: torch.Tensor, outside: torch.Tensor | None = None) -> np.ndarray:
    """Nearest-neighbour memorization ratio of each sample: ``‖s − n₁‖ / ‖s − n₂‖``, with ``n₁`` the nearest
    training image and ``n₂`` the second-nearest; below :data:`COPY_RATIO` (1/3) the sample is a copy of ``n₁``
    (Carlini et al. 2023's nearest-neighbour test, as a ratio to the second neighbour). A generalising model lands
    between several training images (ratio near 1); a memorising one on top of one of them (near 0).

    With a single training image there is no second one: ``n₂`` is then the nearest image of ``outside``
    (images the model never saw, e.g. the other training digits), so the ratio asks "nearer to its one training
    image than to any other digit by a factor 3?".

    Args:
        samples: ``(B, C, H, W)``; train: ``(N, C, H, W)``; outside: ``(M, C, H, W)``, required when ``N = 1``.

    Returns:
        ``(B,)`` ratios ≥ 0.
    """
    if train.shape[0] == 1:
        if outside is None or outside.shape[0] == 0:
            raise CourseError("with one training image the second neighbour comes from outside: pass outside")
        d1, _ = nearest_distances(samples, train, k=1)
        d2, _ = nearest_distances(samples, outside, k=1)
        first, second = d1[:, 0], d2[:, 0]
    else:
        d, _ = nearest_distances(samples, train, k=2)
        first, second = d[:, 0], d[:, 1]
    return first / np.maximum(second, 1e-12)


@torch.no_grad()
def held_out_loss_per_level(
    model: CourseUNet,
    x0: torch.Tensor,
    *,
    schedule: NoiseSchedule,
    buckets: int = 5,
    seed: int = 0,
) -> dict[tuple[int, int], np.ndarray]:
    """The ε-loss ``‖ε − ε_θ(x_t, t)‖²`` (mean over pixels) of each held-out image ``x0`` ``(N, C, H, W)`` in
    ``buckets`` equal ranges of ``t``: one ``t`` uniform in the range and one ε per image and range, drawn from
    ``seed`` (the same draws for every model compared).

    Returns ``(t_low, t_high)`` (inclusive) → ``(N,)`` array.
    """
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    x0 = x0.detach().cpu()  # noised on the CPU with the CPU draws, then sent to the model's device
    edges = np.linspace(0, schedule.num_timesteps, buckets + 1).round().astype(int)
    out = {}
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        t = torch.randint(int(lo), int(hi), (x0.shape[0],), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        x_t = q_sample(x0, t, eps, alphas_cumprod=schedule.alphas_cumprod)
        eps_hat = model(x_t.to(device), t.to(device)).sample.float().cpu()
        out[(int(lo), int(hi) - 1)] = (eps_hat - eps).pow(2).flatten(1).mean(dim=1).numpy()
    return out
