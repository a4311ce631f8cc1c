"""Denoisers: a loaded model behind the one interface the samplers use.

``den(x_t, t, cond) -> ε̂`` with ``x_t`` ``(B, C, H, W)`` in ``[-1, 1]`` and ``t`` ``(B,)``;
``den.schedule`` carries ᾱ; ``den.condition(items)`` and ``den.null_condition(n)`` build the
conditioning (class labels for the course's digits model, the course's text-encoder states for its pixel-space
shapes model, T5 prompt embeddings for DeepFloyd IF). :func:`load_denoiser` loads each with its pipeline's
``from_pretrained`` — the same call for a course folder under ``data/models/`` and for a Hub id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from course_utils.course.registry import ResolvedModel, hf_token, load_failure_reason, resolve
from course_utils.errors import CourseError, check_choice
from course_utils.models.digits import NULL_CLASS, NUM_CLASSES
from course_utils.models.shapes_if import ShapesIFPipeline
from course_utils.runtime import quiet_loading, resolve_device, resolve_dtype
from course_utils.sampling.schedules import NoiseSchedule

__all__ = ["DENOISER_FAMILIES", "Denoiser", "DigitsDenoiser", "IFDenoiser", "ShapesIFDenoiser", "load_denoiser"]


class Denoiser:
    """Base class: a pixel-space ε-predictor with its schedule.

    Attributes:
        family: its registry family (which pipeline loads it, which reader judges its samples).
        model_id: the id it was loaded from.
        schedule: ᾱ, prediction type and x̂₀ clipping (from the pipeline's scheduler config).
        sample_shape: ``(C, H, W)`` of the images it denoises.
        device, dtype: where it runs.
    """

    family: str
    model_id: str
    schedule: NoiseSchedule
    sample_shape: tuple[int, int, int]
    device: torch.device
    dtype: torch.dtype

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """ε̂ for ``x_t`` ``(B, C, H, W)`` at ``t`` ``(B,)``; ``cond=None`` means unconditional."""
        raise NotImplementedError

    def condition(self, items: Sequence[Any]) -> Any:
        """Conditioning for a batch: one item (a class or a prompt) per image."""
        raise NotImplementedError

    def null_condition(self, batch_size: int) -> Any:
        """The unconditional ("empty") conditioning for ``batch_size`` images."""
        raise NotImplementedError

    def noise(self, batch_size: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pure noise ``x_T ~ N(0, I)``, shape ``(batch_size, *sample_shape)``, on the denoiser's device."""
        x = torch.randn((batch_size, *self.sample_shape), generator=generator)
        return x.to(device=self.device, dtype=self.dtype)


class DigitsDenoiser(Denoiser):
    """The course's class-conditional digits DDPM; conditions are digits ``0``–``9`` (ints or strings)."""

    family = "course-digits"

    def __init__(self, pipeline: Any, *, model_id: str, device: torch.device, dtype: torch.dtype) -> None:
        self.unet = pipeline.unet.to(device).eval()  # dtype already set by from_pretrained
        self.schedule = NoiseSchedule.from_scheduler(pipeline.scheduler)
        self.sample_shape = (self.unet.config.in_channels, self.unet.config.sample_size, self.unet.config.sample_size)
        self.model_id, self.device, self.dtype = model_id, device, dtype

    @torch.no_grad()
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        cond = self.null_condition(x_t.shape[0]) if cond is None else cond
        return self.unet(x_t, t, class_labels=cond).sample

    def condition(self, items: Sequence[int | str]) -> torch.Tensor:
        labels = []
        for item in items:
            text = str(item).strip()
            if not text.isdigit() or not 0 <= int(text) < NUM_CLASSES:
                raise CourseError(f"the digits model is conditioned on a digit 0-9, got {item!r}")
            labels.append(int(text))
        return torch.tensor(labels, device=self.device)

    def null_condition(self, batch_size: int) -> torch.Tensor:
        return torch.full((batch_size,), NULL_CLASS, device=self.device)


class ShapesIFDenoiser(Denoiser):
    """The course's pixel-space shapes model (:mod:`course_utils.models.shapes_if`, 3×32×32, the offline IF stage I):
    conditions are shapes captions, encoded by its text encoder; ``""`` is the unconditional prompt.

    Its U-Net predicts v; this interface returns ε̂ = √ᾱ_t v̂ + √(1 − ᾱ_t) x_t (Salimans & Ho 2022, from eq. 9), so the
    schedule says ``epsilon`` and every sampler and hand-written step treats it as IF's ε-predictor.
    """

    family = "course-shapes-if"

    def __init__(self, pipeline: Any, *, model_id: str, device: torch.device, dtype: torch.dtype) -> None:
        self.pipeline = pipeline.to(device)
        self.unet = pipeline.unet.eval()
        config = pipeline.scheduler.config
        self.predicts = config.prediction_type
        check_choice("the shapes model's prediction type", self.predicts, ("epsilon", "v_prediction"))
        clip = config.clip_sample_range if config.clip_sample else None
        self.schedule = NoiseSchedule(
            pipeline.scheduler.alphas_cumprod.clone(), prediction_type="epsilon", clip_x0=clip
        )
        size = self.unet.config.sample_size
        self.sample_shape = (self.unet.config.in_channels, size, size)
        self.model_id, self.device, self.dtype = model_id, device, dtype

    @torch.no_grad()
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        cond = self.null_condition(x_t.shape[0]) if cond is None else cond
        out = self.unet(x_t.to(self.dtype), t, encoder_hidden_states=cond).sample.to(x_t.dtype)
        if self.predicts == "epsilon":
            return out
        t = torch.as_tensor(t, device=x_t.device).reshape(-1)
        alpha_bar = self.schedule.alphas_cumprod.to(x_t.device, x_t.dtype)[t.long()].reshape(-1, 1, 1, 1)
        return alpha_bar.sqrt() * out + (1 - alpha_bar).sqrt() * x_t  # ε̂ from v̂

    @torch.no_grad()
    def condition(self, items: Sequence[str]) -> torch.Tensor:
        return self.pipeline.encode_prompt([str(item) for item in items])

    def null_condition(self, batch_size: int) -> torch.Tensor:
        return self.condition([""] * batch_size)


class IFDenoiser(Denoiser):
    """DeepFloyd IF stage I (64×64 pixels, T5 text conditioning).

    Its U-Net also predicts a variance (6 output channels, "learned_range"); the samplers use the
    ε half and the fixed posterior variance, as hand-written loops for IF commonly do. IF's dynamic
    thresholding is replaced by clipping x̂₀ to [-1, 1].
    """

    family = "if"

    def __init__(
        self, pipeline: Any, *, model_id: str, device: torch.device, dtype: torch.dtype, offload: bool | None = None
    ) -> None:
        self.pipeline = pipeline
        # IF-I-XL (4.3 B parameters) and T5-XXL (4.8 B) need about 18 GB together in float16, more than a
        # 15 GB Colab T4: with model CPU offload only the model that runs sits on the GPU (the U-Net during
        # sampling, T5 while encoding prompts). On by default on CUDA.
        offload = device.type == "cuda" if offload is None else offload
        if offload:
            pipeline.enable_model_cpu_offload(device=device)
        else:
            # from_pretrained set the dtypes; casting again would undo T5's float32 feed-forward layers,
            # which transformers keeps in float32 under float16 because their activations overflow.
            pipeline.to(device)
        self.unet = pipeline.unet.eval()
        scheduler = pipeline.scheduler
        self.schedule = NoiseSchedule(
            scheduler.alphas_cumprod.clone(), prediction_type=scheduler.config.prediction_type, clip_x0=1.0
        )
        size = self.unet.config.sample_size
        self.sample_shape = (3, size, size)
        self.model_id, self.device, self.dtype = model_id, device, dtype

    @torch.no_grad()
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        cond = self.null_condition(x_t.shape[0]) if cond is None else cond
        out = self.unet(x_t.to(self.dtype), t, encoder_hidden_states=cond).sample
        return out[:, : x_t.shape[1]].to(x_t.dtype)  # (B, 6, H, W): ε and the variance; keep ε

    @torch.no_grad()
    def condition(self, items: Sequence[str]) -> torch.Tensor:
        embeds, _ = self.pipeline.encode_prompt(
            list(map(str, items)), do_classifier_free_guidance=False, device=self.device
        )
        return embeds.to(self.dtype)

    def null_condition(self, batch_size: int) -> torch.Tensor:
        return self.condition([""] * batch_size)


DENOISER_FAMILIES = {"course-digits": DigitsDenoiser, "course-shapes-if": ShapesIFDenoiser, "if": IFDenoiser}


def load_denoiser(model_id: str, *, device: str = "auto", dtype: str = "float32") -> Denoiser:
    """Load a pixel-space denoiser by id (see :mod:`course_utils.course.registry`) with ``from_pretrained``.

    Args:
        model_id: ``course/digits-ddpm``, ``course/shapes-if``, ``DeepFloyd/IF-I-XL-v1.0``, or a local pipeline
            folder.
        device: ``auto``, ``cpu``, ``cuda``, ``mps``; a device that is not there is an error.
        dtype: ``float32`` or (on a GPU) ``float16``.
    """
    from diffusers import DiffusionPipeline

    resolved = resolve(model_id)
    if resolved.family not in DENOISER_FAMILIES:
        raise CourseError(
            f"{model_id} ({resolved.family}) is not a pixel-space denoiser; use one of the families "
            f"{', '.join(DENOISER_FAMILIES)}"
        )
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    kwargs: dict[str, Any] = {}
    if resolved.family == "if" and not resolved.local:
        kwargs = {"variant": "fp16" if torch_dtype == torch.float16 else None, "token": hf_token()}
    # the shapes model's pipeline class is the course's own; the others are diffusers' (read from model_index.json)
    pipeline_class = ShapesIFPipeline if resolved.family == "course-shapes-if" else DiffusionPipeline
    pipeline = _from_pretrained(pipeline_class, resolved, dtype=torch_dtype, **kwargs)
    cls = DENOISER_FAMILIES[resolved.family]
    return cls(pipeline, model_id=model_id, device=torch_device, dtype=torch_dtype)


def _from_pretrained(cls: Any, resolved: ResolvedModel, **kwargs: Any) -> Any:
    """``cls.from_pretrained(source)`` without a progress bar; a Hub failure becomes one line saying what to do."""
    try:
        with quiet_loading():
            return cls.from_pretrained(resolved.source, **kwargs)
    except OSError as err:  # missing repository, gated repository, no network
        if resolved.local:
            raise CourseError(f"could not load {resolved.source}: {str(err).splitlines()[0]}") from err
        raise CourseError(resolved.gone_or_gated_hint(load_failure_reason(err))) from err
