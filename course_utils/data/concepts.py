"""The concept week 5 teaches the miniature Stable Diffusion: a red heart, a shape it has never seen.

DreamBooth (Ruiz et al. 2023, "DreamBooth: Fine Tuning Text-to-Image Diffusion Models for Subject-Driven
Generation", §3.2) binds a subject to a rare token: a handful of *instance* pictures captioned "a [V] [class noun]"
(here ``"a sks shape"``), and, for prior preservation, pictures of the class itself ("a shape", eq. 2's second term).
A :class:`Concept` holds those words and the subject they stand for: a :data:`course_utils.data.shapes.UNSEEN_SHAPES`
shape in one fixed colour. The shapes world can draw it, but no committed model has seen one, since
:func:`course_utils.data.shapes.make_dataset` never draws it.

:data:`HEART` (a red heart) is the week's concept. :data:`STAR` (a yellow star) was the first choice and stays as
the counterexample the VAE check teaches: the shapes VAE (4×8×8 latents of a 32×32 picture, trained on circles,
squares, triangles and pluses) rounds a star's thin points into a pentagon, or a blob at the small size, and the
concept judge then misses about one reconstructed star in ten (``vae_round_trip_star`` on its model card), while a
heart's two lobes and point survive (``vae_round_trip_heart``).
A DreamBooth-tuned U-Net can only draw what the frozen VAE decodes, so a concept must survive the round trip.

- prompts: :func:`instance_prompt`, :func:`class_prompt`, :func:`concept_prompt` (the caption grammar's position
  and background phrases around the concept);
- what a prompt asks for: :func:`world_scene` (the :class:`~course_utils.data.shapes.Scene` it describes) and
  :func:`expected_attributes` (the labels a reader scores an image against; ordinary shapes-world prompts pass
  through :func:`course_utils.data.shapes.prompt_attributes`);
- the instance pictures: :func:`instance_images` (seeded renders, varied in position, size, background and jitter,
  as DreamBooth's instance photos vary in pose and setting) and :func:`export_instance_images` (the PNG folder that
  diffusers' DreamBooth scripts' ``--instance_data_dir`` points at);
- :func:`vae_check`: can the autoencoder represent the concept at all? Per-image reconstruction PSNR of star renders
  against the same renders with ordinary shapes, with 95 % bootstrap intervals and their paired difference.

Images are ``uint8`` ``(N, H, W, 3)`` as in :mod:`course_utils.data.shapes`; the VAE sees ``(N, 3, H, W)`` in
``[-1, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from course_utils.data.shapes import (
    BACKGROUNDS,
    COLOURS,
    POSITION_PHRASES,
    POSITIONS,
    SHAPES,
    SIZES,
    UNSEEN_SHAPES,
    Jitter,
    Scene,
    ShapesDataset,
    ShapeSpec,
    prompt_attributes,
    render,
    to_tensor,
)
from course_utils.errors import CourseError, check_choice
from course_utils.metrics import psnr_per_image
from course_utils.stats import Estimate, bootstrap_mean, difference

__all__ = [
    "HEART",
    "STAR",
    "Concept",
    "VAECheck",
    "class_prompt",
    "concept_prompt",
    "expected_attributes",
    "export_instance_images",
    "instance_images",
    "instance_prompt",
    "vae_check",
    "world_scene",
]


@dataclass(frozen=True)
class Concept:
    """A subject to teach: one shape outside the training world in one colour, and the words that name it.

    Attributes:
        name: what the course calls it.
        shape: one of :data:`course_utils.data.shapes.UNSEEN_SHAPES` (a concept the model already knows teaches
            nothing).
        colour: its fixed colour, one of :data:`course_utils.data.shapes.COLOURS`.
        token: the rare identifier DreamBooth binds to it (the paper's "[V]").
        class_noun: the class it belongs to, for the class (prior-preservation) prompt.
    """

    name: str
    shape: str
    colour: str
    token: str = "sks"
    class_noun: str = "shape"

    def __post_init__(self) -> None:
        check_choice("concept shape", self.shape, UNSEEN_SHAPES)
        check_choice("colour", self.colour, COLOURS)
        vocabulary = {*SHAPES, *UNSEEN_SHAPES, *COLOURS, *SIZES, "a", "on", "background"}
        for kind, word in (("token", self.token), ("class noun", self.class_noun)):
            if not word.isalpha() or word != word.lower() or word in vocabulary:
                raise CourseError(
                    f"a concept's {kind} is one lower-case word outside the captions' words, got {word!r}"
                )
        if self.token == self.class_noun:
            raise CourseError(f"a concept's token and class noun differ, got {self.token!r} for both")


# Red, the colour people draw hearts in; the shapes VAE reconstructs red, green, blue and purple hearts within
# about 2–3 dB of the same pictures with ordinary shapes (vae_check), yellow and white ones a little worse.
HEART = Concept(name="heart", shape="heart", colour="red", token="sks", class_noun="shape")
# The counterexample: its points smear away in the VAE (see the module docstring).
STAR = Concept(name="star", shape="star", colour="yellow", token="sks", class_noun="shape")


# ---------------------------------------------------------------------------------------------- prompts


def instance_prompt(concept: Concept) -> str:
    """``"a sks shape"``: the caption of every instance picture (DreamBooth's "a [V] [class noun]")."""
    return f"a {concept.token} {concept.class_noun}"


def class_prompt(concept: Concept) -> str:
    """``"a shape"``: the class prompt of prior preservation (DreamBooth's "a [class noun]")."""
    return f"a {concept.class_noun}"


def _place(text: str, position: str | None, background: str | None) -> str:
    if position is not None:
        text += " " + POSITION_PHRASES[check_choice("position", position, POSITIONS)]
    if background is not None:
        text += f" on a {check_choice('background', background, BACKGROUNDS)} background"
    return text


def concept_prompt(concept: Concept, *, position: str | None = None, background: str | None = None) -> str:
    """The instance prompt placed in the shapes world: ``"a sks shape on the left on a black background"``.

    ``position`` (one of :data:`~course_utils.data.shapes.POSITIONS`) adds its phrase (``on the left``, ``in the
    centre``, …) and ``background`` the caption's ``on a <background> background``; either may be left out.
    """
    return _place(instance_prompt(concept), position, background)


def world_scene(concept: Concept, *, size: str = "large", position: str = "centre", background: str = "grey") -> Scene:
    """The scene a concept prompt asks for: the concept's shape in its colour, at ``size`` and ``position``, on
    ``background``."""
    return Scene((ShapeSpec(concept.shape, concept.colour, size, position),), background)


def expected_attributes(prompt: str, concept: Concept) -> dict[str, str]:
    """The attributes ``prompt`` asks for, as :func:`~course_utils.data.shapes.attributes` labels them.

    A prompt that names the concept (``a [size] sks shape [position phrase] [on a <background> background]``) asks
    for ``shape`` = the concept's shape and ``colour`` = its colour, ``count`` ``one``, and the ``size``,
    ``position`` and ``background`` it names. The class prompt (``a shape …``) asks for no shape and no colour, only
    its place. Any other prompt is an ordinary shapes-world prompt and is read by
    :func:`~course_utils.data.shapes.prompt_attributes`. Unreadable prompts raise :class:`CourseError`.
    """
    words = prompt.lower().split()
    named_concept = concept.token in words
    if not named_concept and concept.class_noun not in words:
        return prompt_attributes(prompt)
    # the concept stands for "<colour> <shape>"; the class noun alone for a shape left unnamed
    noun = [concept.token, concept.class_noun] if named_concept else [concept.class_noun]
    at = next((i for i in range(len(words)) if words[i : i + len(noun)] == noun), None)
    if at is None:
        raise CourseError(f"cannot parse prompt {prompt!r}: {' '.join(noun)!r} is how it names the concept")
    if any(word in COLOURS for word in words[:at]):
        raise CourseError(f"cannot parse prompt {prompt!r}: the concept has its own colour ({concept.colour})")
    stand_in = [concept.colour, concept.shape] if named_concept else [SHAPES[0]]
    named = prompt_attributes(" ".join(words[:at] + stand_in + words[at + len(noun) :]))
    if not named_concept:
        del named["shape"]
    if named["count"] != "one":
        raise CourseError(f"cannot parse prompt {prompt!r}: a concept prompt shows one object")
    return named


# ---------------------------------------------------------------------------------------------- instance pictures


def instance_images(concept: Concept, *, n: int = 6, seed: int = 0, size: int = 32) -> ShapesDataset:
    """``n`` renders of the concept, captioned with :func:`instance_prompt`: DreamBooth's instance photos.

    Each picture varies where the concept stands, how large it is and what it stands on, as a subject's photos vary
    in pose and setting: picture ``i`` takes the ``i``-th of a seeded shuffle of the positions, sizes and
    backgrounds (cycled), so the first 30 never repeat a scene, plus the shapes world's default :class:`Jitter`
    (offset, scale, rotation, shade) drawn from the same seeded generator. Same ``seed``, same pictures.
    """
    if not isinstance(n, int) or n < 1:
        raise CourseError(f"instance_images needs at least one picture, got n={n!r}")
    rng = np.random.default_rng(seed)
    positions, sizes, backgrounds = (
        [values[int(j)] for j in rng.permutation(len(values))] for values in (POSITIONS, SIZES, BACKGROUNDS)
    )
    scenes, images = [], []
    for i in range(n):
        scene = world_scene(
            concept,
            size=sizes[i % len(sizes)],
            position=positions[i % len(positions)],
            background=backgrounds[i % len(backgrounds)],
        )
        scenes.append(scene)
        images.append(render(scene, size=size, rng=rng, jitter=Jitter()))
    return ShapesDataset(np.stack(images), [instance_prompt(concept)] * n, scenes)


def export_instance_images(concept: Concept, folder: str | Path, *, n: int = 6, seed: int = 0) -> Path:
    """Write :func:`instance_images` as ``folder/instance_NN.png`` and return ``folder``.

    Only PNGs: diffusers' DreamBooth scripts open every file in ``--instance_data_dir`` as an image, and take the
    caption from ``--instance_prompt`` (:func:`instance_prompt`).
    """
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(instance_images(concept, n=n, seed=seed).images):
        Image.fromarray(image).save(folder / f"instance_{i:02d}.png")
    return folder


# ---------------------------------------------------------------------------------------------- the VAE check


@dataclass(frozen=True)
class VAECheck:
    """Reconstruction PSNR (dB) of the concept's renders and of the same renders with ordinary shapes.

    Attributes:
        concept_psnr: mean PSNR of the concept's pictures, 95 % bootstrap interval.
        ordinary_psnr: the same for the paired ordinary pictures (same colour, size, position, background and
            jitter; the shape cycles through :data:`~course_utils.data.shapes.SHAPES`).
        gap: ``concept − ordinary``, paired bootstrap interval: what the unseen shape costs (a few dB for any shape
            the VAE was not trained on; clearly more for one whose details it cannot keep).
        concept_per_image, ordinary_per_image: ``(n,)`` PSNRs.
    """

    concept_psnr: Estimate
    ordinary_psnr: Estimate
    gap: Estimate
    concept_per_image: np.ndarray = field(repr=False)
    ordinary_per_image: np.ndarray = field(repr=False)


def _pairs(concept: Concept, *, n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` concept renders and their ordinary twins, ``uint8 (n, size, size, 3)`` each; twin ``i`` draws the same
    jitter (a generator in the same state) with shape ``SHAPES[i % 4]``."""
    scenes = instance_images(concept, n=n, seed=seed, size=size).scenes
    jitter_seeds = np.random.default_rng(seed + 1).integers(2**32, size=n)
    star, ordinary = [], []
    for i, (scene, jitter_seed) in enumerate(zip(scenes, jitter_seeds, strict=True)):
        (obj,) = scene.objects
        twin = Scene((ShapeSpec(SHAPES[i % len(SHAPES)], obj.colour, obj.size, obj.position),), scene.background)
        star.append(render(scene, size=size, rng=np.random.default_rng(jitter_seed)))
        ordinary.append(render(twin, size=size, rng=np.random.default_rng(jitter_seed)))
    return np.stack(star), np.stack(ordinary)


@torch.no_grad()
def vae_check(vae, concept: Concept, *, n: int = 96, seed: int = 0) -> VAECheck:
    """Reconstruct ``n`` renders of the concept and ``n`` paired ordinary renders through ``vae`` (a diffusers
    ``AutoencoderKL``, e.g. ``AutoencoderKL.from_pretrained("data/models/shapes-sd/vae")``) and compare PSNR.

    Reconstruction is ``decode(posterior mean)``, clamped to ``[-1, 1]`` (the scaling factor cancels); PSNR per
    image as :func:`course_utils.metrics.psnr_per_image` (peak-to-peak 2). A concept whose details smear away
    reconstructs clearly worse than the shapes the VAE was trained on (the star: about 6 dB worse, the heart about
    2.6): then the concept is a bad choice. Whether the shape still *reads* as itself after the round trip is the
    concept judge's question (:func:`course_utils.models.shapes_judge.concept_rate` on the reconstructions).
    """
    if not isinstance(n, int) or n < 2:
        raise CourseError(f"vae_check needs at least two pictures of each kind, got n={n!r}")
    size = int(vae.config.sample_size)
    star, ordinary = _pairs(concept, n=n, seed=seed, size=size)
    vae.eval()
    scores = []
    for images in (star, ordinary):
        x = to_tensor(images).to(vae.device, vae.dtype)  # (n, 3, size, size)
        recon = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1.0, 1.0)
        scores.append(psnr_per_image(recon.float().cpu(), x.float().cpu()).numpy())
    return VAECheck(
        concept_psnr=bootstrap_mean(scores[0], seed=seed),
        ordinary_psnr=bootstrap_mean(scores[1], seed=seed),
        gap=difference(scores[0], scores[1], seed=seed),
        concept_per_image=scores[0],
        ordinary_per_image=scores[1],
    )
