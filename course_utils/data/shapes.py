"""A captioned "shapes" world: the seeded, offline data set behind the miniature Stable Diffusion.

Every image shows one or two flat shapes on a plain background, and its caption names every
attribute, so prompt adherence can be measured attribute by attribute::

    a small red circle on the left on a grey background
    a large blue square above a small yellow plus on a black background

Vocabulary (each a tuple constant): :data:`SHAPES`, :data:`COLOURS`, :data:`SIZES`, :data:`POSITIONS`,
:data:`BACKGROUNDS`, :data:`RELATIONS`. A single object sits at one of five positions; two objects sit
side by side (``left of`` / ``right of``) or one above the other (``above`` / ``below``), the first
named object at the position its relation implies. :func:`caption` and :func:`parse_caption` are exact
inverses; :func:`attributes` gives the ground-truth labels a classifier is scored against.

:data:`UNSEEN_SHAPES` (a five-pointed ``star``, a ``heart``) are drawn, captioned, parsed and masked like any shape,
but :func:`sample_scene` draws them only when asked (``shapes=SHAPES + UNSEEN_SHAPES``) and :func:`make_dataset`
never: no committed model has seen one, so week 5 can teach one as a new concept (:mod:`course_utils.data.concepts`).

Images are ``uint8`` arrays ``(H, W, 3)``, drawn at 4× and box-downsampled (anti-aliased).
:func:`render` without a generator draws the canonical picture of a scene; :func:`make_dataset`
passes its generator so that the pictures of one caption vary a little (:class:`Jitter`: offset, scale,
rotation, shade), which keeps text-to-image generation a distribution, not a lookup table.
:func:`to_tensor` turns them into the diffusion models' ``(N, 3, H, W)`` floats in ``[-1, 1]``.
:func:`object_masks` says which pixels each object covers (the fraction of each pixel, from the same polygons and
jitter draws as :func:`render`), so a measurement can ask what happens inside an object.

Exports: a Hugging Face ``imagefolder`` (PNGs plus ``metadata.jsonl``, read back by
:func:`load_imagefolder`) and COCO-style captions (PNGs plus ``captions.json``, readable by
``pycocotools.coco.COCO``), optionally with an ``instances.json`` whose categories are the shapes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from course_utils.errors import CourseError, check_choice

__all__ = [
    "ATTRIBUTES",
    "BACKGROUNDS",
    "BACKGROUND_RGB",
    "COLOURS",
    "COLOUR_RGB",
    "OMITTABLE",
    "POSITIONS",
    "POSITION_PHRASES",
    "RELATIONS",
    "RELATION_POSITIONS",
    "SHAPES",
    "SIZES",
    "UNSEEN_SHAPES",
    "as_image_tensor",
    "Jitter",
    "Scene",
    "ShapeSpec",
    "ShapesDataset",
    "attributes",
    "caption",
    "coco_instances",
    "export_coco",
    "export_imagefolder",
    "load_imagefolder",
    "make_dataset",
    "object_masks",
    "parse_caption",
    "prompt_attributes",
    "render",
    "sample_scene",
    "split_dataset",
    "to_tensor",
]

SHAPES = ("circle", "square", "triangle", "plus")
UNSEEN_SHAPES = ("star", "heart")  # drawable, never sampled: outside the world every committed model is trained on
_ALL_SHAPES = SHAPES + UNSEEN_SHAPES
COLOURS = ("red", "green", "blue", "yellow", "purple", "white")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom", "centre")
BACKGROUNDS = ("grey", "black", "beige")
RELATIONS = ("left of", "right of", "above", "below")

# Object colours are at least ~125 apart in RGB (closest: blue–purple); every background is at least
# ~110 from every object colour (closest: white on beige), so each object stands out and keeps its name.
COLOUR_RGB: MappingProxyType[str, tuple[int, int, int]] = MappingProxyType(
    {
        "red": (220, 30, 30),
        "green": (30, 170, 40),
        "blue": (40, 70, 230),
        "yellow": (240, 210, 20),
        "purple": (160, 40, 200),
        "white": (240, 240, 240),
    }
)
BACKGROUND_RGB: MappingProxyType[str, tuple[int, int, int]] = MappingProxyType(
    {"grey": (120, 120, 120), "black": (15, 15, 15), "beige": (205, 190, 150)}
)
POSITION_PHRASES: MappingProxyType[str, str] = MappingProxyType(
    {
        "left": "on the left",
        "right": "on the right",
        "top": "at the top",
        "bottom": "at the bottom",
        "centre": "in the centre",
    }
)
# The first and second object's positions for each relation ("A left of B": A on the left, B on the right).
RELATION_POSITIONS: MappingProxyType[str, tuple[str, str]] = MappingProxyType(
    {
        "left of": ("left", "right"),
        "right of": ("right", "left"),
        "above": ("top", "bottom"),
        "below": ("bottom", "top"),
    }
)

# Ground-truth label names → valid values; the first (or only) object is unsuffixed, the second has ``_2``.
ATTRIBUTES: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "shape": SHAPES,
        "colour": COLOURS,
        "size": SIZES,
        "position": POSITIONS,
        "background": BACKGROUNDS,
        "count": ("one", "two"),
        "relation": RELATIONS,
        "shape_2": SHAPES,
        "colour_2": COLOURS,
        "size_2": SIZES,
        "position_2": tuple(p for p in POSITIONS if p != "centre"),  # a second object is never centred
    }
)

# What caption(scene, omit=...) may leave out of a prompt (the shape and a relation always stay).
OMITTABLE = ("size", "colour", "position", "background", "size_2", "colour_2")

# Geometry, in fractions of the image side (y grows downwards).
_CENTRES = {"left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75), "centre": (0.5, 0.5)}
_RADIUS = {"small": 0.10, "large": 0.17}  # a circle's radius; other shapes are scaled to a similar footprint
_SUPERSAMPLE = 4
_CIRCLE_VERTICES = 96


@dataclass(frozen=True)
class ShapeSpec:
    """One object: its shape, colour, size and position (words from the tuple constants)."""

    shape: str
    colour: str
    size: str
    position: str = "centre"

    def __post_init__(self) -> None:
        check_choice("shape", self.shape, _ALL_SHAPES)
        check_choice("colour", self.colour, COLOURS)
        check_choice("size", self.size, SIZES)
        check_choice("position", self.position, POSITIONS)


@dataclass(frozen=True)
class Scene:
    """One or two objects on a background; two objects are tied by a ``relation`` their positions obey.

    Use :meth:`pair` to build a two-object scene without spelling out the positions.
    """

    objects: tuple[ShapeSpec, ...]
    background: str = "grey"
    relation: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.objects, ShapeSpec):
            object.__setattr__(self, "objects", (self.objects,))
        object.__setattr__(self, "objects", tuple(self.objects))
        check_choice("background", self.background, BACKGROUNDS)
        if not all(isinstance(o, ShapeSpec) for o in self.objects):
            raise CourseError("a scene's objects must be ShapeSpec instances")
        if len(self.objects) == 1:
            if self.relation is not None:
                raise CourseError(f"a one-object scene has no relation, got {self.relation!r}")
        elif len(self.objects) == 2:
            check_choice("relation", self.relation, RELATIONS)
            expected = RELATION_POSITIONS[self.relation]
            got = (self.objects[0].position, self.objects[1].position)
            if got != expected:
                raise CourseError(
                    f"relation {self.relation!r} puts the objects at {' and '.join(expected)}, not {' and '.join(got)}"
                )
        else:
            raise CourseError(f"a scene holds one or two objects, got {len(self.objects)}")

    @classmethod
    def pair(cls, first: ShapeSpec, second: ShapeSpec, *, relation: str, background: str = "grey") -> Scene:
        """``first`` ``relation`` ``second``, each moved to the position the relation implies."""
        check_choice("relation", relation, RELATIONS)
        p1, p2 = RELATION_POSITIONS[relation]
        return cls((replace(first, position=p1), replace(second, position=p2)), background, relation)


@dataclass(frozen=True)
class Jitter:
    """How much the pictures of one caption vary (each drawn uniformly in ``±`` the value).

    The limits keep every variation inside its name: at 32 pixels and up two large objects stay apart
    (separate blobs of clearly non-background pixels), a small object stays under half a large one's area,
    and every colour stays nearest its own name. ``Jitter.none()`` draws every scene canonically.

    Attributes:
        offset: shift of each object's centre, per axis, as a fraction of the image side.
        scale: relative change of each object's size.
        rotation: rotation of squares, triangles, pluses and stars, in degrees.
        shade: change of an object's brightness (all channels alike, 0–255 scale); each channel also moves by
            up to a quarter of it, a slight tint that leaves white white.
        background_shade: change of the background's brightness (all channels alike, 0–255 scale).
    """

    offset: float = 0.015
    scale: float = 0.06
    rotation: float = 10.0
    shade: int = 16
    background_shade: int = 8

    def __post_init__(self) -> None:
        limits = {"offset": 0.02, "scale": 0.08, "rotation": 12.0, "shade": 24, "background_shade": 15}
        for name, limit in limits.items():
            value = getattr(self, name)
            if not 0 <= value <= limit:
                raise CourseError(f"Jitter.{name} must lie in [0, {limit}], got {value}")

    @classmethod
    def none(cls) -> Jitter:
        """No variation: every picture of a scene is its canonical picture."""
        return cls(offset=0.0, scale=0.0, rotation=0.0, shade=0, background_shade=0)


@dataclass(frozen=True, eq=False)
class ShapesDataset:
    """Images with their captions and scenes, index-aligned.

    Attributes:
        images: ``uint8`` array ``(N, H, W, 3)``.
        captions: ``caption(scenes[i])`` for each image.
        scenes: the scene each image draws.
    """

    images: np.ndarray
    captions: list[str]
    scenes: list[Scene] = field(repr=False)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise CourseError(f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}")
        if not len(self.images) == len(self.captions) == len(self.scenes):
            raise CourseError(
                f"{len(self.images)} images, {len(self.captions)} captions and {len(self.scenes)} scenes: counts differ"
            )

    def __len__(self) -> int:
        return len(self.captions)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ShapesDataset:
        """The items at ``indices``, in that order."""
        idx = [int(i) for i in indices]
        return ShapesDataset(self.images[idx], [self.captions[i] for i in idx], [self.scenes[i] for i in idx])


# ---------------------------------------------------------------------------------------------- captions


def caption(scene: Scene, *, omit: Sequence[str] = ()) -> str:
    """The scene in words: ``a <size> <colour> <shape> <position phrase | relation a <size> <colour> <shape>>
    on a <background> background``.

    ``omit`` leaves words out (keys of :data:`OMITTABLE`: ``size``, ``colour``, ``position`` of a one-object
    scene, ``background``, and the second object's ``size_2``, ``colour_2``), giving the partial prompts people
    type ("a red circle"); :func:`prompt_attributes` reads them back. The shape and a relation always stay.
    """
    omit = set(omit)
    for key in omit:
        check_choice("omitted attribute", key, OMITTABLE)

    def noun(o: ShapeSpec, suffix: str = "") -> str:
        words = [o.size if "size" + suffix not in omit else "", o.colour if "colour" + suffix not in omit else ""]
        return " ".join(["a", *filter(None, words), o.shape])

    if len(scene.objects) == 1:
        only = scene.objects[0]
        middle = noun(only) + ("" if "position" in omit else f" {POSITION_PHRASES[only.position]}")
    else:
        first, second = scene.objects
        middle = f"{noun(first)} {scene.relation} {noun(second, '_2')}"
    return middle if "background" in omit else f"{middle} on a {scene.background} background"


class _Words:
    """A cursor over a caption's words that reports the first word it cannot read as one line."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.words = text.lower().split()
        self.i = 0

    def take(self, kind: str, valid: Sequence[str], *, plural: str | None = None, optional: bool = False) -> str | None:
        """The longest of the ``valid`` (possibly multi-word) phrases starting at the cursor; ``None`` if there is
        none and the phrase is ``optional``."""
        for phrase in sorted(valid, key=lambda p: -len(p.split())):
            n = len(phrase.split())
            if self.words[self.i : self.i + n] == phrase.split():
                self.i += n
                return phrase
        if optional:
            return None
        where = f"word {self.i + 1} is {self.words[self.i]!r}" if self.i < len(self.words) else "the caption ends"
        if len(valid) == 1:
            wanted = f"{valid[0]!r} is expected"
        else:
            wanted = f"a {kind} is expected; valid {plural or kind + 's'}: {', '.join(valid)}"
        raise CourseError(f"cannot parse caption {self.text!r}: {where} where {wanted}")

    def noun(self, *, optional: bool = False) -> tuple[str | None, str | None, str]:
        self.take("article", ["a"])
        size = self.take("size", SIZES, optional=optional)
        colour = self.take("colour", COLOURS, optional=optional)
        return size, colour, self.take("shape", _ALL_SHAPES)

    def end(self) -> None:
        if self.i < len(self.words):
            rest = " ".join(self.words[self.i :])
            raise CourseError(f"cannot parse caption {self.text!r}: unexpected words {rest!r} after 'background'")


def parse_caption(text: str) -> Scene:
    """The :class:`Scene` a caption describes; exact inverse of :func:`caption` (case and spacing are free).

    Raises :class:`CourseError` naming the first word it cannot read and the words valid there.
    """
    words = _Words(text)
    size, colour, shape = words.noun()
    phrase_to_position = {phrase: position for position, phrase in POSITION_PHRASES.items()}
    link = words.take(
        "position or relation", [*POSITION_PHRASES.values(), *RELATIONS], plural="positions and relations"
    )
    if link in RELATIONS:
        size2, colour2, shape2 = words.noun()
        objects = [ShapeSpec(shape, colour, size), ShapeSpec(shape2, colour2, size2)]
    else:
        objects = [ShapeSpec(shape, colour, size, phrase_to_position[link])]
    words.take("word", ["on"])
    words.take("word", ["a"])
    background = words.take("background", BACKGROUNDS)
    words.take("word", ["background"])
    words.end()
    if link in RELATIONS:
        return Scene.pair(*objects, relation=link, background=background)
    return Scene(tuple(objects), background)


def prompt_attributes(text: str) -> dict[str, str]:
    """The attributes a (possibly partial) prompt names, as :func:`attributes` labels them.

    Reads what ``caption(scene, omit=...)`` writes: any of the size, colour, position phrase and background
    may be missing. ``count`` is always named (one or two nouns); a relation names ``relation``, ``position``
    and ``position_2``. A full caption gives exactly ``attributes(parse_caption(text))``.
    """
    words = _Words(text)
    named: dict[str, str | None] = {}
    named["size"], named["colour"], named["shape"] = words.noun(optional=True)
    phrase_to_position = {phrase: position for position, phrase in POSITION_PHRASES.items()}
    link = words.take(
        "position or relation",
        [*POSITION_PHRASES.values(), *RELATIONS],
        plural="positions and relations",
        optional=True,
    )
    named["count"] = "two" if link in RELATIONS else "one"
    if link in RELATIONS:
        named["relation"] = link
        named["position"], named["position_2"] = RELATION_POSITIONS[link]
        named["size_2"], named["colour_2"], named["shape_2"] = words.noun(optional=True)
    elif link is not None:
        named["position"] = phrase_to_position[link]
    if words.i < len(words.words):
        words.take("word", ["on"])
        words.take("word", ["a"])
        named["background"] = words.take("background", BACKGROUNDS)
        words.take("word", ["background"])
    words.end()
    return {key: value for key, value in named.items() if value is not None}


def attributes(scene: Scene) -> dict[str, str]:
    """Ground-truth labels: ``shape``, ``colour``, ``size``, ``position``, ``background``, ``count``; for two
    objects also ``relation`` and the second object's ``shape_2``, ``colour_2``, ``size_2``, ``position_2``.

    Every value is one of ``ATTRIBUTES[key]``, but a ``shape`` or ``shape_2`` may also be one of :data:`UNSEEN_SHAPES`.
    """
    first = scene.objects[0]
    labels = {
        "shape": first.shape,
        "colour": first.colour,
        "size": first.size,
        "position": first.position,
        "background": scene.background,
        "count": ("one", "two")[len(scene.objects) - 1],
    }
    if len(scene.objects) == 2:
        second = scene.objects[1]
        labels.update(
            relation=str(scene.relation),
            shape_2=second.shape,
            colour_2=second.colour,
            size_2=second.size,
            position_2=second.position,
        )
    return labels


# ---------------------------------------------------------------------------------------------- pictures


def _outline(shape: str, radius: float) -> np.ndarray:
    """Polygon vertices ``(K, 2)`` of ``shape`` centred on the origin, for a circle of ``radius``."""
    if shape == "circle":
        a = np.linspace(0.0, 2 * math.pi, _CIRCLE_VERTICES, endpoint=False)
        return radius * np.stack([np.cos(a), np.sin(a)], axis=1)
    if shape == "square":
        h = 0.88 * radius  # about the circle's area
        return np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
    if shape == "triangle":
        r = 1.18 * radius  # circumradius; apex up, bounding box centred on the position
        a = np.radians([-90.0, 30.0, 150.0])
        return np.stack([r * np.cos(a), r * np.sin(a) + r / 4], axis=1)
    if shape == "plus":
        a, t = radius, 0.34 * radius  # plus: arm half-length and half-thickness
        return np.array(
            [[-t, -a], [t, -a], [t, -t], [a, -t], [a, t], [t, t], [t, a], [-t, a], [-t, t], [-a, t], [-a, -t], [-t, -t]]
        )
    if shape == "star":
        # five points up, alternating outer and inner vertices; the inner radius is half the outer (a stout star,
        # so its points survive 32 pixels); the points reach about as far as the triangle's, and the bounding box
        # is centred on the position (the lowest points sit at R·cos 36°, the apex at −R)
        r_outer, r_inner = 1.2 * radius, 0.6 * radius
        a = np.radians(-90.0 + 36.0 * np.arange(10))
        r = np.where(np.arange(10) % 2 == 0, r_outer, r_inner)
        shift = r_outer * (1 - math.cos(math.radians(36.0))) / 2
        return np.stack([r * np.cos(a), r * np.sin(a) + shift], axis=1)
    if shape == "heart":
        # the classic heart curve x = 16 sin³t, y = 13 cos t − 5 cos 2t − 2 cos 3t − cos 4t (y flipped: point down),
        # 1.15 radii wide on each side, bounding box centred on the position
        t = np.linspace(0.0, 2 * math.pi, _CIRCLE_VERTICES, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.stack([x, y - (y.max() + y.min()) / 2], axis=1) * (1.15 * radius / 16)
    raise CourseError(f"unknown shape {shape!r}; valid shapes: {', '.join(_ALL_SHAPES)}")


def _shade(rgb: tuple[int, int, int], delta: np.ndarray) -> tuple[int, int, int]:
    r, g, b = np.clip(np.asarray(rgb) + np.rint(delta), 0, 255).astype(int)
    return int(r), int(g), int(b)


@dataclass(frozen=True)
class _Layout:
    """What :func:`render` draws: the background colour and, per object, its polygon (in supersampled pixels) and
    colour, after the jitter draws."""

    background: tuple[int, int, int]
    polygons: tuple[tuple[tuple[float, float], ...], ...]
    colours: tuple[tuple[int, int, int], ...]


def _check_size(size: object) -> None:
    if not isinstance(size, int) or size < 8:
        raise CourseError(f"render size must be an integer of at least 8 pixels, got {size!r}")


def _layout(scene: Scene, *, size: int, rng: np.random.Generator | None, jitter: Jitter | None) -> _Layout:
    """The geometry and colours of ``scene`` at ``size``, drawing the jitter from ``rng`` in a fixed order (background
    shade, then per object: offset, scale, rotation, tint), so a render and its masks see the same draws."""
    if rng is None:
        jitter = Jitter.none()
        rng = np.random.default_rng(0)  # its draws are all scaled by zero
    jitter = jitter or Jitter()
    big = size * _SUPERSAMPLE
    brightness = rng.uniform(-1, 1) * jitter.background_shade  # one shift for all channels: grey stays grey
    background = _shade(BACKGROUND_RGB[scene.background], np.full(3, brightness))
    polygons, colours = [], []
    for obj in scene.objects:
        offset = rng.uniform(-1, 1, 2) * jitter.offset
        scale = 1.0 + rng.uniform(-1, 1) * jitter.scale
        angle = math.radians(rng.uniform(-1, 1) * jitter.rotation)
        tint = rng.uniform(-1, 1) + rng.uniform(-0.25, 0.25, 3)
        colours.append(_shade(COLOUR_RGB[obj.colour], tint * jitter.shade))
        c, s = math.cos(angle), math.sin(angle)
        points = _outline(obj.shape, _RADIUS[obj.size] * scale) @ np.array([[c, s], [-s, c]])
        points = (points + np.asarray(_CENTRES[obj.position]) + offset) * big - 0.5  # PIL: pixel i spans [i-.5, i+.5]
        polygons.append(tuple((float(x), float(y)) for x, y in points))
    return _Layout(background, tuple(polygons), tuple(colours))


def render(
    scene: Scene, *, size: int = 32, rng: np.random.Generator | None = None, jitter: Jitter | None = None
) -> np.ndarray:
    """Draw ``scene`` as a ``uint8`` image ``(size, size, 3)``, anti-aliased (drawn at 4×, box-downsampled).

    Without ``rng`` the picture is canonical; with it, each object is varied within ``jitter`` (default
    :class:`Jitter`). Either way the result depends only on the scene, ``size`` and the generator's state.
    """
    from PIL import Image, ImageDraw

    _check_size(size)
    layout = _layout(scene, size=size, rng=rng, jitter=jitter)
    big = size * _SUPERSAMPLE
    canvas = Image.new("RGB", (big, big), layout.background)
    draw = ImageDraw.Draw(canvas)
    for polygon, colour in zip(layout.polygons, layout.colours, strict=True):
        draw.polygon(list(polygon), fill=colour)
    small = canvas.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8).copy()


def object_masks(
    scene: Scene, *, size: int = 32, rng: np.random.Generator | None = None, jitter: Jitter | None = None
) -> np.ndarray:
    """The share of each pixel that each object of ``scene`` covers in :func:`render`'s picture: ``float32``
    ``(objects, size, size)`` in ``[0, 1]``, ``objects`` in the scene's order.

    The polygons are drawn exactly as :func:`render` draws them (at 4×, box-downsampled), so a pixel on an edge
    holds the covered fraction of its area, and a later object hides what it covers of an earlier one (the
    painter's order of :func:`render`). Pass the same ``rng`` state and ``jitter`` as the render to get the masks of
    a jittered picture; without ``rng`` they are the canonical picture's, where a text-to-image model that obeys
    the caption puts its objects. ``mask > 0.5`` is a boolean mask; ``mask.mean((1, 2))`` each object's area
    fraction.
    """
    from PIL import Image, ImageDraw

    _check_size(size)
    layout = _layout(scene, size=size, rng=rng, jitter=jitter)
    big = size * _SUPERSAMPLE
    # 1) each object's footprint at 4×; 2) later objects hide earlier ones; 3) box-downsample to coverage
    footprints = []
    for polygon in layout.polygons:
        canvas = Image.new("L", (big, big), 0)
        ImageDraw.Draw(canvas).polygon(list(polygon), fill=255)
        footprints.append(np.asarray(canvas) > 0)  # (big, big)
    hidden = np.zeros((big, big), dtype=bool)
    visible = [None] * len(footprints)
    for i in reversed(range(len(footprints))):
        visible[i] = footprints[i] & ~hidden
        hidden |= footprints[i]
    stacked = np.stack(visible).astype(np.float32)  # (objects, big, big)
    return stacked.reshape(len(visible), size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(2, 4))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """``uint8`` images ``(N, H, W, 3)`` (or one ``(H, W, 3)``) → float ``(N, 3, H, W)`` in ``[-1, 1]``."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise CourseError(f"to_tensor expects uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    return torch.from_numpy(images.copy()).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def as_image_tensor(images, *, reader: str = "the model") -> torch.Tensor:
    """What the shapes world's readers take: ``uint8`` ``(N, H, W, 3)`` (through :func:`to_tensor`) or float
    ``(N, 3, H, W)`` in ``[-1, 1]``, as float ``(N, 3, H, W)``; anything else is one line naming ``reader``."""
    if isinstance(images, np.ndarray):
        return to_tensor(images)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise CourseError(f"{reader} reads uint8 arrays (N, H, W, 3) or float tensors (N, 3, H, W) in [-1, 1]")
    return images.float()


# ---------------------------------------------------------------------------------------------- data sets


def sample_scene(rng: np.random.Generator, *, two_object_prob: float = 0.5, shapes: Sequence[str] = SHAPES) -> Scene:
    """A random scene, every word uniform; two objects with probability ``two_object_prob``.

    ``shapes`` is the world's shape list (default :data:`SHAPES`, the training world: the same draws as ever); pass
    ``SHAPES + UNSEEN_SHAPES`` for a world that includes the star.
    """
    if not 0.0 <= two_object_prob <= 1.0:
        raise CourseError(f"two_object_prob must lie in [0, 1], got {two_object_prob}")
    shapes = tuple(shapes)
    if not shapes or len(set(shapes)) != len(shapes):
        raise CourseError(f"shapes must be distinct and at least one, got {shapes}")
    for shape in shapes:
        check_choice("shape", shape, _ALL_SHAPES)

    def pick(values: Sequence[str]) -> str:
        return values[int(rng.integers(len(values)))]

    def spec(position: str = "centre") -> ShapeSpec:
        return ShapeSpec(pick(shapes), pick(COLOURS), pick(SIZES), position)

    background = pick(BACKGROUNDS)
    if rng.random() < two_object_prob:
        relation = pick(RELATIONS)
        return Scene.pair(spec(), spec(), relation=relation, background=background)
    return Scene((spec(pick(POSITIONS)),), background)


def make_dataset(
    n: int,
    *,
    seed: int,
    size: int = 32,
    two_object_prob: float = 0.5,
    jitter: Jitter | None = None,
    shapes: Sequence[str] = SHAPES,
) -> ShapesDataset:
    """``n`` random scenes, their pictures (varied by ``jitter``, default :class:`Jitter`) and captions; the same
    seed gives the same data. ``shapes`` is :func:`sample_scene`'s (the default is the training world, drawn as ever).

    Item ``i`` does not depend on ``n`` or ``size``: a longer data set extends a shorter one, and the
    same seed at another ``size`` draws the same scenes.
    """
    if n < 1:
        raise CourseError(f"a data set needs at least one item, got n={n}")
    rng = np.random.default_rng(seed)
    scenes, images = [], []
    for _ in range(n):
        scene = sample_scene(rng, two_object_prob=two_object_prob, shapes=shapes)
        scenes.append(scene)
        images.append(render(scene, size=size, rng=rng, jitter=jitter))
    return ShapesDataset(np.stack(images), [caption(s) for s in scenes], scenes)


def split_dataset(
    dataset: ShapesDataset, *, held_out_fraction: float = 0.1, seed: int = 0
) -> tuple[ShapesDataset, ShapesDataset]:
    """A seeded random ``(train, held_out)`` split; each part keeps the data set's order."""
    if not 0.0 < held_out_fraction < 1.0:
        raise CourseError(f"held_out_fraction must lie strictly between 0 and 1, got {held_out_fraction}")
    n = len(dataset)
    if n < 2:
        raise CourseError("splitting needs at least two items")
    n_held = min(max(1, round(n * held_out_fraction)), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return dataset.subset(np.sort(order[n_held:])), dataset.subset(np.sort(order[:n_held]))


# ---------------------------------------------------------------------------------------------- files


def _write_pngs(dataset: ShapesDataset, folder: Path) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(len(dataset) - 1)))
    names = [f"{i:0{width}d}.png" for i in range(len(dataset))]
    for name, image in zip(names, dataset.images, strict=True):
        Image.fromarray(image).save(folder / name)
    return names


def export_imagefolder(dataset: ShapesDataset, folder: str | Path) -> Path:
    """Write ``folder/NNNNN.png`` and a Hugging Face ``imagefolder`` ``metadata.jsonl``; return the latter.

    Each line holds ``file_name``, ``text`` (the caption) and every key of :data:`ATTRIBUTES`
    (``null`` where a one-object scene has none), so ``datasets.load_dataset("imagefolder",
    data_dir=folder)`` sees one fixed set of columns.
    """
    folder = Path(folder)
    names = _write_pngs(dataset, folder)
    path = folder / "metadata.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for name, text, scene in zip(names, dataset.captions, dataset.scenes, strict=True):
            labels = attributes(scene)
            row = {"file_name": name, "text": text, **{key: labels.get(key) for key in ATTRIBUTES}}
            f.write(json.dumps(row) + "\n")
    return path


def load_imagefolder(folder: str | Path) -> ShapesDataset:
    """Read an :func:`export_imagefolder` folder back: images, captions and (parsed) scenes.

    Attribute columns, where present, must agree with the caption.
    """
    from PIL import Image

    folder = Path(folder)
    path = folder / "metadata.jsonl"
    if not path.is_file():
        raise CourseError(f"no metadata.jsonl in {folder}")
    images, captions, scenes = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            name, text = row["file_name"], row["text"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CourseError(f"{path}:{number}: not a JSON object with file_name and text ({err})") from None
        scene = parse_caption(text)
        labels = attributes(scene)
        for key in ATTRIBUTES:
            if key in row and row[key] != labels.get(key):
                raise CourseError(f"{path}:{number}: {key}={row[key]!r} disagrees with the caption {text!r}")
        if not (folder / name).is_file():
            raise CourseError(f"{path}:{number}: no image {name} in {folder}")
        with Image.open(folder / name) as img:
            images.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
        captions.append(text)
        scenes.append(scene)
    if not images:
        raise CourseError(f"{path} lists no images")
    if len({img.shape for img in images}) > 1:
        raise CourseError(f"images in {folder} differ in size: {sorted({img.shape for img in images})}")
    return ShapesDataset(np.stack(images), captions, scenes)


def export_coco(dataset: ShapesDataset, folder: str | Path, *, instances: bool = False) -> Path:
    """Write ``folder/NNNNN.png`` and COCO-style caption annotations ``captions.json``; return the latter.

    Image ``i`` has id ``i + 1`` and one caption annotation with the same id, as in COCO's
    ``captions_*.json`` files; ``pycocotools.coco.COCO(path)`` reads it.

    With ``instances=True`` it also writes ``folder/instances.json``, the counterpart of COCO's
    ``instances_*.json`` (:func:`coco_instances`): one category per shape and one annotation per object, so
    a subset can be chosen by category offline (:mod:`course_utils.data.coco`). ``captions.json`` is the same
    either way.
    """
    folder = Path(folder)
    names = _write_pngs(dataset, folder)
    height, width = dataset.images.shape[1:3]
    coco = {
        **_coco_header(),
        "images": [
            {"id": i + 1, "file_name": name, "width": int(width), "height": int(height), "license": 1}
            for i, name in enumerate(names)
        ],
        "annotations": [{"id": i + 1, "image_id": i + 1, "caption": text} for i, text in enumerate(dataset.captions)],
    }
    path = folder / "captions.json"
    path.write_text(json.dumps(coco, indent=1) + "\n", encoding="utf-8")
    if instances:
        objects = coco_instances(dataset)
        (folder / "instances.json").write_text(
            json.dumps({**_coco_header(), "images": coco["images"], **objects}, indent=1) + "\n", encoding="utf-8"
        )
    return path


def _coco_header() -> dict[str, object]:
    """The ``info`` and ``licenses`` of every COCO-style file the shapes world writes."""
    return {
        "info": {
            "description": "procedurally generated captioned shapes (course_utils.data.shapes)",
            "version": "1.0",
            "contributor": "diffusion-course",
            "url": "",
        },
        "licenses": [{"id": 1, "name": "generated by course_utils.data.shapes; no third-party content", "url": ""}],
    }


def coco_instances(dataset: ShapesDataset) -> dict[str, list[dict[str, object]]]:
    """COCO ``instances`` ``categories`` and ``annotations`` for ``dataset`` (image ``i`` has id ``i + 1``).

    Categories are the :data:`SHAPES` (ids ``1 …``, supercategory ``"shape"``); each object of each scene is one
    annotation, numbered from 1 in image order, with the ``bbox`` ``[x, y, width, height]`` (pixels, COCO's
    convention: the box of every pixel the object touches) and ``area`` (its covered pixels, summed) of its canonical
    footprint (:func:`object_masks` without ``rng``: where the caption puts it; a jittered picture's object lies
    within about a pixel of it), and ``iscrowd`` 0 (no segmentation).
    """
    size = dataset.images.shape[1]
    category = {shape: i + 1 for i, shape in enumerate(SHAPES)}
    annotations: list[dict[str, object]] = []
    for image_id, scene in enumerate(dataset.scenes, start=1):
        for obj, mask in zip(scene.objects, object_masks(scene, size=size), strict=True):
            ys, xs = np.nonzero(mask > 0)  # (pixels,) each: every pixel the object touches
            if len(xs) == 0:  # hidden by the other object
                continue
            x, y = int(xs.min()), int(ys.min())
            bbox = [x, y, int(xs.max()) - x + 1, int(ys.max()) - y + 1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category[obj.shape],
                    "bbox": bbox,
                    "area": round(float(mask.sum()), 2),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i, "name": shape, "supercategory": "shape"} for shape, i in category.items()]
    return {"categories": categories, "annotations": annotations}
