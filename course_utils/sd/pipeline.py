"""Stable Diffusion pipelines, loaded once and sampled many times: the core behind ``diffusion-course generate``,
the sweeps, the panels and the week-3 notebooks.

    pipeline = load_pipeline("course/shapes-sd")
    for w in (1, 3, 7.5):
        generate(GenerateRequest(prompt=..., guidance_scale=w, scheduler="ddpm"), pipeline=pipeline)

Everything is checked before a weight loads (:func:`course_utils.sd.support.check_request`: scheduler × family,
steps, guidance, size, prompt words; :mod:`course_utils.sd.memory`: the memory plan), and a mistake is one
:class:`course_utils.errors.CourseError` line.

Each image is written as ``<output_dir>/<stem>.png`` with a JSON sidecar ``<stem>.json`` holding every setting,
the pipeline and scheduler classes that ran, the versions and the wall time. Image ``i`` of a request with seed
``s`` is drawn from ``torch.Generator("cpu").manual_seed(s + i)`` on its own, so it is reproduced exactly by
``--seed s+i`` alone, and its file name says ``seed<s+i>``.

The Hugging Face token (``token``, else ``HF_TOKEN`` / a Colab secret / the saved login) is passed to
``from_pretrained`` for gated models and nowhere else: never printed, logged or written.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import diffusers
import torch
import transformers
from diffusers import DiffusionPipeline
from PIL import Image

import course_utils
from course_utils.course.registry import hf_token
from course_utils.errors import CourseError, check_choice
from course_utils.runtime import DEVICES, DTYPES, quiet_loading
from course_utils.sd.memory import MemoryPlan, apply_memory_plan, override_plan, plan_memory
from course_utils.sd.support import (
    DEFAULT_SCHEDULER,
    GenerationSettings,
    build_scheduler,
    check_prompt,
    check_request,
)

__all__ = [
    "DEFAULT_MODEL_ID",
    "DEFAULT_OUTPUT_DIR",
    "GenerateRequest",
    "LoadedPipeline",
    "PreparedRequest",
    "generate",
    "image_stem",
    "load_pipeline",
    "prepare_request",
    "sample",
    "sample_batch",
    "set_scheduler",
]

DEFAULT_MODEL_ID = "course/shapes-sd"
DEFAULT_OUTPUT_DIR = Path("outputs/generate")


@dataclass(frozen=True)
class GenerateRequest:
    """One ``python -m course_utils.sd.generate`` call: ``None`` means the model's default (or the automatic memory
    plan's choice). ``token`` is for loading gated Hub models only; it is left out of ``repr`` and every record."""

    prompt: str
    negative_prompt: str | None = None
    model_id: str = DEFAULT_MODEL_ID
    scheduler: str | None = None
    guidance_scale: float | None = None
    num_inference_steps: int | None = None
    seed: int = 0
    num_images: int = 1
    height: int | None = None
    width: int | None = None
    output_dir: str | Path = DEFAULT_OUTPUT_DIR
    device: str = "auto"
    dtype: str | None = None
    attention_slicing: bool | None = None
    cpu_offload: str | None = None
    vae_tiling: bool | None = None
    token: str | None = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        """What the user asked for, JSON-able, without the token."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self) if f.name != "token"}


@dataclass(frozen=True)
class PreparedRequest:
    """A request checked against its model (no weights loaded): the settings, the memory plan, the warnings."""

    request: GenerateRequest
    settings: GenerationSettings
    plan: MemoryPlan
    warnings: tuple[str, ...]


@dataclass
class LoadedPipeline:
    """A pipeline loaded once and prepared (scheduler, memory plan) for many :func:`sample` calls.

    Attributes:
        pipe: the diffusers pipeline.
        settings: the checked settings it was loaded for (model, family, default size …).
        plan: the memory plan applied to it.
        scheduler: the short name of the scheduler in ``pipe`` now (or ``"default"``: the model's own).
        own_scheduler: the scheduler the model was saved with; every swap starts from its configuration.
    """

    pipe: DiffusionPipeline
    settings: GenerationSettings
    plan: MemoryPlan
    scheduler: str
    own_scheduler: Any = field(repr=False)


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise CourseError(f"seed must be a whole number ≥ 0, got {seed!r}")
    return seed


def prepare_request(request: GenerateRequest) -> PreparedRequest:
    """Check everything in ``request`` and choose its memory plan, loading no weights.

    Raises:
        CourseError: one line (see :func:`course_utils.sd.support.check_request`, plus the seed, the device and
            the memory flags).
    """
    settings, warnings = check_request(
        request.model_id,
        prompt=request.prompt,
        scheduler=request.scheduler,
        steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        height=request.height,
        width=request.width,
        negative_prompt=request.negative_prompt,
        num_images=request.num_images,
    )
    _check_seed(request.seed)
    plan = plan_memory(settings, device=request.device)
    plan = override_plan(
        plan,
        family=settings.family,
        dtype=request.dtype,
        attention_slicing=request.attention_slicing,
        cpu_offload=request.cpu_offload,
        vae_tiling=request.vae_tiling,
    )
    return PreparedRequest(request, settings, plan, tuple(warnings))


# ---------------------------------------------------------------------------------------------- loading


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _from_pretrained(settings: GenerationSettings, *, dtype: torch.dtype, token: str | None) -> DiffusionPipeline:
    """``DiffusionPipeline.from_pretrained`` with loading failures as one line: for a Hub model the registry's
    gone-or-gated hint, for a folder what went wrong."""
    resolved = settings.resolved
    kwargs: dict[str, Any] = {"dtype": dtype}  # diffusers ≥ 0.42 (``torch_dtype`` before)
    if not resolved.local:
        kwargs["token"] = token
    try:
        with quiet_loading():
            return DiffusionPipeline.from_pretrained(resolved.source, **kwargs)
    except CourseError:
        raise
    except Exception as err:  # gone, gated, offline, truncated download, a folder of the wrong layout …
        if not resolved.local:
            from huggingface_hub.constants import is_offline_mode

            offline = "; HF_HUB_OFFLINE is set, so only models already downloaded load" if is_offline_mode() else ""
            raise CourseError(f"{resolved.gone_or_gated_hint()} ({type(err).__name__}{offline})") from None
        lines = _scrub(str(err), token).strip().splitlines() or [""]
        raise CourseError(f"cannot load {resolved.source}: {type(err).__name__}: {lines[0][:200]}") from None


def load_pipeline(
    model_id: str | GenerationSettings,
    *,
    scheduler: str | None = None,
    plan: MemoryPlan | None = None,
    device: str = "auto",
    token: str | None = None,
) -> LoadedPipeline:
    """Load ``model_id``'s pipeline once, in ``plan.dtype``, with ``scheduler`` swapped in and ``plan`` applied.

    Args:
        model_id: a registry id or folder (checked by :func:`course_utils.sd.support.check_request`), or settings
            already checked.
        scheduler: a short name of :data:`course_utils.sd.support.SCHEDULERS`; ``None``: the model's default.
        plan: the memory plan; ``None``: :func:`course_utils.sd.memory.plan_memory` on ``device`` at the model's
            default size.
        device: where to plan for when no ``plan`` is given (``auto``: CUDA, else MPS, else the CPU); with a plan
            it must be ``auto`` or the plan's own device.
        token: for gated Hub models; ``None``: :func:`course_utils.course.registry.hf_token`. Used for loading only.
    """
    # 1) check before loading
    if isinstance(model_id, GenerationSettings):
        settings = model_id
        if scheduler is not None:
            checked, _ = check_request(settings.model_id, scheduler=scheduler)
            settings = replace(settings, scheduler=checked.scheduler)
    else:
        settings, _ = check_request(model_id, scheduler=scheduler)
    if plan is not None and device != "auto" and check_choice("device", device.split(":")[0], DEVICES) != plan.device:
        raise CourseError(
            f"device={device!r} and a memory plan for {plan.device!r} disagree: the plan says where the pipeline runs"
            f" (pass device='auto' with it, or no plan)"
        )
    plan = plan if plan is not None else plan_memory(settings, device=device)
    if not settings.resolved.local and token is None:
        token = hf_token()
    # 2) load, check the class, keep the model's own scheduler
    pipe = _from_pretrained(settings, dtype=DTYPES[plan.dtype], token=token)
    if type(pipe).__name__ != settings.pipeline_class:
        raise CourseError(
            f"{settings.model_id} loaded as {type(pipe).__name__}; the {settings.family} family is a"
            f" {settings.pipeline_class}"
        )
    loaded = LoadedPipeline(pipe, settings, plan, DEFAULT_SCHEDULER, own_scheduler=pipe.scheduler)
    # 3) the scheduler, then the memory plan
    set_scheduler(loaded, settings.scheduler)
    apply_memory_plan(pipe, plan)
    return loaded


def set_scheduler(loaded: LoadedPipeline, name: str) -> LoadedPipeline:
    """Swap ``loaded``'s scheduler for ``name`` (built from the model's own scheduler configuration), or restore
    the model's own for ``"default"``. No weights move. The name must suit the family (checked by
    :func:`course_utils.sd.support.check_request` first)."""
    if name == loaded.scheduler:
        return loaded
    if name == DEFAULT_SCHEDULER:
        loaded.pipe.scheduler = loaded.own_scheduler
    else:
        check_request(loaded.settings.model_id, scheduler=name)  # refuses a scheduler the family cannot use
        loaded.pipe.scheduler = build_scheduler(name, loaded.own_scheduler.config)
    loaded.scheduler = name
    return loaded


# ---------------------------------------------------------------------------------------------- sampling


def sample(
    loaded: LoadedPipeline,
    settings: GenerationSettings,
    *,
    prompt: str,
    seed: int,
    progress: bool = True,
) -> list[tuple[int, Image.Image, float]]:
    """``settings.num_images`` images of ``prompt`` from ``loaded`` (its scheduler set to ``settings.scheduler``).

    Image ``i`` is one pipeline call with ``torch.Generator("cpu").manual_seed(seed + i)``, so it does not depend
    on how many images were asked for, and the same seed gives the same image on every device.

    Returns:
        ``[(seed + i, image, wall seconds)]``, PIL images of ``settings.height`` × ``settings.width``.
    """
    if settings.source != loaded.settings.source:
        raise CourseError(f"the pipeline holds {loaded.settings.model_id}, the settings are for {settings.model_id}")
    check_prompt(settings, prompt)
    _check_seed(seed)
    set_scheduler(loaded, settings.scheduler)
    out = []
    for i in range(settings.num_images):
        loaded.pipe.set_progress_bar_config(disable=not progress, desc=f"image {i + 1}/{settings.num_images}")
        started = time.perf_counter()
        image = loaded.pipe(
            prompt=prompt,
            negative_prompt=settings.negative_prompt,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance_scale,
            height=settings.height,
            width=settings.width,
            generator=torch.Generator(device="cpu").manual_seed(seed + i),
            output_type="pil",
        ).images[0]
        out.append((seed + i, image, time.perf_counter() - started))
    return out


def sample_batch(
    loaded: LoadedPipeline,
    settings: GenerationSettings,
    *,
    prompts: Sequence[str],
    seeds: Sequence[int],
    batch_size: int = 64,
) -> tuple[list[Image.Image], float]:
    """One image per ``(prompts[i], seeds[i])``, in pipeline calls of up to ``batch_size`` images.

    Image ``i`` draws its noise from its own ``torch.Generator("cpu").manual_seed(seeds[i])`` (diffusers takes a list
    of generators, one per image, for the initial latents and every ancestral step), so it is the image a
    :func:`sample` call with that seed makes, up to the last bits of batched arithmetic — many times faster for
    small models, whose cost per call is mostly overhead.

    Returns:
        the PIL images, and the wall seconds per image.
    """
    if settings.source != loaded.settings.source:
        raise CourseError(f"the pipeline holds {loaded.settings.model_id}, the settings are for {settings.model_id}")
    if len(prompts) != len(seeds) or not prompts:
        raise CourseError(f"sample_batch needs one seed per prompt, got {len(prompts)} prompts and {len(seeds)} seeds")
    if batch_size < 1:
        raise CourseError(f"batch_size must be at least 1, got {batch_size}")
    for prompt in dict.fromkeys(prompts):
        check_prompt(settings, prompt)
    for seed in seeds:
        _check_seed(seed)
    set_scheduler(loaded, settings.scheduler)
    loaded.pipe.set_progress_bar_config(disable=True)
    images: list[Image.Image] = []
    started = time.perf_counter()
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        images += loaded.pipe(
            prompt=chunk,
            negative_prompt=None if settings.negative_prompt is None else [settings.negative_prompt] * len(chunk),
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance_scale,
            height=settings.height,
            width=settings.width,
            generator=[torch.Generator(device="cpu").manual_seed(s) for s in seeds[start : start + batch_size]],
            output_type="pil",
        ).images
    return images, (time.perf_counter() - started) / len(prompts)


def _slug(text: str, *, limit: int = 60) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return slug or "empty"


def image_stem(settings: GenerationSettings, *, prompt: str, seed: int) -> str:
    """A stable, filesystem-safe file stem naming what varies in the course's studies: prompt, model, scheduler,
    guidance, steps, size, a hash of the negative prompt, and the image's seed, e.g.
    ``a-large-red-circle_shapes-sd_ddim_g7.5_n25_32x32_seed0``."""
    import hashlib

    model = _slug(settings.model_id.rstrip("/").rsplit("/", 1)[-1], limit=40)
    parts = [_slug(prompt), model, settings.scheduler, f"g{settings.guidance_scale:g}", f"n{settings.steps}"]
    parts.append(f"{settings.height}x{settings.width}")
    if settings.negative_prompt is not None:
        parts.append("neg-" + hashlib.sha1(settings.negative_prompt.encode()).hexdigest()[:8])
    return "_".join([*parts, f"seed{seed}"])


def _versions() -> dict[str, str]:
    return {
        "course_utils": course_utils.__version__,
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def generate(request: GenerateRequest, *, pipeline: LoadedPipeline | None = None, progress: bool = True) -> list[Path]:
    """Check ``request``, load its pipeline (or use ``pipeline``), write each image and its sidecar; return the PNGs.

    Prints each warning (``WARNING: …``, stderr) before loading, then one line per written file (stdout).

    Raises:
        CourseError: one line, before any weight loads (see :func:`prepare_request`), or for a model that cannot
            be loaded, or a ``pipeline`` of another model or memory plan than the request asks for.
    """
    # 1) check everything, warn
    prepared = prepare_request(request)
    settings, plan = prepared.settings, prepared.plan
    for warning in prepared.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    output_dir = Path(request.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise CourseError(f"output_dir {output_dir} exists and is not a folder")
    # 2) the pipeline: load, or reuse one of the same model and plan
    if pipeline is None:
        pipeline = load_pipeline(settings, plan=plan, token=request.token)
    else:
        if pipeline.settings.source != settings.source:
            raise CourseError(
                f"the pipeline holds {pipeline.settings.model_id}, the request asks for {request.model_id}"
            )
        asked = {k: getattr(request, k) for k in ("dtype", "attention_slicing", "cpu_offload", "vae_tiling")}
        if (any(v is not None for v in asked.values()) or request.device != "auto") and plan != pipeline.plan:
            raise CourseError(
                f"the pipeline was loaded with another memory plan ({pipeline.plan.cpu_offload} offload,"
                f" {pipeline.plan.dtype} on {pipeline.plan.device}); call load_pipeline again to change it"
            )
        plan = pipeline.plan
    # 3) sample and write
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed, image, seconds in sample(pipeline, settings, prompt=request.prompt, seed=request.seed, progress=progress):
        stem = image_stem(settings, prompt=request.prompt, seed=seed)
        png, sidecar = output_dir / f"{stem}.png", output_dir / f"{stem}.json"
        image.save(png)
        record = {
            "image": png.name,
            "prompt": request.prompt,
            "negative_prompt": settings.negative_prompt,
            "model_id": settings.model_id,
            "source": settings.source,
            "family": settings.family,
            "pipeline_class": type(pipeline.pipe).__name__,
            "scheduler": settings.scheduler,
            "scheduler_class": type(pipeline.pipe.scheduler).__name__,
            "guidance_scale": settings.guidance_scale,
            "num_inference_steps": settings.steps,
            "seed": seed,
            "base_seed": request.seed,
            "image_index": seed - request.seed,
            "num_images": settings.num_images,
            "height": settings.height,
            "width": settings.width,
            "dtype": plan.dtype,
            "device": plan.device,
            "memory_plan": plan.record(),
            "settings": settings.record(),
            "requested": request.record(),
            "warnings": list(prepared.warnings),
            "versions": _versions(),
            "wall_seconds": round(seconds, 3),
        }
        sidecar.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {png}")
        print(f"wrote {sidecar}")
        paths.append(png)
    return paths
