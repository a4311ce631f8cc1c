"""A deliberately narrow split of the shapes world: some (shape, colour) combinations are never seen in training.

Week 6 asks whether synthetic data helps a downstream model generalise when its real captions are narrow (seed 000,
task C: "captions too specific … highly single-case specific"). Here narrowness is made exact: every scene holds one
object, and the real training pictures show each shape in only **two of the six colours**
(:data:`SEEN_COMBINATIONS`, 8 of the 24 combinations); the other 16 (:data:`UNSEEN_COMBINATIONS`) are what the
downstream model is tested on. Every shape and every colour is seen (a head can name each value), only the pairs are
new: the question is compositional generalisation, not new words (the setting of compositional zero-shot learning,
Misra, Gupta & Hebert 2017, "From red wine to red tomato: composition with context").

Why this design: with 4 shapes × 2 colours = 8 pairs covering 6 colours, the shape–colour graph of the seen pairs
cannot be connected (10 values need 9 pairs), so the real set is confounded on purpose. The seen pairs form two chains,
``circle {red, green}``, ``square {green, blue}`` and ``triangle {yellow, purple}``, ``plus {purple, white}``: red
only ever comes with a circle, blue with a square, yellow with a triangle, white with a
plus, while green and purple each come with two shapes. A model may therefore read "red" as evidence of "circle" (a
shortcut, the failure narrow captions invite); the shared colours force it to learn some shape at least. Size,
position and background are drawn uniformly everywhere, so they are no shortcut.

Sets (one object each; size, position and background uniform; the combination of item ``i`` is
``combinations[i % len(combinations)]``, so every set is balanced over its combinations and item ``i`` does not
depend on ``n``):

- :func:`make_combination_dataset`: ``n`` pictures of the given combinations (the building block);
- :func:`narrow_split`: a :class:`NarrowSplit` of the narrow real set, the control's extra real pictures (more of the
  *seen* combinations), a held-out test set of the unseen combinations and a held-out sanity set of the seen ones.
  Each comes from its own generator stream (``numpy.random.default_rng([role, seed])``), so no two sets share draws;
  the test sets use ``test_seed``, fixed while the training seed varies, so every trained model is scored on the
  same pictures (paired comparisons).

:func:`course_utils.data.shapes.make_dataset` and :func:`~course_utils.data.shapes.sample_scene` are untouched; this
module draws its own scenes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from course_utils.data.shapes import (
    BACKGROUNDS,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Jitter,
    Scene,
    ShapesDataset,
    ShapeSpec,
    caption,
    render,
)
from course_utils.errors import CourseError, check_choice

__all__ = [
    "ALL_COMBINATIONS",
    "SEEN_COMBINATIONS",
    "UNSEEN_COMBINATIONS",
    "NarrowSplit",
    "combination",
    "make_combination_dataset",
    "narrow_split",
    "sample_single_scene",
    "title",
]

Combination = tuple[str, str]  # (shape, colour)

ALL_COMBINATIONS: tuple[Combination, ...] = tuple((s, c) for s in SHAPES for c in COLOURS)
SEEN_COMBINATIONS: tuple[Combination, ...] = (
    ("circle", "red"),
    ("circle", "green"),
    ("square", "green"),
    ("square", "blue"),
    ("triangle", "yellow"),
    ("triangle", "purple"),
    ("plus", "purple"),
    ("plus", "white"),
)
UNSEEN_COMBINATIONS: tuple[Combination, ...] = tuple(c for c in ALL_COMBINATIONS if c not in SEEN_COMBINATIONS)

# the generator stream of each set: numpy.random.default_rng([role, seed])
_ROLES = {"train": 1, "test_unseen": 2, "test_seen": 3}


def combination(scene: Scene) -> Combination:
    """``(shape, colour)`` of a one-object scene."""
    if len(scene.objects) != 1:
        raise CourseError(f"the narrow split holds one-object scenes, got {len(scene.objects)} objects")
    only = scene.objects[0]
    return only.shape, only.colour


def title(combo: Combination) -> str:
    """The short title of a combination, ``"a red circle"`` (what a synthetic-data pipeline starts from)."""
    shape, colour = combo
    return f"a {colour} {shape}"


def _check_combinations(combinations: Sequence[Combination]) -> tuple[Combination, ...]:
    combos = tuple((str(s), str(c)) for s, c in combinations)
    if not combos or len(set(combos)) != len(combos):
        raise CourseError(f"combinations must be distinct and at least one, got {combos}")
    for shape, colour in combos:
        check_choice("shape", shape, SHAPES)
        check_choice("colour", colour, COLOURS)
    return combos


def sample_single_scene(rng: np.random.Generator, combo: Combination) -> Scene:
    """One object of ``combo`` = ``(shape, colour)``; its size, position and background uniform from ``rng``."""
    shape, colour = combo

    def pick(values: Sequence[str]) -> str:
        return values[int(rng.integers(len(values)))]

    size, position, background = pick(SIZES), pick(POSITIONS), pick(BACKGROUNDS)
    return Scene((ShapeSpec(shape, colour, size, position),), background)


def _draw(n: int, rng: np.random.Generator, combos: tuple[Combination, ...], *, size: int, jitter: Jitter | None):
    scenes, images = [], []
    for i in range(n):
        scene = sample_single_scene(rng, combos[i % len(combos)])
        scenes.append(scene)
        images.append(render(scene, size=size, rng=rng, jitter=jitter))
    return ShapesDataset(np.stack(images), [caption(s) for s in scenes], scenes)


def make_combination_dataset(
    n: int,
    *,
    seed: int | Sequence[int],
    combinations: Sequence[Combination],
    size: int = 32,
    jitter: Jitter | None = None,
) -> ShapesDataset:
    """``n`` one-object pictures, item ``i`` of ``combinations[i % len(combinations)]``, drawn from
    ``numpy.random.default_rng(seed)`` (``seed`` an int or a list of ints); the pictures vary by ``jitter``
    (default :class:`~course_utils.data.shapes.Jitter`), as :func:`~course_utils.data.shapes.make_dataset`'s do."""
    if n < 1:
        raise CourseError(f"a data set needs at least one item, got n={n}")
    return _draw(n, np.random.default_rng(seed), _check_combinations(combinations), size=size, jitter=jitter)


@dataclass(frozen=True)
class NarrowSplit:
    """The sets of one narrow-split draw (each a :class:`~course_utils.data.shapes.ShapesDataset`).

    Attributes:
        real: the narrow real training set (seen combinations only).
        extra_real: more real pictures of the seen combinations, the control's addition.
        test_unseen: held-out pictures of the unseen combinations (what generalisation is measured on).
        test_seen: held-out pictures of the seen combinations (a sanity check: the model learnt its data).
    """

    real: ShapesDataset
    extra_real: ShapesDataset | None
    test_unseen: ShapesDataset
    test_seen: ShapesDataset


def narrow_split(
    *,
    n_real: int,
    n_extra: int,
    n_test_unseen: int,
    n_test_seen: int,
    seed: int,
    test_seed: int = 0,
    size: int = 32,
) -> NarrowSplit:
    """The narrow real set and the control's extra real pictures (training ``seed``), and the two held-out sets
    (``test_seed``).

    ``real`` and ``extra_real`` are the first ``n_real`` and the next ``n_extra`` items of one stream of the seen
    combinations (``extra_real`` is ``None`` for ``n_extra = 0``), so the control adds more of exactly the real
    distribution; the test sets are balanced over :data:`UNSEEN_COMBINATIONS` and :data:`SEEN_COMBINATIONS`.
    """
    for name, value in {"n_real": n_real, "n_test_unseen": n_test_unseen, "n_test_seen": n_test_seen}.items():
        if value < 1:
            raise CourseError(f"{name} must be at least 1, got {value}")
    if n_extra < 0:
        raise CourseError(f"n_extra must be ≥ 0, got {n_extra}")
    train = make_combination_dataset(
        n_real + n_extra, seed=[_ROLES["train"], seed], combinations=SEEN_COMBINATIONS, size=size
    )
    unseen = make_combination_dataset(
        n_test_unseen, seed=[_ROLES["test_unseen"], test_seed], combinations=UNSEEN_COMBINATIONS, size=size
    )
    seen = make_combination_dataset(
        n_test_seen, seed=[_ROLES["test_seen"], test_seed], combinations=SEEN_COMBINATIONS, size=size
    )
    real = train.subset(range(n_real))
    extra = train.subset(range(n_real, n_real + n_extra)) if n_extra else None
    return NarrowSplit(real=real, extra_real=extra, test_unseen=unseen, test_seen=seen)
