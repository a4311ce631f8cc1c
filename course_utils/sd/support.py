"""Which Stable Diffusion model takes which scheduler, and with which defaults: checked before any weights load.

Stable Diffusion 2.x (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models"), SDXL
(Podell et al. 2023) and the course's miniature model are trained with DDPM's discrete-time objective (Ho et al.
2020): the U-Net predicts ε (or ``v = √ᾱ_t ε − √(1−ᾱ_t) x_0``, SD 2.1's 768-px model) at one of T = 1000 noise
levels. Every sampler of that family integrates them, and diffusers swaps one for another from the saved scheduler
configuration (``Cls.from_config(pipe.scheduler.config)``):

======================  ===================================  ===============================================
short name              diffusers class                      method
======================  ===================================  ===============================================
``ddpm``                ``DDPMScheduler``                    ancestral sampling (Ho et al. 2020)
``ddim``                ``DDIMScheduler``                    deterministic, η = 0 (Song et al. 2021)
``pndm``                ``PNDMScheduler``                    pseudo linear multistep (Liu et al. 2022), PLMS only
``lms``                 ``LMSDiscreteScheduler``             linear multistep on σ (Karras et al. 2022's ODE)
``euler``               ``EulerDiscreteScheduler``           Euler on the probability-flow ODE (Karras et al. 2022)
``euler_a``             ``EulerAncestralDiscreteScheduler``  Euler with fresh noise each step (ancestral)
``heun``                ``HeunDiscreteScheduler``            Heun's 2nd order (Karras et al. 2022, Alg. 1)
``dpm++``               ``DPMSolverMultistepScheduler``      DPM-Solver++(2M) (Lu et al. 2022)
``unipc``               ``UniPCMultistepScheduler``          UniPC (Zhao et al. 2023)
``flow-match-euler``    ``FlowMatchEulerDiscreteScheduler``  Euler on a rectified flow (Esser et al. 2024)
``flow-match-heun``     ``FlowMatchHeunDiscreteScheduler``   Heun on a rectified flow
======================  ===================================  ===============================================

SD 3 / 3.5 (Esser et al. 2024, "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis") is
trained with rectified flow instead: ``x_t = (1 − t) x_0 + t ε`` and the transformer predicts the velocity
``ε − x_0``. Only flow-matching samplers integrate that, and the ε-samplers cannot read a velocity: diffusers' SD3
pipeline runs with a ``DDPMScheduler`` without a word and returns noise. So the matrix is checked here, in one
line, before anything is loaded (:func:`check_request`).

Turbo models (``sd-turbo``, ``sdxl-turbo``: adversarial diffusion distillation, Sauer et al. 2023;
``stable-diffusion-3.5-large-turbo``) are distilled to sample in 1–4 steps *without* classifier-free guidance:
they run at guidance 0, where a negative prompt has nothing to act on. Asking for either gives a warning, not an
error, and the sidecar of every image records it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FlowMatchHeunDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)

from course_utils.course.registry import MODELS, ResolvedModel, resolve
from course_utils.errors import CourseError

__all__ = [
    "DEFAULT_SCHEDULER",
    "FAMILY_DEFAULTS",
    "FLOW_MATCHING_FAMILIES",
    "HUB_SIZE_FACTORS",
    "MAX_STEPS",
    "MODEL_DEFAULTS",
    "PIPELINE_CLASSES",
    "SCHEDULERS",
    "SD_FAMILIES",
    "GenerationSettings",
    "ModelDefaults",
    "SchedulerSpec",
    "build_scheduler",
    "check_prompt",
    "check_request",
    "schedulers_for",
    "size_factor",
    "support_table",
]

DEFAULT_SCHEDULER = "default"
"""Keep the scheduler the model was saved with (its ``scheduler/scheduler_config.json``)."""

MAX_STEPS = 1000
"""T of every model here; DDPM and DDIM refuse more inference steps than training timesteps."""


@dataclass(frozen=True)
class SchedulerSpec:
    """A sampler by short name: its diffusers class, the configuration it overrides, and what it integrates.

    Attributes:
        name: the short name users write (``--scheduler``).
        cls: the diffusers scheduler class, built with ``cls.from_config(model_config, **overrides)``.
        overrides: settings that make the class the named method (e.g. DPM-Solver++ rather than DPM-Solver).
        flow_matching: integrates a rectified flow's velocity (SD3) rather than an ε/v-prediction model.
    """

    name: str
    cls: type
    overrides: dict[str, Any] = field(default_factory=dict)
    flow_matching: bool = False


SCHEDULERS: dict[str, SchedulerSpec] = {
    s.name: s
    for s in [
        SchedulerSpec("ddpm", DDPMScheduler),
        SchedulerSpec("ddim", DDIMScheduler),
        SchedulerSpec("pndm", PNDMScheduler, {"skip_prk_steps": True}),  # PLMS, as Stable Diffusion's own config
        SchedulerSpec("lms", LMSDiscreteScheduler),
        SchedulerSpec("euler", EulerDiscreteScheduler),
        SchedulerSpec("euler_a", EulerAncestralDiscreteScheduler),
        SchedulerSpec("heun", HeunDiscreteScheduler),
        SchedulerSpec("dpm++", DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
        SchedulerSpec("unipc", UniPCMultistepScheduler),
        SchedulerSpec("flow-match-euler", FlowMatchEulerDiscreteScheduler, flow_matching=True),
        SchedulerSpec("flow-match-heun", FlowMatchHeunDiscreteScheduler, flow_matching=True),
    ]
}
"""Short name → :class:`SchedulerSpec`; :data:`DEFAULT_SCHEDULER` (or ``None``) keeps the model's own."""

SD_FAMILIES = ("sd", "sdxl", "sd3", "course-sd")
"""The registry families this module (and ``python -m course_utils.sd.generate``) handles."""

FLOW_MATCHING_FAMILIES = frozenset({"sd3"})
"""Families trained with rectified flow; every other family here predicts ε or v."""

PIPELINE_CLASSES = {
    "sd": "StableDiffusionPipeline",
    "course-sd": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sd3": "StableDiffusion3Pipeline",
}
"""The diffusers pipeline class each family loads as (its ``model_index.json`` ``_class_name``)."""

HUB_SIZE_FACTORS = {"sd": 8, "sdxl": 8, "sd3": 16, "course-sd": 4}
"""Pixels per latent side for Hub ids, whose configs are not on disk: a 4-level VAE (8) for SD 2.x and SDXL; the
same VAE times the 2×2 patches of SD3's transformer (16); the course's 3-level VAE (4)."""


def schedulers_for(family: str) -> tuple[str, ...]:
    """The short names of the schedulers ``family`` accepts: flow-matching ones for SD3, the others otherwise."""
    flow = family in FLOW_MATCHING_FAMILIES
    return tuple(name for name, spec in SCHEDULERS.items() if spec.flow_matching == flow)


def build_scheduler(name: str, config: dict[str, Any]):
    """The scheduler ``name`` built from a model's scheduler ``config`` (its betas, prediction type, shift …)
    with the short name's overrides: ``SCHEDULERS[name].cls.from_config(config, **overrides)``."""
    spec = SCHEDULERS[name]
    return spec.cls.from_config(config, **spec.overrides)


# ---------------------------------------------------------------------------------------------- defaults


@dataclass(frozen=True)
class ModelDefaults:
    """What a model runs with when the user leaves a setting out.

    Attributes:
        steps: inference steps.
        guidance_scale: classifier-free guidance weight ``w`` (``ε̂ = ε_∅ + w (ε_c − ε_∅)``; ≤ 1 turns it off).
        height, width: pixels (the resolution the model was trained at).
        scheduler: a short name of :data:`SCHEDULERS`, or :data:`DEFAULT_SCHEDULER`.
        distilled: sampled without classifier-free guidance in a few steps (Turbo models).
        task: ``"text-to-image"``, or what else the weights are for (refused by text-to-image generation).
    """

    steps: int
    guidance_scale: float
    height: int
    width: int
    scheduler: str = DEFAULT_SCHEDULER
    distilled: bool = False
    task: str = "text-to-image"


MODEL_DEFAULTS: dict[str, ModelDefaults] = {
    "course/shapes-sd": ModelDefaults(25, 7.5, 32, 32, scheduler="ddim"),
    "stabilityai/stable-diffusion-2-1": ModelDefaults(50, 7.5, 768, 768),
    "stabilityai/stable-diffusion-2-1-base": ModelDefaults(50, 7.5, 512, 512),
    "stabilityai/stable-diffusion-2-inpainting": ModelDefaults(50, 7.5, 512, 512, task="inpainting"),
    "stabilityai/sd-turbo": ModelDefaults(1, 0.0, 512, 512, distilled=True),
    "stabilityai/stable-diffusion-xl-base-1.0": ModelDefaults(50, 5.0, 1024, 1024),
    "stabilityai/sdxl-turbo": ModelDefaults(1, 0.0, 512, 512, distilled=True),
    "stabilityai/stable-diffusion-3.5-medium": ModelDefaults(40, 4.5, 1024, 1024),
    "stabilityai/stable-diffusion-3.5-large-turbo": ModelDefaults(4, 0.0, 1024, 1024, distilled=True),
}
"""Per registry id (the model cards' recommended settings); local folders use :data:`FAMILY_DEFAULTS`."""

FAMILY_DEFAULTS: dict[str, ModelDefaults] = {
    "sd": MODEL_DEFAULTS["stabilityai/stable-diffusion-2-1-base"],
    "sdxl": MODEL_DEFAULTS["stabilityai/stable-diffusion-xl-base-1.0"],
    "sd3": MODEL_DEFAULTS["stabilityai/stable-diffusion-3.5-medium"],
    "course-sd": MODEL_DEFAULTS["course/shapes-sd"],
}
"""Steps, guidance and scheduler for a local folder of a family; its size comes from its own configs."""


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class GenerationSettings:
    """A checked text-to-image request for one model, every default filled in (prompt and seed excluded, so one
    settings object serves a sweep over prompts and seeds).

    Attributes:
        model_id: as the user wrote it (a registry id or a folder).
        source: what ``from_pretrained`` loads (a folder, a Hub id or its mirror).
        family: one of :data:`SD_FAMILIES`.
        pipeline_class: the diffusers pipeline class the folder must load as.
        scheduler: a short name of :data:`SCHEDULERS`, or :data:`DEFAULT_SCHEDULER`.
        steps, guidance_scale, height, width, num_images: what the pipeline is called with.
        negative_prompt: what the pipeline is given (``None`` where it would do nothing: distilled models).
        size_factor: pixels per latent side (× SD3's patch); ``size_multiple`` what height and width must divide by.
        distilled: a Turbo model (no classifier-free guidance).
        resolved: the registry's answer, for loading and for its gone-or-gated hint.
    """

    model_id: str
    source: str
    family: str
    pipeline_class: str
    scheduler: str
    steps: int
    guidance_scale: float
    height: int
    width: int
    num_images: int
    negative_prompt: str | None
    size_factor: int
    size_multiple: int
    distilled: bool
    resolved: ResolvedModel = field(repr=False, compare=False)

    def record(self) -> dict[str, Any]:
        """The settings as a JSON-able dict (for sidecars), without the registry object."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "resolved"}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except OSError as err:
        raise CourseError(f"cannot read {path}: {err.strerror or err}; is it a diffusers pipeline folder?") from err
    except ValueError as err:
        raise CourseError(f"cannot read {path}: not JSON ({err})") from err


def size_factor(resolved: ResolvedModel) -> int:
    """Pixels per latent side, times the transformer's patch size for SD3.

    For a local folder it is read from the configs: ``2^(len(vae/config.json block_out_channels) − 1)`` (each VAE
    level but the last halves the image), × ``transformer/config.json`` ``patch_size`` for SD3; for a Hub id it
    is :data:`HUB_SIZE_FACTORS`.
    """
    if not resolved.local:
        return HUB_SIZE_FACTORS[resolved.family]
    root = Path(resolved.source)
    factor = 2 ** (len(_read_json(root / "vae" / "config.json")["block_out_channels"]) - 1)
    if resolved.family in FLOW_MATCHING_FAMILIES:
        factor *= int(_read_json(root / "transformer" / "config.json").get("patch_size", 1))
    return factor


def _size_multiple(family: str, factor: int) -> int:
    """What height and width must divide by: the factor, and also 8 for the U-Net pipelines, whose
    ``check_inputs`` demands multiples of 8 whatever the VAE."""
    return factor if family in FLOW_MATCHING_FAMILIES else math.lcm(factor, 8)


def _local_default_size(resolved: ResolvedModel) -> int:
    """A local folder's native size: the denoiser's ``sample_size`` (latent side) × the VAE factor, as diffusers'
    pipelines compute it when no height is given."""
    root = Path(resolved.source)
    denoiser = "transformer" if resolved.family in FLOW_MATCHING_FAMILIES else "unet"
    sample_size = _read_json(root / denoiser / "config.json")["sample_size"]
    vae_factor = 2 ** (len(_read_json(root / "vae" / "config.json")["block_out_channels"]) - 1)
    return int(sample_size) * vae_factor


def _registered(resolved: ResolvedModel) -> ResolvedModel:
    """A folder that *is* a registered course model (``data/models/shapes-sd``) gets that model's id and family."""
    if resolved.entry is not None or not resolved.local:
        return resolved
    from course_utils.course import registry

    here = Path(resolved.source).resolve()
    for entry in MODELS.values():
        if entry.local is not None and (registry.MODELS_DIR / entry.local).resolve() == here:
            return ResolvedModel(entry.model_id, resolved.source, entry.family, local=True, entry=entry)
    return resolved


def _identify(model_id: str) -> tuple[ResolvedModel, ModelDefaults]:
    """Resolve ``model_id`` (registry id or folder), refuse families and tasks this module does not handle."""
    resolved = _registered(resolve(model_id))
    if resolved.family not in SD_FAMILIES:
        raise CourseError(
            f"{model_id} belongs to the {resolved.family!r} family; text-to-image generation here takes the Stable"
            f" Diffusion families: {', '.join(SD_FAMILIES)}"
        )
    key = resolved.entry.model_id if resolved.entry is not None else None
    defaults = MODEL_DEFAULTS.get(key) if key else None
    if defaults is None:
        family = FAMILY_DEFAULTS[resolved.family]
        size = _local_default_size(resolved) if resolved.local else family.height
        defaults = ModelDefaults(family.steps, family.guidance_scale, size, size, scheduler=family.scheduler)
    if defaults.task != "text-to-image":
        raise CourseError(
            f"{model_id} is an {defaults.task} model, not text-to-image; use it through course_utils.sampling.editing"
        )
    return resolved, defaults


def _kind(family: str) -> str:
    return "flow matching" if family in FLOW_MATCHING_FAMILIES else "ε/v-prediction"


def _check_scheduler(name: str | None, *, model_id: str, family: str, default: str) -> str:
    if name is None or name == DEFAULT_SCHEDULER:
        return default
    valid = schedulers_for(family)
    if name not in SCHEDULERS:
        raise CourseError(
            f"unknown scheduler {name!r}; valid schedulers for {model_id} ({family}, {_kind(family)}):"
            f" {', '.join(valid)} (or {DEFAULT_SCHEDULER!r}: the model's own)"
        )
    if name not in valid:
        raise CourseError(
            f"scheduler {name!r} does not work with {model_id} ({family}, {_kind(family)}); valid schedulers:"
            f" {', '.join(valid)}"
        )
    return name


def _whole(kind: str, value: Any, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CourseError(f"{kind} must be a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise CourseError(f"{kind} must be {bound}, got {value}")
    return value


def _side(kind: str, value: Any, *, multiple: int, factor: int, model_id: str) -> int:
    _whole(kind, value, low=1)
    if value % multiple:
        below, above = value - value % multiple, value - value % multiple + multiple
        why = f"{factor} pixels per latent" + ("" if multiple == factor else "; the pipeline also needs multiples of 8")
        suggestion = f"{below} or {above}" if below else f"{above}"
        raise CourseError(f"{kind} {value} is not a multiple of {multiple} for {model_id} ({why}); try {suggestion}")
    return value


def check_prompt(settings: GenerationSettings, prompt: str | None, *, kind: str = "prompt") -> str:
    """``prompt`` if ``settings``' model can read it: a string; for the course model, only words of its
    vocabulary (:data:`course_utils.models.shapes_clip.CAPTION_WORDS`), which byte-pair encoding would otherwise
    split silently into pieces the model never saw, and no longer than its context."""
    if not isinstance(prompt, str):
        raise CourseError(f"{kind} must be a string, got {type(prompt).__name__}")
    if settings.family == "course-sd":
        from course_utils.models.shapes_clip import CAPTION_WORDS, MAX_LENGTH, unknown_words

        unknown = unknown_words(prompt)
        if unknown:
            raise CourseError(
                f"{kind} {prompt!r} has words {settings.model_id} does not know: {', '.join(map(repr, unknown))};"
                f" known words: {', '.join(CAPTION_WORDS)}"
            )
        if len(prompt.split()) > MAX_LENGTH - 2:
            raise CourseError(
                f"{kind} has {len(prompt.split())} words; {settings.model_id} reads at most {MAX_LENGTH - 2}"
            )
    return prompt


def check_request(
    model_id: str,
    *,
    prompt: str | None = None,
    scheduler: str | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    height: int | None = None,
    width: int | None = None,
    negative_prompt: str | None = None,
    num_images: int = 1,
) -> tuple[GenerationSettings, list[str]]:
    """Check a text-to-image request against the model's family and fill in its defaults, loading no weights.

    ``None`` means "the model's default" (:data:`MODEL_DEFAULTS`, else :data:`FAMILY_DEFAULTS` and the folder's
    configs). ``prompt`` (and ``negative_prompt``) are checked when given (:func:`check_prompt`).

    Returns:
        (the settings, warnings): each warning one line, for requests that run but not as asked (a negative
        prompt or guidance > 1 on a distilled model, a negative prompt with guidance off).

    Raises:
        CourseError: one line, for an unknown model or scheduler, a scheduler the family cannot use, steps outside
            1..1000, negative or non-finite guidance, a size not a multiple of the model's, ``num_images`` < 1,
            a prompt the model cannot read.
    """
    # 1) the model: family, defaults, how many pixels per latent
    resolved, defaults = _identify(model_id)
    family = resolved.family
    factor = size_factor(resolved)
    multiple = _size_multiple(family, factor)
    # 2) the scheduler against the family's kind
    scheduler = _check_scheduler(scheduler, model_id=model_id, family=family, default=defaults.scheduler)
    # 3) the numbers
    # SD's ε-schedulers count their timesteps from steps_offset = 1 ("leading" spacing), so 1000 steps would ask
    # for timestep 1000 of 0 … 999; 999 is the most a discrete-time model can take.
    most = MAX_STEPS if family in FLOW_MATCHING_FAMILIES else MAX_STEPS - 1
    steps = _whole("steps", defaults.steps if steps is None else steps, low=1, high=most)
    num_images = _whole("num_images", num_images, low=1)
    guidance = defaults.guidance_scale if guidance_scale is None else guidance_scale
    if isinstance(guidance, bool) or not isinstance(guidance, int | float) or not math.isfinite(guidance):
        raise CourseError(f"guidance_scale must be a finite number, got {guidance!r}")
    if guidance < 0:
        raise CourseError(f"guidance_scale must be ≥ 0 (≤ 1 turns classifier-free guidance off), got {guidance}")
    height = _side(
        "height", defaults.height if height is None else height, multiple=multiple, factor=factor, model_id=model_id
    )
    width = _side(
        "width", defaults.width if width is None else width, multiple=multiple, factor=factor, model_id=model_id
    )
    # 4) what a distilled model or guidance off does with the rest
    warnings: list[str] = []
    if defaults.distilled and guidance > 1:
        warnings.append(
            f"{model_id} is distilled to sample without classifier-free guidance; guidance_scale {guidance:g} is"
            f" not used, it runs at {defaults.guidance_scale:g}"
        )
        guidance = defaults.guidance_scale
    if negative_prompt is not None and defaults.distilled:
        warnings.append(
            f"{model_id} is distilled to sample without classifier-free guidance; the negative prompt does nothing"
            " and is dropped"
        )
        negative_prompt = None
    elif negative_prompt is not None and guidance <= 1:
        warnings.append(
            f"the negative prompt does nothing at guidance_scale {guidance:g} (classifier-free guidance is off at ≤ 1)"
        )
    settings = GenerationSettings(
        model_id=model_id,
        source=resolved.source,
        family=family,
        pipeline_class=PIPELINE_CLASSES[family],
        scheduler=scheduler,
        steps=steps,
        guidance_scale=float(guidance),
        height=height,
        width=width,
        num_images=num_images,
        negative_prompt=negative_prompt,
        size_factor=factor,
        size_multiple=multiple,
        distilled=defaults.distilled,
        resolved=resolved,
    )
    # 5) the prompts
    if prompt is not None:
        check_prompt(settings, prompt)
    if negative_prompt is not None:
        check_prompt(settings, negative_prompt, kind="negative prompt")
    return settings, warnings


def support_table() -> list[dict[str, Any]]:
    """The support matrix as rows, one per text-to-image model the registry knows (no weights loaded): model id,
    family, pipeline class, default scheduler, steps, guidance, size, distilled, and the schedulers it accepts."""
    rows = []
    for model_id, defaults in MODEL_DEFAULTS.items():
        if defaults.task != "text-to-image":
            continue
        family = MODELS[model_id].family
        rows.append(
            {
                "model": model_id,
                "family": family,
                "pipeline": PIPELINE_CLASSES[family],
                "default scheduler": defaults.scheduler,
                "steps": defaults.steps,
                "guidance": defaults.guidance_scale,
                "size": f"{defaults.height}×{defaults.width}",
                "distilled": defaults.distilled,
                "schedulers": ", ".join(schedulers_for(family)),
            }
        )
    return rows
