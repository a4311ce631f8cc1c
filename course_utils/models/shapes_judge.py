"""The judge of prompt adherence: an attribute classifier trained on ground-truth renders of the shapes world.

A text-to-image model follows its prompt when what it draws has the attributes the prompt names. The judge
(a small CNN, :class:`ShapesJudge`) reads a 32×32 picture into *slots*, one per position of the shapes world
(``left``, ``right``, ``top``, ``bottom``, ``centre``): for each slot whether an object is there and its shape,
colour and size, plus the background. Slots, not "first" and "second" object, because a picture of a red circle
left of a blue square is just as well "a blue square right of a red circle": only where things are is visible.

:func:`adherence` then checks each attribute a prompt names (:func:`course_utils.data.shapes.prompt_attributes`,
so partial prompts like "a red circle" work):

- ``shape``, ``colour``, ``size``: for one object, read in the slot the judge finds most surely occupied
  (so a misplaced object still counts for its shape and colour); for two objects (and ``_2`` for the second),
  in the slots the relation puts them in, the only way to tell which object is which;
- ``position`` (one object): the occupied slots are exactly that position;
- ``relation`` (two objects): the occupied slots are exactly the two positions the relation implies;
- ``background``.

Adherence is the share of (sample, named attribute) pairs that hold; :class:`Adherence` also keeps it per
attribute and the share of samples right in every attribute. The network is a diffusers ``ModelMixin``, saved
and loaded with ``save_pretrained`` / ``from_pretrained`` (safetensors), like every course model.

A judge reads the shapes it was trained on, ``judge.config.shapes`` (default :data:`~course_utils.data.shapes.SHAPES`,
the training world; ``data/models/shapes-judge``). The concept judge (``data/models/shapes-judge-unseen``) is trained
on a world that also holds :data:`~course_utils.data.shapes.UNSEEN_SHAPES`, so it can say whether a fine-tuned model
draws the concept: :func:`concept_rate` (does the concept's shape appear anywhere) and :func:`concept_hits` (per
attribute a concept prompt asks for, :func:`course_utils.data.concepts.expected_attributes`).

Shapes: images ``(N, 3, 32, 32)`` in ``[-1, 1]`` (or ``uint8 (N, 32, 32, 3)``); logits per slot
``(N, 5, classes)`` (shape classes: ``none`` and the judge's shapes); background logits ``(N, 3)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from course_utils.data.concepts import Concept, expected_attributes
from course_utils.data.shapes import (
    BACKGROUNDS,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    UNSEEN_SHAPES,
    Scene,
    as_image_tensor,
    prompt_attributes,
    to_tensor,
)
from course_utils.errors import CourseError, check_choice
from course_utils.runtime import quiet_loading
from course_utils.training.loop import TrainConfig, fit

__all__ = [
    "SCORED",
    "Adherence",
    "ShapesJudge",
    "adherence",
    "concept_hits",
    "concept_rate",
    "judge_accuracy",
    "load_shapes_judge",
    "read_images",
    "slot_targets",
    "train_shapes_judge",
]

EMPTY = "none"  # the shape class of an empty slot (class 0)
SCORED = ("shape", "colour", "size", "position", "relation", "background")  # adherence is reported per these


class ShapesJudge(ModelMixin, ConfigMixin):
    """A four-stage CNN (32 → 16 → 8 → 4 pixels) with one head per slot and attribute, and one for the background.

    Heads: per slot of :data:`course_utils.data.shapes.POSITIONS`, shape (``none`` or one of ``shapes``), colour and
    size (read only where the slot is occupied); background. ``shapes`` is the world the judge reads (default
    :data:`~course_utils.data.shapes.SHAPES`; a saved judge without the field in its ``config.json`` reads those).
    """

    @register_to_config
    def __init__(
        self, *, image_size: int = 32, width: int = 32, hidden: int = 256, shapes: Sequence[str] = SHAPES
    ) -> None:
        super().__init__()
        if image_size % 16:
            raise CourseError(f"the judge reads images whose side is a multiple of 16, got {image_size}")
        shapes = tuple(shapes)
        if not shapes or len(set(shapes)) != len(shapes):
            raise CourseError(f"a judge reads distinct shapes, at least one, got {shapes}")
        for shape in shapes:
            check_choice("shape", shape, SHAPES + UNSEEN_SHAPES)
        self.slot_shapes = (EMPTY, *shapes)  # the shape classes of each slot, class 0 = empty
        channels = (width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 3, padding=1), nn.SiLU()]
        for c_in, c_out in zip(channels, channels[1:], strict=False):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU()]
        layers += [nn.Conv2d(channels[-1], channels[-1], 3, stride=2, padding=1), nn.SiLU(), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        side = image_size // 16
        self.mlp = nn.Sequential(nn.Linear(channels[-1] * side * side, hidden), nn.SiLU())
        n = len(POSITIONS)
        self.shape_head = nn.Linear(hidden, n * len(self.slot_shapes))
        self.colour_head = nn.Linear(hidden, n * len(COLOURS))
        self.size_head = nn.Linear(hidden, n * len(SIZES))
        self.background_head = nn.Linear(hidden, len(BACKGROUNDS))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``images`` ``(N, 3, S, S)`` in ``[-1, 1]`` → logits ``shape (N, 5, 1 + len(shapes))``, ``colour (N, 5, 6)``,
        ``size (N, 5, 2)``, ``background (N, 3)``."""
        h = self.mlp(self.features(images))
        n = len(POSITIONS)
        return {
            "shape": self.shape_head(h).view(-1, n, len(self.slot_shapes)),
            "colour": self.colour_head(h).view(-1, n, len(COLOURS)),
            "size": self.size_head(h).view(-1, n, len(SIZES)),
            "background": self.background_head(h),
        }


def load_shapes_judge(path: str | Path) -> ShapesJudge:
    """``ShapesJudge.from_pretrained(path)`` in eval mode; a missing folder is one line, not a traceback."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CourseError(
            f"no shapes judge at {path} (expected config.json and safetensors weights; run `make models`)"
        )
    with quiet_loading():
        return ShapesJudge.from_pretrained(path).eval()


def slot_targets(scenes: Sequence[Scene], *, shapes: Sequence[str] = SHAPES) -> dict[str, torch.Tensor]:
    """Labels of ``scenes`` for a judge of ``shapes``: ``shape`` ``(N, 5)`` (0 = empty, ``k`` = ``shapes[k − 1]``),
    ``colour`` and ``size`` ``(N, 5)`` (−100 where empty, ignored by the loss), ``background`` ``(N,)``."""
    slot_shapes = (EMPTY, *shapes)
    n = len(scenes)
    shape = torch.zeros(n, len(POSITIONS), dtype=torch.long)
    colour = torch.full((n, len(POSITIONS)), -100, dtype=torch.long)
    size = torch.full((n, len(POSITIONS)), -100, dtype=torch.long)
    background = torch.empty(n, dtype=torch.long)
    for i, scene in enumerate(scenes):
        background[i] = BACKGROUNDS.index(scene.background)
        for obj in scene.objects:
            slot = POSITIONS.index(obj.position)
            shape[i, slot] = slot_shapes.index(check_choice("shape the judge reads", obj.shape, shapes))
            colour[i, slot] = COLOURS.index(obj.colour)
            size[i, slot] = SIZES.index(obj.size)
    return {"shape": shape, "colour": colour, "size": size, "background": background}


def _loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(F.cross_entropy(logits[k].flatten(0, -2), targets[k].flatten(), ignore_index=-100) for k in logits)


def train_shapes_judge(
    judge: ShapesJudge, images: np.ndarray, scenes: Sequence[Scene], *, config: TrainConfig
) -> tuple[ShapesJudge, list[float]]:
    """Train ``judge`` on renders ``uint8 (N, S, S, 3)`` of ``scenes`` with :func:`course_utils.training.loop.fit`
    (cross-entropy summed over the heads; colour and size of empty slots ignored)."""
    if len(images) != len(scenes):
        raise CourseError(f"{len(images)} images but {len(scenes)} scenes")
    x, y = to_tensor(images), slot_targets(scenes, shapes=judge.config.shapes)

    def loss_fn(model: ShapesJudge, gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(x), (config.batch_size,), generator=gen)
        return _loss(model(x[idx]), {k: v[idx] for k, v in y.items()})

    return fit(judge, loss_fn=loss_fn, config=config, description="shapes judge")


@torch.no_grad()
def read_images(judge: ShapesJudge, images, *, batch_size: int = 512) -> dict[str, torch.Tensor]:
    """The judge's reading of ``images``: per-slot predicted ``shape``, ``colour``, ``size`` ``(N, 5)`` (indices
    into ``judge.slot_shapes`` = ``("none", *judge.config.shapes)``, ``COLOURS``, ``SIZES``), ``occupied``
    probability ``(N, 5)`` and ``background`` ``(N,)``."""
    x = as_image_tensor(images, reader="the judge")
    judge.eval()
    parts = [judge(chunk.to(judge.device, judge.dtype)) for chunk in x.split(batch_size)]
    logits = {k: torch.cat([p[k] for p in parts]).float().cpu() for k in parts[0]}
    return {
        "shape": logits["shape"].argmax(-1),
        "colour": logits["colour"].argmax(-1),
        "size": logits["size"].argmax(-1),
        "occupied": 1 - logits["shape"].softmax(-1)[..., 0],
        "background": logits["background"].argmax(-1),
    }


def judge_hits(judge: ShapesJudge, images, scenes: Sequence[Scene]) -> dict[str, np.ndarray]:
    """Per reading, whether the judge got it right: shape per slot (empty included), colour and size on occupied
    slots, background; each a flat boolean array."""
    pred, y = read_images(judge, images), slot_targets(scenes, shapes=judge.slot_shapes[1:])
    occupied = y["shape"] > 0
    return {
        "shape": (pred["shape"] == y["shape"]).flatten().numpy(),
        "colour": (pred["colour"] == y["colour"])[occupied].numpy(),
        "size": (pred["size"] == y["size"])[occupied].numpy(),
        "background": (pred["background"] == y["background"]).numpy(),
    }


def judge_accuracy(judge: ShapesJudge, images, scenes: Sequence[Scene]) -> dict[str, float]:
    """Accuracy of the judge against ground truth (:func:`judge_hits`), and ``mean_accuracy`` of the four."""
    result = {k: float(v.mean()) for k, v in judge_hits(judge, images, scenes).items()}
    result["mean_accuracy"] = float(np.mean(list(result.values())))
    return result


@dataclass
class Adherence:
    """Prompt adherence of ``n`` samples.

    Attributes:
        overall: share of (sample, named attribute) pairs that hold.
        per_attribute: that share for each of :data:`SCORED` a prompt named (absent if none did).
        exact: share of samples right in every attribute their prompt names.
        per_sample: ``(n,)`` share of each sample's named attributes that hold.
        checks: per attribute of :data:`SCORED`, whether each (sample, attribute) the prompts named holds.
        found: per sample, the attribute → value the judge read where the prompt put each object (``value_2`` for
            the second object), to count how often a value appears (e.g. for a negative prompt).
    """

    overall: float
    per_attribute: dict[str, float]
    exact: float
    per_sample: np.ndarray
    found: list[dict[str, str]] = field(repr=False)
    checks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def found_as(self, key: str, value: str) -> np.ndarray:
        """``(n,)`` booleans: in which samples the judge read ``key`` (e.g. ``"colour"``) as ``value`` (``"red"``)."""
        return np.array([f.get(key) == value for f in self.found], dtype=bool)

    def frequency(self, key: str, value: str) -> float:
        """Share of samples in which the judge read ``key`` (e.g. ``"colour"``) as ``value`` (e.g. ``"red"``)."""
        return float(self.found_as(key, value).mean())


def _check(pred: dict[str, torch.Tensor], i: int, named: dict[str, str], slot_shapes: Sequence[str]):
    """The adherence rules (module docstring) for image ``i`` of a reading ``pred`` against the attributes ``named``:
    ``(hits, read)``, whether each scored attribute holds and the values read where the prompt puts each object."""
    occupied = {POSITIONS[s] for s in range(len(POSITIONS)) if pred["shape"][i, s] > 0}
    if named["count"] == "two":
        slots = {"": named["position"], "_2": named["position_2"]}
        hits = {"relation": occupied == set(slots.values())}
    else:  # one object: its attributes are read where the judge is surest something is
        slots = {"": POSITIONS[int(pred["occupied"][i].argmax())]}
        hits = {"position": occupied == {named["position"]}} if "position" in named else {}
    read: dict[str, str] = {"background": BACKGROUNDS[int(pred["background"][i])]}
    for suffix, position in slots.items():
        s = POSITIONS.index(position)
        read["shape" + suffix] = slot_shapes[int(pred["shape"][i, s])]
        read["colour" + suffix] = COLOURS[int(pred["colour"][i, s])]
        read["size" + suffix] = SIZES[int(pred["size"][i, s])]
    for key in ("shape", "colour", "size", "shape_2", "colour_2", "size_2", "background"):
        if key in named:
            hits[key] = read[key] == named[key]
    return hits, read


def adherence(judge: ShapesJudge, images, prompts: Sequence[str]) -> Adherence:
    """Score ``images`` ``(N, …)`` against their ``prompts`` (``N`` strings, full or partial captions)."""
    prompts = list(prompts)
    if len(prompts) != len(images):
        raise CourseError(f"{len(images)} images but {len(prompts)} prompts")
    if not prompts:
        raise CourseError("no images to score")
    pred = read_images(judge, images)
    checks: dict[str, list[bool]] = {k: [] for k in SCORED}
    per_sample, found = [], []
    for i, text in enumerate(prompts):
        hits, read = _check(pred, i, prompt_attributes(text), judge.slot_shapes)
        for key, hit in hits.items():
            checks[key.removesuffix("_2")].append(hit)
        per_sample.append(np.mean(list(hits.values())))
        found.append(read)
    everything = [hit for hits in checks.values() for hit in hits]
    return Adherence(
        overall=float(np.mean(everything)),
        per_attribute={k: float(np.mean(v)) for k, v in checks.items() if v},
        exact=float(np.mean([p == 1.0 for p in per_sample])),
        per_sample=np.asarray(per_sample),
        found=found,
        checks={k: np.asarray(v, dtype=bool) for k, v in checks.items() if v},
    )


# ---------------------------------------------------------------------------------------------- concepts


def _knows(judge: ShapesJudge, concept: Concept) -> None:
    if concept.shape not in judge.slot_shapes:
        raise CourseError(
            f"this judge reads only {', '.join(judge.slot_shapes[1:])}, not the concept's {concept.shape}; load the"
            " concept judge (data/models/shapes-judge-unseen)"
        )


def concept_rate(judge: ShapesJudge, images, concept: Concept) -> np.ndarray:
    """``(N,)`` booleans: in which images the judge reads the concept's shape in some slot ("how often does the
    concept appear"; ``course_utils.stats.proportion`` gives the rate with its interval). Colour is not asked."""
    _knows(judge, concept)
    shape = read_images(judge, images)["shape"]  # (N, 5) slot classes
    return (shape == judge.slot_shapes.index(concept.shape)).any(dim=1).numpy()


def concept_hits(judge: ShapesJudge, images, prompts: str | Sequence[str], concept: Concept) -> dict[str, np.ndarray]:
    """Per attribute a concept prompt asks for (:func:`course_utils.data.concepts.expected_attributes`: ``shape``,
    ``colour``, and ``size``, ``position``, ``background`` where named), ``(N,)`` booleans: does image ``i`` show it.

    ``prompts`` is one prompt for every image or ``N`` prompts; the rules are :func:`adherence`'s (one object: shape,
    colour and size read in the slot the judge is surest of; position = the occupied slots are exactly that one).
    Every prompt must ask for the same attributes (one kind of prompt per call), so each array has ``N`` entries.
    """
    prompts = [prompts] * len(images) if isinstance(prompts, str) else list(prompts)
    if len(prompts) != len(images):
        raise CourseError(f"{len(images)} images but {len(prompts)} prompts")
    if not prompts:
        raise CourseError("no images to score")
    _knows(judge, concept)
    pred = read_images(judge, images)
    per_image = [_check(pred, i, expected_attributes(p, concept), judge.slot_shapes)[0] for i, p in enumerate(prompts)]
    keys = [k for k in SCORED if all(k in hits for hits in per_image)]
    if any(set(hits) != set(keys) for hits in per_image):
        raise CourseError("concept_hits scores prompts that ask for the same attributes; split them by kind")
    return {key: np.array([hits[key] for hits in per_image], dtype=bool) for key in keys}
