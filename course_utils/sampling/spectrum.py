"""Why coarse structure appears first: radial frequency bands, when each band of x̂₀ settles during sampling, and
the signal-to-noise ratio each band has at each timestep.

The argument (Rissanen, Heinonen & Solin 2023, "Generative Modelling with Inverse Heat Dissipation", §2; Dieleman
2024, "Diffusion is spectral autoregression"): in Fourier space the forward process
``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε`` adds white noise, the same power ``1 − ᾱ_t`` at every frequency (the orthonormal
DFT of white noise is white), while images put most of their power ``C(f)`` at low frequencies. So the
signal-to-noise ratio of frequency ``f`` at timestep ``t``,

    SNR_t(f) = ᾱ_t · C(f) / (1 − ᾱ_t),

is largest for the lowest frequencies: as ``t`` falls, the coarse bands rise above the noise first, and a
denoiser can only commit to a band once it does. :func:`band_snr` computes it; :func:`settle_steps` measures when
each band of the model's x̂₀ stops changing, to set beside it.

Conventions (shapes in each docstring):

- frequencies are in **cycles per pixel**: an ``H × W`` image's DFT bin ``(k, l)`` has ``f_y = k / H`` and
  ``f_x = l / W`` (``torch.fft.fftfreq``), in ``[-0.5, 0.5)``; its radial frequency is ``|f| = √(f_x² + f_y²)``
  (:func:`radial_frequency`), from 0 (the mean) to ``√2 / 2`` (the corners);
- band ``i`` holds the bins with ``edges[i] ≤ |f| < edges[i + 1]``; :func:`band_edges` gives equal widths from 0 to
  the Nyquist frequency 0.5, and the last band also takes the corners beyond it (``|f| ≥ 0.5``), so every bin lies
  in exactly one band;
- power is per bin of the orthonormal DFT (``norm="ortho"``), averaged over the bins of a band and the channels:
  unit white noise has power 1 in every band, so ``C(f)`` and the noise power ``1 − ᾱ_t`` share one scale.

Patches (the seed's "textured parts appear first"): :func:`patch_contrast` (the spatial std of a patch) and
:func:`patch_errors` (how far each patch of x̂₀ is from the final sample), for :func:`settle_steps`.
"""

from __future__ import annotations

import torch

from course_utils.errors import CourseError

__all__ = [
    "DEFAULT_TOLERANCE",
    "band_centres",
    "band_edges",
    "band_index",
    "band_power",
    "band_relative_error",
    "band_snr",
    "patch_contrast",
    "patch_errors",
    "radial_frequency",
    "settle_steps",
    "snr_crossing_steps",
]

DEFAULT_TOLERANCE = 0.1  # a band (or patch) has settled when its relative error stays below this


def radial_frequency(height: int, width: int) -> torch.Tensor:
    """``|f|`` (cycles per pixel) of each bin of a ``height × width`` DFT (``torch.fft.fft2``'s layout): ``(H, W)``."""
    fy = torch.fft.fftfreq(height).reshape(-1, 1)
    fx = torch.fft.fftfreq(width).reshape(1, -1)
    return (fx**2 + fy**2).sqrt()


def band_edges(n_bands: int) -> torch.Tensor:
    """``n_bands + 1`` equally spaced edges from 0 to the Nyquist frequency 0.5 cycles per pixel: ``(n_bands + 1,)``.

    For a 32 × 32 picture and 8 bands each band is 1/16 cycle per pixel wide (2 DFT bins along an axis); for the
    8 × 8 latents and 4 bands, 1/8 (one bin). Band 0 holds the mean (``|f| = 0``)."""
    if not isinstance(n_bands, int) or n_bands < 1:
        raise CourseError(f"n_bands must be a whole number ≥ 1, got {n_bands!r}")
    return torch.linspace(0.0, 0.5, n_bands + 1, dtype=torch.float64)


def band_centres(edges: torch.Tensor) -> torch.Tensor:
    """The middle of each band, ``(edges[i] + edges[i + 1]) / 2``: ``(bands,)``, for plotting against frequency."""
    return (edges[:-1] + edges[1:]) / 2


def band_index(height: int, width: int, edges: torch.Tensor) -> torch.Tensor:
    """The band of each DFT bin: ``(H, W)`` long, ``i`` where ``edges[i] ≤ |f| < edges[i + 1]``; bins at or beyond
    the last edge (the corners) go to the last band. Refuses edges that leave a band empty at this size."""
    edges = torch.as_tensor(edges, dtype=torch.float64)
    if edges.ndim != 1 or len(edges) < 2 or edges[0] != 0 or not bool((edges[1:] > edges[:-1]).all()):
        raise CourseError(f"band edges must rise from 0, got {edges.tolist()}")
    f = radial_frequency(height, width).double()
    index = torch.bucketize(f, edges[1:-1], right=True)  # 0 … bands − 1; |f| ≥ edges[-2] → the last band
    counts = torch.bincount(index.reshape(-1), minlength=len(edges) - 1)
    if bool((counts == 0).any()):
        empty = [i for i, c in enumerate(counts.tolist()) if c == 0]
        raise CourseError(f"bands {empty} hold no frequency of a {height}×{width} DFT; use fewer or wider bands")
    return index


def _check_images(images: torch.Tensor, name: str) -> None:
    if images.ndim < 3:
        raise CourseError(f"{name} must be (..., C, H, W), got shape {tuple(images.shape)}")


def _band_sums(power: torch.Tensor, index: torch.Tensor, bands: int) -> torch.Tensor:
    """Sum ``power`` ``(..., H, W)`` over the bins of each band: ``(..., bands)``."""
    flat = power.reshape(*power.shape[:-2], -1)
    out = flat.new_zeros(*flat.shape[:-1], bands)
    return out.index_add_(-1, index.reshape(-1).to(flat.device), flat)


def band_power(images: torch.Tensor, *, edges: torch.Tensor) -> torch.Tensor:
    """The mean power per DFT bin in each band, averaged over channels: ``(..., C, H, W)`` → ``(..., bands)``.

    ``P_i = mean over channels c and bins (k, l) in band i of |DFT_ortho(x_c)[k, l]|²``. Averaged over a data set
    this is the power spectrum ``C(f)`` of :func:`band_snr`; standard white noise has ``P_i = 1`` in every band.
    """
    _check_images(images, "images")
    h, w = images.shape[-2:]
    index = band_index(h, w, edges)
    counts = torch.bincount(index.reshape(-1), minlength=len(edges) - 1).to(images.device)
    spectrum = torch.fft.fft2(images.double(), norm="ortho").abs() ** 2  # (..., C, H, W)
    return (_band_sums(spectrum, index, len(edges) - 1) / counts).mean(dim=-2)


def band_relative_error(trajectory: torch.Tensor, final: torch.Tensor, *, edges: torch.Tensor) -> torch.Tensor:
    """How far each band of each step's image is from the final sample's, relative to the final sample's band:
    ``‖B_i(x̂₀ − x_final)‖ / ‖B_i(x_final)‖`` with ``B_i`` the DFT restricted to band ``i`` (all channels).

    Args:
        trajectory: x̂₀ at each step, ``(steps, ..., C, H, W)``.
        final: the final sample, ``(..., C, H, W)``.

    Returns:
        ``(steps, ..., bands)``; a band with no power in the final sample gets ``inf`` wherever it differs.
    """
    _check_images(final, "final")
    if trajectory.shape[1:] != final.shape:
        raise CourseError(f"trajectory {tuple(trajectory.shape)} is not (steps, *{tuple(final.shape)})")
    h, w = final.shape[-2:]
    index = band_index(h, w, edges)
    bands = len(edges) - 1
    target = torch.fft.fft2(final.double(), norm="ortho")
    diff = torch.fft.fft2(trajectory.double(), norm="ortho") - target
    num = _band_sums(diff.abs() ** 2, index, bands).sum(dim=-2)  # (steps, ..., bands): channels summed
    den = _band_sums(target.abs() ** 2, index, bands).sum(dim=-2)
    return (num / den).sqrt()


def settle_steps(errors: torch.Tensor, *, tol: float = DEFAULT_TOLERANCE) -> torch.Tensor:
    """The first step from which ``errors`` stays below ``tol``: ``(steps, ...)`` → ``(...)`` long.

    Step ``s`` is returned when ``errors[s'] < tol`` for every ``s' ≥ s`` and ``errors[s - 1] ≥ tol``; 0 when every
    step is below; ``steps`` (one past the last) when even the last step is not.
    """
    if errors.ndim < 1 or len(errors) == 0:
        raise CourseError("settle_steps needs errors of shape (steps, ...) with at least one step")
    if not tol > 0:
        raise CourseError(f"tol must be positive, got {tol}")
    above = errors >= tol  # (steps, ...)
    steps = len(errors)
    positions = torch.arange(1, steps + 1, device=errors.device).reshape(-1, *([1] * (errors.ndim - 1)))
    return (above.long() * positions).amax(dim=0)  # one past the last step at or above tol


def band_snr(alphas_cumprod: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
    """``SNR_t(f) = ᾱ_t · C(f) / (1 − ᾱ_t)`` for every timestep and band: ``(T,)`` × ``(bands,)`` → ``(T, bands)``.

    ``power`` is the data's :func:`band_power` ``C(f)`` (the mean over a data set, in the space the noise is added
    to); ``1 − ᾱ_t`` is the noise's power in every band (white)."""
    a = torch.as_tensor(alphas_cumprod, dtype=torch.float64).reshape(-1, 1)
    c = torch.as_tensor(power, dtype=torch.float64).reshape(1, -1)
    if bool(((a <= 0) | (a >= 1)).any()):
        raise CourseError("ᾱ_t must lie strictly between 0 and 1")
    return a * c / (1 - a)


def snr_crossing_steps(snr: torch.Tensor, *, level: float = 1.0) -> torch.Tensor:
    """The sampling step from which each band's SNR stays above ``level`` (signal as strong as the noise at
    1): ``(steps, bands)`` in sampling order → ``(bands,)`` long; ``steps`` where the last step is still below.
    The SNR rises along sampling, so this is the first step at ``level``; the rule is :func:`settle_steps`'s."""
    if not level > 0:
        raise CourseError(f"level must be positive, got {level}")
    return settle_steps(level / snr, tol=1.0)  # level / SNR < 1  ⇔  SNR > level


def _patches(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``(..., C, H, W)`` → ``(..., C, H/p, W/p, p·p)``: the pixels of each ``p × p`` patch."""
    _check_images(images, "images")
    h, w = images.shape[-2:]
    if not isinstance(patch, int) or patch < 1 or h % patch or w % patch:
        raise CourseError(f"patch must be a whole number that divides {h}×{w}, got {patch!r}")
    lead = images.shape[:-2]
    x = images.reshape(*lead, h // patch, patch, w // patch, patch)
    return x.movedim(-3, -2).reshape(*lead, h // patch, w // patch, patch * patch)


def patch_contrast(images: torch.Tensor, *, patch: int = 8) -> torch.Tensor:
    """The contrast of each ``patch × patch`` patch: the spatial std of its pixels, root-mean-square over channels
    (a flat patch of any colour has 0): ``(..., C, H, W)`` → ``(..., H/p, W/p)``."""
    x = _patches(images.double(), patch)  # (..., C, h, w, p²)
    return x.var(dim=-1, unbiased=False).mean(dim=-3).sqrt()


def patch_errors(trajectory: torch.Tensor, final: torch.Tensor, *, patch: int = 8) -> torch.Tensor:
    """How far each patch of each step's image is from the final sample, in units of the final sample's contrast:
    ``RMS_patch(x̂₀ − x_final) / RMS_image(x_final − its mean)`` (RMS over the patch's or image's pixels and
    channels; the image mean per channel).

    Every patch of an image is measured with the same yardstick (the image's contrast), so a flat patch and a
    textured one are compared fairly; :func:`settle_steps` of the result is each patch's settle step.

    Args:
        trajectory: x̂₀ at each step, ``(steps, ..., C, H, W)``.
        final: the final sample, ``(..., C, H, W)``.

    Returns:
        ``(steps, ..., H/p, W/p)``.
    """
    _check_images(final, "final")
    if trajectory.shape[1:] != final.shape:
        raise CourseError(f"trajectory {tuple(trajectory.shape)} is not (steps, *{tuple(final.shape)})")
    final = final.double()
    diff = _patches(trajectory.double() - final, patch)  # (steps, ..., C, h, w, p²)
    rms = (diff**2).mean(dim=-1).mean(dim=-3).sqrt()  # (steps, ..., h, w)
    centred = final - final.mean(dim=(-2, -1), keepdim=True)
    scale = (centred**2).mean(dim=(-3, -2, -1)).sqrt()  # (...,)
    return rms / scale[..., None, None]
