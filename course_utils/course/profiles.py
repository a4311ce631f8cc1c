"""Parameter profiles: ``offline`` (the course's own models and bundled data, any CPU) and ``gpu``
(the real Hub models). A notebook switches with one papermill parameter, ``profile``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from course_utils.errors import check_choice

__all__ = ["MODEL_FIELDS", "PROFILES", "Profile", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """Which model plays each role, and where it runs.

    Attributes:
        name: ``offline`` or ``gpu``.
        denoiser: model id of the pixel-space denoiser used by the sampling-loop weeks.
        text_to_image: model id of the Stable Diffusion model the SD weeks generate with.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps`` (see :func:`course_utils.runtime.resolve_device`).
        dtype: ``float32`` or ``float16``.
        prompts: conditions to sample from: shapes captions for the course's pixel-space shapes model, prompts for IF.
        denoise_prompt: the condition used when denoising a given image (``None``: unconditional).
        image_size: side of the bundled photo as the denoiser sees it.
        examples: conditions per week-2 technique (``img2img`` prompt, ``inpaint`` prompt or ``None`` for
            unconditional inpainting, ``anagram`` pairs with their view, ``hybrid`` pairs as (low frequencies, high
            frequencies)) and ``judged``: the ``denoiser`` and ``prompts`` of the techniques judged by reading the
            condition in the samples (guidance, image-to-image, anagrams, hybrids), or ``None`` for ``denoiser``
            and ``prompts`` themselves; for the Stable Diffusion week the models it
            compares (``sd_models``), its prompts (``sd_prompts``: name → prompt), the ``negative_prompt`` of the
            negative-prompt study, and ``two_stage``: a (stage I, stage II) pair of model ids or ``None``; for the
            from-scratch week, ``from_scratch``: the ``dataset`` its networks train on (a name of
            :data:`course_utils.data.hub_datasets.NAMES`) and the ``image_size`` they see; for the synthetic-data week,
            ``synthetic``: its ``input`` titles, ``captioner``, ``negative_prompt`` and the ``fillers`` of its grid (a
            profile of :data:`course_utils.synthetic.grids.FILLER_CATEGORIES`).
    """

    name: str
    denoiser: str
    text_to_image: str
    device: str
    dtype: str
    prompts: tuple[str, ...]
    denoise_prompt: str | None
    image_size: int
    description: str
    examples: Mapping[str, Any]

    def override(self, **values: object) -> Profile:
        """A copy with the given fields replaced; ``None`` values keep the profile's own setting.

        Notebooks expose ``denoiser``, ``device`` and ``dtype`` parameters (default ``None``) this way,
        so one run can point the ``gpu`` code path at another model or device.
        """
        names = [f.name for f in fields(self)]
        for key in values:
            check_choice("profile field", key, names)
        if values.get("device") == "cpu" and values.get("dtype") is None:
            values = {**values, "dtype": "float32"}  # the profile's float16 is a GPU setting
        return replace(self, **{k: v for k, v in values.items() if v is not None})


MODEL_FIELDS = ("denoiser", "text_to_image")
"""The profile fields that name a model id (checked against the registry before a run starts)."""

PROFILES: dict[str, Profile] = {
    "offline": Profile(
        name="offline",
        denoiser="course/shapes-if",
        text_to_image="course/shapes-sd",
        device="cpu",
        dtype="float32",
        prompts=(
            "a large red circle on the left on a grey background",
            "a small blue square at the top on a black background",
            "a large yellow triangle in the centre on a beige background",
            "a large green plus on the right on a grey background",
        ),
        denoise_prompt=None,
        image_size=64,
        description="the course's own miniature models and bundled data; runs on any CPU without a network",
        examples={
            # guidance, image-to-image, anagrams and hybrids are judged by reading the condition in the sample; the
            # shapes model's samples show every attribute they name too rarely for that (its card: adherence 0.6 at
            # w = 7.5), so those lessons run on the digits model, whose samples the digit classifier reads
            "judged": {"denoiser": "course/digits-ddpm", "prompts": [str(d) for d in range(10)]},
            "img2img": "8",
            "inpaint": "a large blue square on the left",
            "anagram": [["6", "9", "rot180"], ["2", "5", "flip_horizontal"]],
            "hybrid": [["9", "0"], ["8", "4"]],
            "sd_models": ["course/shapes-sd"],
            "sd_prompts": {
                "scene": "a large red circle left of a small blue square on a grey background",
                "object": "a small yellow triangle at the top on a black background",
                "open": "a large plus in the centre on a beige background",
            },
            "negative_prompt": "white",
            "two_stage": None,
            "from_scratch": {"dataset": "digits", "image_size": 8},
            "synthetic": {
                "input": "data/synthetic/shapes_concepts.csv",
                "captioner": "template",
                "negative_prompt": None,
                "fillers": "offline",
            },
        },
    ),
    "gpu": Profile(
        name="gpu",
        denoiser="DeepFloyd/IF-I-XL-v1.0",
        text_to_image="stabilityai/stable-diffusion-2-1",
        device="cuda",
        dtype="float16",
        prompts=("an oil painting of a snowy mountain village", "a man wearing a hat", "a rocket ship"),
        denoise_prompt="a high quality photo",
        image_size=64,
        description="the real Hub models (DeepFloyd IF, Stable Diffusion) on a CUDA GPU with a Hub token",
        examples={
            "judged": None,
            "img2img": "a rocket ship",
            "inpaint": None,
            "anagram": [
                ["an oil painting of an old man", "an oil painting of people around a campfire", "flip_vertical"]
            ],
            "hybrid": [["a lithograph of a skull", "a lithograph of waterfalls"]],
            "sd_models": [
                "stabilityai/stable-diffusion-2-1",
                "stabilityai/stable-diffusion-xl-base-1.0",
                "stabilityai/sd-turbo",
                "stabilityai/sdxl-turbo",
                "stabilityai/stable-diffusion-3.5-medium",
                "stabilityai/stable-diffusion-3.5-large-turbo",
            ],
            "sd_prompts": {
                "scene": "Fruit Salad with Fennel, Watercress, and Smoked Salt",
                "object": "Tuscan Porterhouse Steak with Red Wine-Peppercorn Jus",
                "open": "Almond Horchata",
            },
            "negative_prompt": "blurry,unrealistic,low resolution, overexposed, unnatural colors",
            "two_stage": ["DeepFloyd/IF-I-XL-v1.0", "DeepFloyd/IF-II-L-v1.0"],
            "from_scratch": {"dataset": "mnist", "image_size": 28},
            "synthetic": {
                "input": "data/synthetic/dish_titles.csv",
                "captioner": "google/gemma-3-1b-it",
                "negative_prompt": "blurry,unrealistic,low resolution, overexposed, unnatural colors",
                "fillers": "gpu",
            },
        },
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; an unknown name is a one-line error listing the valid ones."""
    check_choice("profile", name, PROFILES)
    return PROFILES[name]
