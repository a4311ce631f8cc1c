"""Parameter profiles: ``offline`` (the course's own models and bundled data, any CPU) and ``gpu``
(the real Hub models). A notebook switches with one papermill parameter, ``profile``.
"""

from __future__ import annotations

from dataclasses import dataclass

from course_utils.errors import check_choice

__all__ = ["PROFILES", "Profile", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """Which model plays each role, and where it runs.

    Attributes:
        name: ``offline`` or ``gpu``.
        denoiser: model id of the pixel-space denoiser used by the sampling-loop weeks.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps`` (see :func:`course_utils.runtime.resolve_device`).
        dtype: ``float32`` or ``float16``.
        prompts: example conditions for the denoiser: class names for the digits model, prompts for IF.
        image_size: side of the bundled photo as the denoiser sees it.
    """

    name: str
    denoiser: str
    device: str
    dtype: str
    prompts: tuple[str, ...]
    image_size: int
    description: str


PROFILES: dict[str, Profile] = {
    "offline": Profile(
        name="offline",
        denoiser="course/digits-ddpm",
        device="cpu",
        dtype="float32",
        prompts=("3", "7"),
        image_size=64,
        description="the course's own miniature models and bundled data; runs on any CPU without a network",
    ),
    "gpu": Profile(
        name="gpu",
        denoiser="DeepFloyd/IF-I-XL-v1.0",
        device="cuda",
        dtype="float16",
        prompts=("a high quality photo", "an oil painting of a snowy mountain village"),
        image_size=64,
        description="the real Hub models (DeepFloyd IF, Stable Diffusion) on a CUDA GPU with a Hub token",
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; an unknown name is a one-line error listing the valid ones."""
    check_choice("profile", name, PROFILES)
    return PROFILES[name]
