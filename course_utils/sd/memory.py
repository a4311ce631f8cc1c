"""How to fit a Stable Diffusion pipeline on the GPU at hand: precision, attention slicing, CPU offload, VAE tiling.

diffusers' memory guide (https://huggingface.co/docs/diffusers/optimization/memory) offers four levers, each
traded against speed:

- half precision (``torch_dtype=torch.float16``): halves every weight and activation. A Colab T4 (Turing) has no
  bfloat16 units, so on CUDA the plan is always float16; bfloat16, the SD 3.5 cards' choice on Ampere and later,
  is one flag away. The CPU runs float32 (half precision is slow or unsupported there).
- attention slicing (``pipe.enable_attention_slicing()``): a U-Net's attention maps are computed a few heads at a
  time. Only U-Net pipelines have it (SD3's transformer does not); with PyTorch's fused attention it saves little,
  so it is a cheap safeguard on small GPUs only.
- CPU offload: ``pipe.enable_model_cpu_offload()`` keeps each component (text encoders, denoiser, VAE) in CPU
  memory and moves it to the GPU only while it runs, so the GPU holds the largest component instead of all of
  them; ``pipe.enable_sequential_cpu_offload()`` streams the weights layer by layer, so even a denoiser larger
  than the GPU runs, many times slower.
- VAE tiling (``pipe.vae.enable_tiling()``): the image is decoded in overlapping tiles, so decoding a large image
  does not need the whole decoder's activations at once.

:func:`plan_memory` picks the levers from the model's fp16 footprint (:data:`FOOTPRINTS`, from the model cards'
parameter counts; read from the safetensors headers for a local folder) and the GPU's memory; every choice can be
overridden (:func:`override_plan`, the command line's ``--dtype``, ``--attention_slicing``, ``--cpu_offload``,
``--vae_tiling``), and :func:`apply_memory_plan` applies it to a loaded pipeline. On a 15 GB T4 this gives:

==========================================  ===================================================================
model                                       plan
==========================================  ===================================================================
SD 2.1 (768²), SD 2.1 base, SD-Turbo        float16 + attention slicing (2.6 GB of weights stay on the GPU)
SDXL (1024²)                                float16 + model offload + VAE tiling (its VAE decodes in float32)
SDXL-Turbo (512²)                           float16 + attention slicing: at 512² everything fits (see below)
SD 3.5 Medium                               float16 + model offload (16 GB of weights; T5-XXL alone is 9.5)
SD 3.5 Large Turbo                          float16 + sequential offload (its 8.1 B transformer is 16 GB in fp16)
==========================================  ===================================================================

SDXL-Turbo shares SDXL's 7 GB of weights, but at its 512² the float32 decode needs a quarter of 1024²'s, so the
whole pipeline fits a T4; asked for 1024² (``--height 1024 --width 1024``) it gets SDXL's plan. For SD 3.5 Large
Turbo the alternative to streaming weights is quantising the transformer to 8 or 4 bits (bitsandbytes), which the
course does not install.

The activation numbers below are estimates (fp16, batch 2 for classifier-free guidance, PyTorch's fused attention,
at the model's default size, scaled with the pixel count), not measurements; the weights are exact up to rounding.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from course_utils.errors import CourseError, check_choice
from course_utils.runtime import DTYPES, resolve_device, resolve_dtype
from course_utils.sd.support import GenerationSettings

__all__ = [
    "CPU_OFFLOADS",
    "FOOTPRINTS",
    "SMALL_GPU_GB",
    "USABLE_SHARE",
    "VAE_TILING_SHARE",
    "Footprint",
    "MemoryPlan",
    "apply_memory_plan",
    "estimated_peak_gb",
    "footprint_of",
    "cuda_memory_gb",
    "override_plan",
    "plan_memory",
]

CPU_OFFLOADS = ("none", "model", "sequential")
"""``--cpu_offload`` values: everything on the device; one component at a time; one layer at a time."""

USABLE_SHARE = 0.85
"""Share of the GPU's memory a plan may fill; the rest is the CUDA context, cuBLAS workspaces and fragmentation."""

SMALL_GPU_GB = 16.0
"""Below this (a T4's 15 GB), U-Net pipelines slice their attention."""

VAE_TILING_SHARE = 0.25
"""Tile the VAE when one decode would take more than this share of the GPU."""


@dataclass(frozen=True)
class Footprint:
    """A pipeline's memory at its default size (GB = 10⁹ bytes, float16).

    Attributes:
        weights_gb: each component's weights (parameters × 2 bytes).
        denoiser: which component is the denoiser (``unet`` or ``transformer``).
        denoiser_activations_gb: the denoiser's activation peak during a step.
        vae_decode_gb: the activation peak of decoding one image (float32 where the VAE is upcast: SDXL's VAE
            overflows in float16, so its config says ``force_upcast`` and the pipeline decodes in float32).
        vae_upcast: the VAE's weights and decode run in float32 whatever the plan's dtype.
        pixels: height × width these activations are estimated at; they scale with the pixel count.
    """

    weights_gb: Mapping[str, float]
    denoiser: str
    denoiser_activations_gb: float
    vae_decode_gb: float
    pixels: int
    vae_upcast: bool = False

    @property
    def total_gb(self) -> float:
        return sum(self.weights_gb.values())


_SD2 = {"unet": 1.73, "text_encoder": 0.71, "vae": 0.17}  # 865 M U-Net, OpenCLIP ViT-H text (354 M), 84 M VAE
_SDXL = {"unet": 5.14, "text_encoder": 0.25, "text_encoder_2": 1.39, "vae": 0.17}  # 2.57 B, CLIP-L, OpenCLIP-bigG
_SD3_TEXT = {"text_encoder": 0.25, "text_encoder_2": 1.39, "text_encoder_3": 9.52, "vae": 0.17}  # CLIP-L/G, T5-XXL

FOOTPRINTS: dict[str, Footprint] = {
    "stabilityai/stable-diffusion-2-1": Footprint(_SD2, "unet", 2.0, 1.5, 768 * 768),
    "stabilityai/stable-diffusion-2-1-base": Footprint(_SD2, "unet", 1.0, 0.7, 512 * 512),
    "stabilityai/stable-diffusion-2-inpainting": Footprint(_SD2, "unet", 1.0, 0.7, 512 * 512),
    "stabilityai/sd-turbo": Footprint(_SD2, "unet", 0.5, 0.7, 512 * 512),  # batch 1: no guidance
    "stabilityai/stable-diffusion-xl-base-1.0": Footprint(_SDXL, "unet", 3.0, 6.0, 1024 * 1024, vae_upcast=True),
    "stabilityai/sdxl-turbo": Footprint(_SDXL, "unet", 0.4, 1.5, 512 * 512, vae_upcast=True),
    "stabilityai/stable-diffusion-3.5-medium": Footprint(
        {"transformer": 4.94, **_SD3_TEXT}, "transformer", 3.0, 3.0, 1024 * 1024
    ),  # 2.5 B MMDiT-X
    "stabilityai/stable-diffusion-3.5-large-turbo": Footprint(
        {"transformer": 16.2, **_SD3_TEXT}, "transformer", 1.5, 3.0, 1024 * 1024
    ),  # 8.1 B MMDiT
}
"""Registry id → :class:`Footprint`. Weights from the model cards' parameter counts."""

_FAMILY_ACTIVATIONS = {  # (denoiser activations, VAE decode, pixels, upcast VAE) of each family's reference model
    family: (fp.denoiser_activations_gb, fp.vae_decode_gb, fp.pixels, fp.vae_upcast)
    for family, fp in {
        "sd": FOOTPRINTS["stabilityai/stable-diffusion-2-1"],
        "course-sd": FOOTPRINTS["stabilityai/stable-diffusion-2-1"],
        "sdxl": FOOTPRINTS["stabilityai/stable-diffusion-xl-base-1.0"],
        "sd3": FOOTPRINTS["stabilityai/stable-diffusion-3.5-medium"],
    }.items()
}


def _safetensors_numel(path: Path) -> int:
    """Number of parameters in a ``.safetensors`` file, from its header (8-byte length + JSON), reading no weights."""
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    total = 0
    for name, info in header.items():
        if name != "__metadata__":
            n = 1
            for d in info["shape"]:
                n *= d
            total += n
    return total


def _local_weights_gb(root: Path) -> dict[str, float]:
    """Each component folder's weights in float16 GB, from the safetensors headers under ``root``."""
    weights = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        numel = sum(_safetensors_numel(f) for f in folder.glob("*.safetensors"))
        if numel:
            weights[folder.name] = numel * 2 / 1e9
    if not weights:
        raise CourseError(f"{root} holds no .safetensors weights to plan memory from")
    return weights


def footprint_of(settings: GenerationSettings) -> Footprint:
    """``settings``' model's :class:`Footprint`: :data:`FOOTPRINTS` for registry ids; for a local folder, weights
    from its safetensors headers and activations of its family's reference model, scaled to the folder's size."""
    entry = settings.resolved.entry
    if entry is not None and entry.model_id in FOOTPRINTS:
        return FOOTPRINTS[entry.model_id]
    if not settings.resolved.local:
        raise CourseError(
            f"no memory footprint known for {settings.model_id}; add it to course_utils.sd.memory.FOOTPRINTS"
        )
    activations, decode, pixels, upcast = _FAMILY_ACTIVATIONS[settings.family]
    denoiser = "transformer" if settings.family == "sd3" else "unet"
    return Footprint(_local_weights_gb(Path(settings.source)), denoiser, activations, decode, pixels, upcast)


# ---------------------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class MemoryPlan:
    """Where and how a pipeline runs.

    Attributes:
        dtype: ``float32`` | ``float16`` | ``bfloat16`` (``torch_dtype`` for ``from_pretrained``).
        attention_slicing: ``pipe.enable_attention_slicing()`` (U-Net pipelines only).
        model_cpu_offload: ``pipe.enable_model_cpu_offload()``: one component on the GPU at a time.
        sequential_cpu_offload: ``pipe.enable_sequential_cpu_offload()``: one layer at a time.
        vae_tiling: ``pipe.vae.enable_tiling()``: decode in tiles.
        device: ``cpu`` | ``cuda`` | ``mps``: where it runs (with offload: where each piece runs).
        reasons: one short line per choice, for the sidecar and the curious.
    """

    dtype: str
    attention_slicing: bool
    model_cpu_offload: bool
    sequential_cpu_offload: bool
    vae_tiling: bool
    device: str = "cpu"
    reasons: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        check_choice("dtype", self.dtype, DTYPES)
        if self.model_cpu_offload and self.sequential_cpu_offload:
            raise CourseError("choose one CPU offload: model (one component at a time) or sequential (one layer)")

    @property
    def cpu_offload(self) -> str:
        """``none`` | ``model`` | ``sequential``, as the command line writes it."""
        return "sequential" if self.sequential_cpu_offload else "model" if self.model_cpu_offload else "none"

    def summary(self) -> str:
        """One line: ``float16 on cuda, attention slicing, model CPU offload``."""
        parts = [f"{self.dtype} on {self.device}"]
        parts += ["attention slicing"] if self.attention_slicing else []
        parts += [f"{self.cpu_offload} CPU offload"] if self.cpu_offload != "none" else []
        parts += ["VAE tiling"] if self.vae_tiling else []
        return ", ".join(parts)

    def record(self) -> dict[str, Any]:
        """The plan as a JSON-able dict."""
        return {**asdict(self), "reasons": list(self.reasons)}


def cuda_memory_gb(device: torch.device) -> float:
    """Total memory of ``device`` in GB (10⁹ bytes), from ``torch.cuda.get_device_properties``."""
    return torch.cuda.get_device_properties(device.index or 0).total_memory / 1e9


def _demand(settings: GenerationSettings, fp: Footprint) -> tuple[dict[str, float], dict[str, float]]:
    """``(weights, activations)`` in GB at ``settings``' size: each component's weights (the VAE's in float32 where
    it is upcast) and the activation peaks of the denoiser's step and of one VAE decode (the text encoders' are next
    to nothing)."""
    scale = settings.height * settings.width / fp.pixels
    weights = dict(fp.weights_gb)
    if fp.vae_upcast and "vae" in weights:
        weights["vae"] *= 2  # decoded in float32
    return weights, {fp.denoiser: fp.denoiser_activations_gb * scale, "vae": fp.vae_decode_gb * scale}


SEQUENTIAL_LAYER_GB = 1.0
"""What sequential offload keeps on the GPU besides the activations: the layer at work (an estimate; an MMDiT
block of SD 3.5 Large is about 0.4 GB in float16)."""


def estimated_peak_gb(settings: GenerationSettings, plan: MemoryPlan) -> float:
    """The GPU memory ``plan`` needs at its peak for ``settings``' model, estimated from its :class:`Footprint`:
    every weight and the larger activation peak with nothing offloaded; the largest component while it runs under
    model offload; one layer and the activations under sequential offload. An estimate from the model cards'
    parameter counts, not a measurement on a GPU."""
    fp = footprint_of(settings)
    weights, activations = _demand(settings, fp)
    if plan.sequential_cpu_offload:
        return SEQUENTIAL_LAYER_GB + max(activations.values())
    if plan.model_cpu_offload:
        return max(w + activations.get(name, 0.0) for name, w in weights.items())
    return sum(weights.values()) + max(activations.values())


def plan_memory(
    settings: GenerationSettings, *, device: str | torch.device = "auto", gpu_memory_gb: float | None = None
) -> MemoryPlan:
    """Choose the memory plan for ``settings``' model at its size on ``device``.

    ``gpu_memory_gb`` stands in for the GPU's own (``torch.cuda.get_device_properties``), so plans for a T4
    can be made (and tested) without one; giving it plans for a CUDA device whatever ``device`` says.

    1) CPU: float32, nothing else (offload and slicing exist to save GPU memory). MPS: float16, attention slicing
       for U-Net pipelines (diffusers' advice for Apple silicon).
    2) CUDA: float16. Let ``usable`` = :data:`USABLE_SHARE` × memory and ``peak`` the larger of the denoiser's
       activations and one VAE decode, scaled by the pixel count. Everything stays on the GPU if all weights +
       ``peak`` fit ``usable``; else model offload if each component + its own activations fits; else sequential
       offload.
    3) VAE tiling when one decode would take more than :data:`VAE_TILING_SHARE` of the GPU.
    4) Attention slicing for U-Net pipelines left whole on a GPU under :data:`SMALL_GPU_GB` with at least 1 GB of
       weights (not the course's miniature models).
    """
    if gpu_memory_gb is None:
        device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
        if device.type == "cpu":
            return MemoryPlan("float32", False, False, False, False, "cpu", ("CPU: float32, no GPU memory to save",))
        if device.type == "mps":  # diffusers' advice for Apple silicon; SD3's transformer cannot slice
            slicing = settings.family != "sd3"
            why = "MPS: float16" + (" + attention slicing" if slicing else "")
            return MemoryPlan("float16", slicing, False, False, False, "mps", (why,))
        gpu_memory_gb = cuda_memory_gb(device)
    if not gpu_memory_gb > 0:
        raise CourseError(f"GPU memory must be positive, got {gpu_memory_gb}")
    # 1) the footprint at the requested size
    fp = footprint_of(settings)
    weights, activations = _demand(settings, fp)
    denoiser_act, decode = activations[fp.denoiser], activations["vae"]
    usable = USABLE_SHARE * gpu_memory_gb
    peaks = {name: w + activations.get(name, 0.0) for name, w in weights.items()}  # each component while it runs
    # 2) offload: none, model or sequential
    total = sum(weights.values()) + max(denoiser_act, decode)
    reasons = [f"CUDA ({gpu_memory_gb:.1f} GB): float16"]
    model_offload = sequential = False
    if total <= usable:
        reasons.append(f"all weights + activations ≈ {total:.1f} GB fit {usable:.1f} GB usable")
    elif max(peaks.values()) <= usable:
        model_offload = True
        reasons.append(f"≈ {total:.1f} GB > {usable:.1f} GB usable, but each component fits: model CPU offload")
    else:
        sequential = True
        largest = max(peaks, key=peaks.get)
        reasons.append(f"{largest} alone needs ≈ {peaks[largest]:.1f} GB > {usable:.1f} GB usable: sequential offload")
    # 3) VAE tiling
    tiling = decode > VAE_TILING_SHARE * gpu_memory_gb
    if tiling:
        reasons.append(f"one VAE decode ≈ {decode:.1f} GB > {VAE_TILING_SHARE:.0%} of the GPU: VAE tiling")
    # 4) attention slicing
    slicing = (
        fp.denoiser == "unet"
        and not (model_offload or sequential)
        and gpu_memory_gb < SMALL_GPU_GB
        and fp.total_gb >= 1.0
    )
    if slicing:
        reasons.append(f"U-Net on a GPU under {SMALL_GPU_GB:g} GB: attention slicing")
    return MemoryPlan("float16", slicing, model_offload, sequential, tiling, "cuda", tuple(reasons))


def override_plan(
    plan: MemoryPlan,
    *,
    family: str,
    dtype: str | None = None,
    attention_slicing: bool | None = None,
    cpu_offload: str | None = None,
    vae_tiling: bool | None = None,
) -> MemoryPlan:
    """``plan`` with the user's choices (``None`` keeps the plan's), each checked against the device and family:
    half precision needs a GPU, CPU offload needs CUDA, attention slicing needs a U-Net."""
    changes: dict[str, Any] = {}
    if dtype is not None:
        resolve_dtype(dtype, torch.device(plan.device))  # refuses half precision on the CPU
        changes["dtype"] = dtype
    if attention_slicing is not None:
        if attention_slicing and family == "sd3":
            raise CourseError(
                "attention slicing is for U-Net pipelines (sd, sdxl, course-sd); SD3's transformer has none"
            )
        changes["attention_slicing"] = attention_slicing
    if cpu_offload is not None:
        check_choice("cpu_offload", cpu_offload, CPU_OFFLOADS)
        if cpu_offload != "none" and plan.device != "cuda":
            raise CourseError(f"--cpu_offload {cpu_offload} moves weights to a CUDA GPU; the device is {plan.device}")
        changes["model_cpu_offload"] = cpu_offload == "model"
        changes["sequential_cpu_offload"] = cpu_offload == "sequential"
    if vae_tiling is not None:
        changes["vae_tiling"] = vae_tiling
    if not changes:
        return plan
    overridden = ", ".join(f"{k}={v}" for k, v in changes.items())
    return replace(plan, **changes, reasons=(*plan.reasons, f"overridden: {overridden}"))


def apply_memory_plan(pipe, plan: MemoryPlan):
    """Apply ``plan`` to a loaded pipeline (its weights already in ``plan.dtype``) and return it: slicing, VAE
    tiling, then offload, or ``pipe.to(plan.device)`` when nothing is offloaded."""
    if plan.attention_slicing:
        if not hasattr(pipe, "unet"):
            raise CourseError(f"attention slicing is for U-Net pipelines; {type(pipe).__name__} has none")
        pipe.enable_attention_slicing()
    if plan.vae_tiling:
        pipe.vae.enable_tiling()
    if plan.sequential_cpu_offload:
        pipe.enable_sequential_cpu_offload(device=plan.device)
    elif plan.model_cpu_offload:
        pipe.enable_model_cpu_offload(device=plan.device)
    else:
        pipe.to(plan.device)
    return pipe
