"""Readers: what the studies judge samples with, one per course denoiser (:func:`reader_for`).

A :class:`Reader` says whether an image shows a condition, and how much of what it reads on a reference image it
still reads on another (an edit of it). The digits model's reader is the digit classifier
(:func:`course_utils.metrics.digit_classifier`, trained on the real digits); the pixel-space shapes model's is the
shapes judge (:mod:`course_utils.models.shapes_judge`, trained on ground-truth renders), which reads every attribute
a caption can name. The Hub's models have none (their studies measure PSNR and diversity only).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from course_utils.course.paths import MODELS_DIR
from course_utils.metrics import DigitClassifier, digit_classifier
from course_utils.models.shapes_judge import ShapesJudge, adherence, load_shapes_judge, read_images

__all__ = ["DigitReader", "Reader", "ShapesReader", "reader_for", "shapes_reader"]


class Reader:
    """Reads what images show, for a study's measures.

    ``reads(images, items)``: ``(B,)`` booleans, whether image ``i`` shows ``items[i]`` (a digit; a caption, every
    attribute it names). ``kept(images, reference)``: ``(B,)`` in ``[0, 1]``, the share of what the reader reads on
    ``reference`` (one image, or one per image) that it reads on each image too.
    """

    name: str

    def reads(self, images: torch.Tensor, items: Sequence[object]) -> torch.Tensor:
        raise NotImplementedError

    def kept(self, images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class DigitReader(Reader):
    """The digit classifier as a :class:`Reader`: a digit is read or not; ``kept`` is 1 where the digit is the
    reference's."""

    classifier: DigitClassifier
    name: str = "the digit classifier"

    def reads(self, images: torch.Tensor, items: Sequence[object]) -> torch.Tensor:
        return self.classifier.predict(images) == torch.tensor([int(str(item)) for item in items])

    def kept(self, images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        ref = self.classifier.predict(reference).expand(images.shape[0])
        return (self.classifier.predict(images) == ref).float()


@dataclass(frozen=True)
class ShapesReader(Reader):
    """The shapes judge as a :class:`Reader`: a caption is read when every attribute it names is (the judge's
    "every attribute right"); ``kept`` compares the judge's readings slot by slot — the shape (or emptiness) of each
    of the five slots, the colour and size where the reference has an object, the background."""

    judge: ShapesJudge
    name: str = "the shapes judge"

    def reads(self, images: torch.Tensor, items: Sequence[object]) -> torch.Tensor:
        return torch.from_numpy(adherence(self.judge, images, [str(item) for item in items]).per_sample == 1.0)

    def kept(self, images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        got, ref = read_images(self.judge, images), read_images(self.judge, reference)
        n = images.shape[0]
        ref = {k: v.expand(n, *v.shape[1:]) for k, v in ref.items()}
        occupied = (ref["shape"] > 0).float()
        same = {k: (got[k] == ref[k]).float() for k in ("shape", "colour", "size", "background")}
        hits = same["shape"].sum(1) + ((same["colour"] + same["size"]) * occupied).sum(1) + same["background"]
        return hits / (ref["shape"].shape[1] + 2 * occupied.sum(1) + 1)


@functools.cache
def shapes_reader() -> ShapesReader:
    """The committed shapes judge (``data/models/shapes-judge``) as a :class:`ShapesReader`, loaded once."""
    return ShapesReader(load_shapes_judge(MODELS_DIR / "shapes-judge"))


def reader_for(denoiser: object) -> Reader | None:
    """The :class:`Reader` for a course denoiser's samples (by its ``family``); ``None`` for a Hub model."""
    family = getattr(denoiser, "family", None)
    if family == "course-digits" or (family is None and tuple(denoiser.sample_shape) == (1, 8, 8)):
        return DigitReader(digit_classifier())
    if family == "course-shapes-if":
        return shapes_reader()
    return None
