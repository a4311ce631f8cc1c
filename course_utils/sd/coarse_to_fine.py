"""Why coarse structure appears first, measured on the shapes model: x̂₀ at every sampling step, when each frequency
band and each patch of it settles, and the signal-to-noise ratio of each band (the algorithms are
:mod:`course_utils.sampling.spectrum`; this module runs the pipeline and gathers the numbers).

The shapes model is a *latent* diffusion model (Rombach et al. 2022): noise is added to the 4 × 8 × 8 latents
``z = s · E(x)``, not to the 32 × 32 pixels. So

- :func:`record_x0` records the scheduler's ``pred_original_sample`` (x̂₀ of DDIM, Song et al. 2021, eq. 12: the
  model's estimate of ``z_0``) at every step, and decodes each through the VAE, ``D(x̂₀ / s)``, to pixels: the
  pixel trajectory is the *decoded* view, not a pixel-space diffusion;
- the signal-to-noise ratio the model actually faces is the **latent** one, ``ᾱ_t · C_z(f) / (1 − ᾱ_t)`` with
  ``C_z`` the power spectrum of the latents of real renders (posterior modes times ``s``), in cycles per latent
  pixel (one latent pixel is 4 picture pixels, so latent frequency ``f_z`` is picture frequency ``f_z / 4``);
- beside it the **pixel** ratio ``ᾱ_t · C_x(f) / (1 − ᾱ_t)`` with ``C_x`` the spectrum of the renders themselves:
  what a pixel-space model on the same schedule would face, for comparison with the decoded trajectory.

:func:`coarse_to_fine_study` measures both on held-out captions and reports settle step per band with 95 %
bootstrap intervals over samples, and the relation of each patch's contrast to its settle step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from course_utils.data.shapes import ShapesDataset, make_dataset, to_tensor
from course_utils.errors import CourseError, check_choice
from course_utils.models.shapes_vae import decode, encode
from course_utils.sampling.spectrum import (
    DEFAULT_TOLERANCE,
    band_edges,
    band_power,
    band_relative_error,
    band_snr,
    patch_contrast,
    patch_errors,
    settle_steps,
    snr_crossing_steps,
)
from course_utils.stats import Estimate, bootstrap_mean, difference

__all__ = [
    "SPACES",
    "CoarseToFineStudy",
    "X0Trajectory",
    "coarse_to_fine_study",
    "data_spectra",
    "record_x0",
    "recording_x0",
]

SPACES = ("latents", "pixels")
DEFAULT_STEPS = 25  # the shapes model's defaults (course_utils.sd.support.MODEL_DEFAULTS["course/shapes-sd"])
DEFAULT_GUIDANCE = 7.5
HELD_OUT_SEED = 2027  # make_dataset's seed for the prompts (the models train on seed 0)
SPECTRUM_SEED = 1  # make_dataset's seed for the renders whose spectrum is C(f)
DEFAULT_N = 8


@dataclass(frozen=True)
class X0Trajectory:
    """A sampling run's x̂₀ at every step.

    Attributes:
        timesteps: ``(steps,)`` the timestep ``t`` of each step, in sampling order (falling).
        alphas_cumprod: ``(steps,)`` ``ᾱ_t`` at those timesteps.
        latents: ``(steps, N, 4, h, w)`` x̂₀ in the scaled latent space (``z = s · E(x)``).
        pixels: ``(steps, N, 3, H, W)`` each x̂₀ decoded, ``D(x̂₀ / s)`` clamped to ``[-1, 1]``; ``None`` without
            ``decode``.
        final_latents: ``(N, 4, h, w)`` the sample the pipeline returns (its last ``z``).
        final_pixels: ``(N, 3, H, W)`` its decoding (the picture the pipeline shows).
    """

    timesteps: torch.Tensor
    alphas_cumprod: torch.Tensor
    latents: torch.Tensor = field(repr=False)
    pixels: torch.Tensor | None = field(repr=False)
    final_latents: torch.Tensor = field(repr=False)
    final_pixels: torch.Tensor = field(repr=False)


@contextmanager
def recording_x0(scheduler: Any) -> Iterator[list[torch.Tensor]]:
    """While the ``with`` block runs, every ``scheduler.step`` call appends its ``pred_original_sample`` (x̂₀, on the
    CPU) to the yielded list; the step's result is returned unchanged. Schedulers that do not return x̂₀ (the
    multistep solvers) are refused at the first step."""
    recorded: list[torch.Tensor] = []
    step = scheduler.step

    def recording(*args: Any, **kwargs: Any) -> Any:
        out = step(*args, **kwargs)
        x0 = out[1] if isinstance(out, tuple) and len(out) > 1 else getattr(out, "pred_original_sample", None)
        if x0 is None:
            raise CourseError(f"{type(scheduler).__name__}.step does not return x̂₀ (pred_original_sample); use DDIM")
        recorded.append(x0.detach().float().cpu().clone())
        return out

    scheduler.step = recording  # an instance attribute: shadows the method for this scheduler only
    try:
        yield recorded
    finally:
        del scheduler.step


@torch.no_grad()
def record_x0(
    pipe: Any,
    prompts: Sequence[str],
    *,
    seed: int = 0,
    num_inference_steps: int = DEFAULT_STEPS,
    guidance_scale: float = DEFAULT_GUIDANCE,
    batch_size: int = 64,
    decode_steps: bool = True,
) -> X0Trajectory:
    """Sample one image per prompt with ``pipe`` (a shapes ``StableDiffusionPipeline``, its own scheduler: DDIM) and
    record x̂₀ at every step, decoded through the VAE (``decode_steps``).

    Image ``i`` draws its noise from ``torch.Generator("cpu").manual_seed(seed + i)``, as
    :func:`course_utils.sd.pipeline.sample_batch` does.
    """
    prompts = list(prompts)
    if not prompts:
        raise CourseError("record_x0 needs at least one prompt")
    if batch_size < 1:
        raise CourseError(f"batch_size must be at least 1, got {batch_size}")
    pipe.set_progress_bar_config(disable=True)
    steps, finals = [], []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        with recording_x0(pipe.scheduler) as recorded:
            out = pipe(
                prompt=chunk,
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                generator=[torch.Generator("cpu").manual_seed(seed + start + i) for i in range(len(chunk))],
                output_type="latent",
            )
        steps.append(torch.stack(recorded))  # (steps, chunk, 4, h, w)
        finals.append(out.images.float().cpu())
    latents, final_latents = torch.cat(steps, dim=1), torch.cat(finals)
    timesteps = pipe.scheduler.timesteps.detach().cpu().clone()
    alphas_cumprod = pipe.scheduler.alphas_cumprod[timesteps].double()
    pixels = None
    if decode_steps:
        decoded = decode(pipe.vae, latents.reshape(-1, *latents.shape[2:]))  # (steps · N, 3, H, W)
        pixels = decoded.reshape(*latents.shape[:2], *decoded.shape[1:])
    return X0Trajectory(timesteps, alphas_cumprod, latents, pixels, final_latents, decode(pipe.vae, final_latents))


@torch.no_grad()
def data_spectra(
    vae: Any, dataset: ShapesDataset, *, pixel_edges: torch.Tensor, latent_edges: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The data's power spectrum ``C(f)`` per band (:func:`course_utils.sampling.spectrum.band_power`, averaged over
    the data set): ``{"pixels": (bands,), "latents": (latent bands,)}``, of the renders in ``[-1, 1]`` and of their
    latents ``s · E(x)`` (posterior modes), the space the shapes model adds noise to."""
    images = to_tensor(dataset.images)
    latents = encode(vae, images)
    return {
        "pixels": band_power(images, edges=pixel_edges).mean(dim=0),
        "latents": band_power(latents, edges=latent_edges).mean(dim=0),
    }


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); ``nan`` when either side is constant."""
    from scipy.stats import spearmanr

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


@dataclass(frozen=True)
class CoarseToFineStudy:
    """Settle steps per band and per patch, with the SNR per band, over many samples.

    Attributes:
        settings: steps, guidance, seed, tolerance, patch size, sample and spectrum counts.
        timesteps, alphas_cumprod: ``(steps,)`` of the sampling run.
        edges: space → band edges in cycles per (picture or latent) pixel, ``(bands + 1,)``.
        settle: space → ``(N, bands)`` the step from which each sample's band stays within the tolerance.
        power: space → ``(bands,)`` the data's spectrum ``C(f)``.
        snr: space → ``(steps, bands)`` ``ᾱ_t · C(f) / (1 − ᾱ_t)`` at each sampling step.
        contrast, patch_settle: ``(N, patches)`` each patch's contrast in the final picture and its settle step.
        final_pixels: ``(N, 3, H, W)`` the samples; ``trajectory``: the :class:`X0Trajectory` (kept for plots).
    """

    settings: dict[str, Any]
    timesteps: torch.Tensor = field(repr=False)
    alphas_cumprod: torch.Tensor = field(repr=False)
    edges: dict[str, torch.Tensor] = field(repr=False)
    settle: dict[str, torch.Tensor] = field(repr=False)
    power: dict[str, torch.Tensor] = field(repr=False)
    snr: dict[str, torch.Tensor] = field(repr=False)
    contrast: torch.Tensor = field(repr=False)
    patch_settle: torch.Tensor = field(repr=False)
    trajectory: X0Trajectory = field(repr=False)

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    def settle_estimates(self, space: str) -> list[Estimate]:
        """The mean settle step of each band, with its 95 % bootstrap interval over samples."""
        check_choice("space", space, SPACES)
        return [bootstrap_mean(column) for column in self.settle[space].double().T.numpy()]

    def coarse_to_fine(self, space: str) -> Estimate:
        """The highest band's settle step minus the lowest's, paired over samples: above 0 (the interval excludes
        0) means the fine band settles later, coarse to fine."""
        check_choice("space", space, SPACES)
        s = self.settle[space].double().numpy()
        return difference(s[:, -1], s[:, 0])

    def settle_table(self, space: str) -> list[dict[str, Any]]:
        """Per band: frequency range, mean settle step [95 %], the timestep ``t`` at that step, the step from which
        the band's SNR exceeds 1, and the data's power ``C(f)``."""
        check_choice("space", space, SPACES)
        edges, estimates = self.edges[space], self.settle_estimates(space)
        crossing = snr_crossing_steps(self.snr[space]).tolist()
        unit = "cycles/latent px" if space == "latents" else "cycles/px"
        rows = []
        for i, e in enumerate(estimates):
            step = min(round(e.value), self.steps - 1)
            rows.append(
                {
                    f"band ({unit})": f"{edges[i]:.3f}–{edges[i + 1]:.3f}" + ("+" if i == len(estimates) - 1 else ""),
                    "settle step": e.format(decimals=max(0, min(e.decimals, 2))),
                    "t there": int(self.timesteps[step]),
                    "SNR > 1 from step": crossing[i] if crossing[i] < self.steps else "never",
                    "C(f)": f"{float(self.power[space][i]):.3g}",
                }
            )
        return rows

    def snr_table(self, space: str, *, at: Sequence[int] = (0, 6, 12, 18, 24)) -> list[dict[str, Any]]:
        """``SNR_t(f)`` per band at the sampling steps ``at`` (one row per step: its ``t`` and ``ᾱ_t``)."""
        check_choice("space", space, SPACES)
        rows = []
        for step in at:
            if not 0 <= step < self.steps:
                raise CourseError(f"step {step} is not in 0 … {self.steps - 1}")
            row = {"step": step, "t": int(self.timesteps[step]), "ᾱ_t": f"{float(self.alphas_cumprod[step]):.3g}"}
            row.update({f"band {i}": f"{v:.3g}" for i, v in enumerate(self.snr[space][step].tolist())})
            rows.append(row)
        return rows

    def patch_correlation(self) -> tuple[Estimate, int]:
        """Spearman's ρ between a patch's contrast and its settle step within each sample, averaged over samples
        with its 95 % bootstrap interval; samples where either side is constant are left out (their count is the
        second value). Within-sample correlation compares patches of the same picture, and resampling samples (not
        patches) keeps the patches of one picture together."""
        rho = np.array(
            [_spearman(c, s) for c, s in zip(self.contrast.numpy(), self.patch_settle.double().numpy(), strict=True)]
        )
        kept = rho[np.isfinite(rho)]
        if not len(kept):
            raise CourseError("every sample's patches settle at one step or share one contrast: no correlation")
        return bootstrap_mean(kept), int(len(rho) - len(kept))

    def tercile_estimates(self) -> dict[str, Any]:
        """The mean settle step of the low-, mid- and high-contrast third of the patches (terciles over all
        patches), each a mean over samples of the sample's patches in that third, with 95 % bootstrap intervals
        over samples (the patches of one picture stay together); and high minus low, paired over the samples
        that have both.

        Returns:
            ``{"bounds": [min, cut 1, cut 2, max], "patches": [count per third], "median contrast": [per third],
            "settle": [Estimate per third], "high − low": Estimate}``.
        """
        contrast, settle = self.contrast.numpy(), self.patch_settle.double().numpy()
        cuts = np.quantile(contrast, [1 / 3, 2 / 3])
        third = np.digitize(contrast, cuts)  # (N, patches): 0, 1, 2
        per_sample = np.full((len(contrast), 3), np.nan)  # each sample's mean settle step in each third
        for k in range(3):
            hit = third == k
            counts = hit.sum(axis=1)
            sums = np.where(hit, settle, 0).sum(axis=1)
            per_sample[:, k] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        both = np.isfinite(per_sample[:, 0]) & np.isfinite(per_sample[:, 2])
        return {
            "bounds": [float(contrast.min()), *map(float, cuts), float(contrast.max())],
            "patches": [int((third == k).sum()) for k in range(3)],
            "median contrast": [float(np.median(contrast[third == k])) for k in range(3)],
            "settle": [bootstrap_mean(per_sample[np.isfinite(per_sample[:, k]), k]) for k in range(3)],
            "high − low": difference(per_sample[both, 2], per_sample[both, 0]),
            "samples with both": int(both.sum()),
        }

    def patch_terciles(self) -> list[dict[str, Any]]:
        """:meth:`tercile_estimates` as table rows: one per contrast third, and high − low."""
        e = self.tercile_estimates()
        bounds = e["bounds"]
        rows = [
            {
                "contrast third": name,
                "contrast range": f"{bounds[k]:.3f}–{bounds[k + 1]:.3f}",
                "patches": e["patches"][k],
                "settle step": e["settle"][k].format(),
            }
            for k, name in enumerate(("low", "mid", "high"))
        ]
        rows.append(
            {
                "contrast third": "high − low",
                "contrast range": "",
                "patches": f"{e['samples with both']} samples",
                "settle step": e["high − low"].format(),
            }
        )
        return rows


def coarse_to_fine_study(
    pipe: Any,
    dataset: ShapesDataset | None = None,
    *,
    n: int | None = None,
    seed: int = 0,
    num_inference_steps: int = DEFAULT_STEPS,
    guidance_scale: float = DEFAULT_GUIDANCE,
    pixel_bands: int = 8,
    latent_bands: int = 4,
    patch: int = 8,
    tol: float = DEFAULT_TOLERANCE,
    spectrum_n: int = 512,
    batch_size: int = 64,
) -> CoarseToFineStudy:
    """Sample the captions of ``dataset`` (default ``make_dataset(n, seed=HELD_OUT_SEED)``, ``n`` default
    :data:`DEFAULT_N`), record x̂₀ at every step, and measure:

    1. per band, in latents (``latent_bands`` over the 8 × 8 latents) and decoded pixels (``pixel_bands`` over
       32 × 32): the step from which the band's relative error to the final sample stays below ``tol``
       (``band_relative_error`` and ``settle_steps`` of :mod:`course_utils.sampling.spectrum`);
    2. per band, ``SNR_t(f) = ᾱ_t · C(f) / (1 − ᾱ_t)`` at each sampling step, ``C(f)`` from ``spectrum_n`` renders
       (:func:`data_spectra`: latents for the latent SNR, pixels for the decoded view);
    3. per ``patch × patch`` patch of the decoded picture: its contrast in the final sample and the step from which
       its error stays below ``tol`` of the picture's contrast (:func:`~course_utils.sampling.spectrum.patch_errors`).
    """
    if dataset is not None and n is not None:
        raise CourseError("give a dataset or n (the size of the default held-out data set), not both")
    if dataset is None:
        dataset = make_dataset(DEFAULT_N if n is None else n, seed=HELD_OUT_SEED)
    trajectory = record_x0(
        pipe,
        dataset.captions,
        seed=seed,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        batch_size=batch_size,
    )
    edges = {"latents": band_edges(latent_bands), "pixels": band_edges(pixel_bands)}
    renders = make_dataset(spectrum_n, seed=SPECTRUM_SEED)
    power = data_spectra(pipe.vae, renders, pixel_edges=edges["pixels"], latent_edges=edges["latents"])
    settle = {
        "latents": settle_steps(
            band_relative_error(trajectory.latents, trajectory.final_latents, edges=edges["latents"]), tol=tol
        ),
        "pixels": settle_steps(
            band_relative_error(trajectory.pixels, trajectory.final_pixels, edges=edges["pixels"]), tol=tol
        ),
    }
    snr = {space: band_snr(trajectory.alphas_cumprod, power[space]) for space in SPACES}
    contrast = patch_contrast(trajectory.final_pixels, patch=patch).flatten(1)  # (N, patches)
    patch_settle = settle_steps(patch_errors(trajectory.pixels, trajectory.final_pixels, patch=patch), tol=tol)
    settings = {
        "num_inference_steps": num_inference_steps,
        "guidance_scale": guidance_scale,
        "seed": seed,
        "tol": tol,
        "patch": patch,
        "n": len(dataset),
        "spectrum_n": spectrum_n,
    }
    return CoarseToFineStudy(
        settings,
        trajectory.timesteps,
        trajectory.alphas_cumprod,
        edges,
        settle,
        power,
        snr,
        contrast,
        patch_settle.flatten(1),
        trajectory,
    )
