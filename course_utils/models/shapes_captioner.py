"""A small downstream captioner for one-object shapes scenes, trained from scratch per run (week 6's study).

The model reads a 32×32 picture and names each attribute of its one object with a head of its own (``shape``,
``colour``, ``size``, ``position``, ``background``: :data:`HEADS`); :func:`predict_captions` turns the heads' arg-max
into text with the world's grammar (:func:`course_utils.data.shapes.caption`), so a caption is exactly right when
every head is. This is the "attribute heads + caption grammar" form of image captioning: the language side is fixed,
which isolates what the research question is about, whether the *visual* model generalises to attribute combinations
its real data never showed (seed 000, task C).

It differs from the attribute judge (:mod:`course_utils.models.shapes_judge`) on purpose: the judge reads slots of
one- and two-object scenes and is trained once on the whole world; this captioner is smaller (three stride-2 stages,
about 0.19 M parameters at the default width), reads one object, and is trained from scratch for every condition and
seed of the study, so its labels come from the caption's words (:func:`caption_targets`, one class per head), not
from slots.

Training is :func:`course_utils.training.loop.fit` (AdamW, warm-up, cosine decay, no EMA, no checkpoints), seeded:
the initial weights come from ``torch.manual_seed(config.seed)`` inside :func:`train_shapes_captioner` and the
batches from ``fit``'s seeded generator, so the same data and config give the same weights (a test compares two runs
with ``torch.equal``).

Shapes: images ``uint8 (N, 32, 32, 3)`` or float ``(N, 3, 32, 32)`` in ``[-1, 1]``; logits per head ``(N, classes)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from course_utils.data.shapes import (
    BACKGROUNDS,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    ShapeSpec,
    as_image_tensor,
    attributes,
    caption,
)
from course_utils.errors import CourseError
from course_utils.training.loop import TrainConfig, fit

__all__ = [
    "HEADS",
    "ShapesCaptioner",
    "caption_hits",
    "caption_targets",
    "predict_attributes",
    "predict_captions",
    "train_shapes_captioner",
]

HEADS: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": COLOURS,
    "size": SIZES,
    "position": POSITIONS,
    "background": BACKGROUNDS,
}
"""Each head's name and classes (the vocabulary of a one-object caption)."""


class ShapesCaptioner(ModelMixin, ConfigMixin):
    """Conv 3→w at 32 px, then three stride-2 stages (w → 2w → 4w → 4w: 16, 8, 4 px), a hidden layer, one linear head
    per attribute of :data:`HEADS`. GroupNorm and SiLU as in the course's other CNNs."""

    @register_to_config
    def __init__(self, *, image_size: int = 32, width: int = 16, hidden: int = 128) -> None:
        super().__init__()
        if image_size % 8:
            raise CourseError(f"the captioner reads images whose side is a multiple of 8, got {image_size}")
        if width < 4 or width % 4:
            raise CourseError(f"width must be a positive multiple of 4, got {width}")
        channels = (width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 3, padding=1), nn.SiLU()]
        for c_in, c_out in zip(channels, channels[1:], strict=False):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(4, c_out), nn.SiLU()]
        self.features = nn.Sequential(*layers, nn.Flatten())
        side = image_size // 8
        self.mlp = nn.Sequential(nn.Linear(channels[-1] * side * side, hidden), nn.SiLU())
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, len(values)) for name, values in HEADS.items()})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``images`` ``(N, 3, S, S)`` in ``[-1, 1]`` → logits per head ``(N, len(HEADS[head]))``."""
        h = self.mlp(self.features(images))  # (N, hidden)
        return {name: head(h) for name, head in self.heads.items()}


def caption_targets(scenes: Sequence[Scene]) -> dict[str, torch.Tensor]:
    """Class indices ``(N,)`` per head of one-object ``scenes`` (what their captions name)."""
    targets = {name: torch.empty(len(scenes), dtype=torch.long) for name in HEADS}
    for i, scene in enumerate(scenes):
        if len(scene.objects) != 1:
            raise CourseError(f"the captioner reads one-object scenes; scene {i} holds {len(scene.objects)}")
        labels = {name: value for name, value in attributes(scene).items() if name in HEADS}
        for name, value in labels.items():
            if value not in HEADS[name]:
                raise CourseError(
                    f"scene {i}: {name} {value!r} is not one the captioner names ({', '.join(HEADS[name])})"
                )
            targets[name][i] = HEADS[name].index(value)
    return targets


def train_shapes_captioner(
    images, scenes: Sequence[Scene], *, config: TrainConfig, width: int = 16, hidden: int = 128
) -> tuple[ShapesCaptioner, list[float]]:
    """A new :class:`ShapesCaptioner` (initialised from ``config.seed``) trained on ``images`` ``(N, …)`` labelled by
    ``scenes`` with :func:`course_utils.training.loop.fit`: cross-entropy summed over the heads, batches of
    ``config.batch_size`` drawn with replacement by ``fit``'s seeded generator. ``config.use_ema`` must be ``False``
    (the trained weights are returned) and checkpoints are not written (a run takes seconds).

    Returns:
        (the trained model in eval mode, the loss of every step).
    """
    if len(images) != len(scenes):
        raise CourseError(f"{len(images)} images but {len(scenes)} scenes")
    if config.use_ema or config.checkpoint_dir is not None:
        raise CourseError(
            "train_shapes_captioner trains without EMA or checkpoints: use_ema=False, checkpoint_dir=None"
        )
    x, y = as_image_tensor(images, reader="the captioner"), caption_targets(scenes)
    with torch.random.fork_rng(devices=[]):  # the initial weights, without moving the caller's global RNG
        torch.manual_seed(config.seed)
        model = ShapesCaptioner(image_size=x.shape[-1], width=width, hidden=hidden)

    def loss_fn(net: ShapesCaptioner, gen: torch.Generator) -> torch.Tensor:
        device = next(net.parameters()).device
        idx = torch.randint(0, len(x), (config.batch_size,), generator=gen)  # (B,)
        logits = net(x[idx].to(device))
        return sum(F.cross_entropy(logits[k], y[k][idx].to(device)) for k in HEADS)

    return fit(model, loss_fn=loss_fn, config=config, description="shapes captioner", show_progress=False)


@torch.no_grad()
def predict_attributes(model: ShapesCaptioner, images, *, batch_size: int = 512) -> dict[str, torch.Tensor]:
    """Each head's arg-max class ``(N,)`` (an index into ``HEADS[head]``)."""
    x = as_image_tensor(images, reader="the captioner")
    model.eval()
    parts = [model(chunk.to(model.device, model.dtype)) for chunk in x.split(batch_size)]
    return {name: torch.cat([p[name] for p in parts]).argmax(-1).cpu() for name in HEADS}


def predict_captions(model: ShapesCaptioner, images, *, batch_size: int = 512) -> list[str]:
    """The caption of each image: the heads' arg-max words in the world's grammar,
    ``a <size> <colour> <shape> <position phrase> on a <background> background`` (every one parses with
    :func:`course_utils.data.shapes.parse_caption`)."""
    pred = predict_attributes(model, images, batch_size=batch_size)
    words = {name: [HEADS[name][int(i)] for i in pred[name]] for name in HEADS}
    return [
        caption(
            Scene(
                (ShapeSpec(words["shape"][i], words["colour"][i], words["size"][i], words["position"][i]),),
                words["background"][i],
            )
        )
        for i in range(len(pred["shape"]))
    ]


def caption_hits(model: ShapesCaptioner, images, scenes: Sequence[Scene]) -> dict[str, np.ndarray]:
    """Per image ``(N,)`` booleans: each head right, ``shape_colour`` (both), and ``exact`` (the whole caption, i.e.
    every head, right: ``predict_captions(model, images)[i] == caption(scenes[i])``)."""
    if len(images) != len(scenes):
        raise CourseError(f"{len(images)} images but {len(scenes)} scenes")
    pred, y = predict_attributes(model, images), caption_targets(scenes)
    hits = {name: (pred[name] == y[name]).numpy() for name in HEADS}
    hits["shape_colour"] = hits["shape"] & hits["colour"]
    hits["exact"] = np.logical_and.reduce([hits[name] for name in HEADS])
    return hits
