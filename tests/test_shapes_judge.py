"""The attribute judge: slot labels, the adherence rules (on a judge that reads scenes exactly), the committed one."""

import json

import numpy as np
import pytest
import torch

from course_utils.course.paths import MODELS_DIR
from course_utils.data.shapes import (
    POSITIONS,
    SHAPES,
    UNSEEN_SHAPES,
    Scene,
    ShapeSpec,
    caption,
    make_dataset,
    to_tensor,
)
from course_utils.errors import CourseError
from course_utils.models.shapes_judge import (
    ShapesJudge,
    adherence,
    judge_accuracy,
    load_shapes_judge,
    read_images,
    slot_targets,
    train_shapes_judge,
)
from course_utils.training.loop import TrainConfig

RED_CIRCLE_LEFT = Scene((ShapeSpec("circle", "red", "small", "left"),), "grey")
PAIR = Scene.pair(ShapeSpec("square", "blue", "large"), ShapeSpec("plus", "yellow", "small"), relation="above")


class ExactJudge(torch.nn.Module):
    """Reads image ``i`` as ``scenes[i]`` exactly (one-hot logits from the ground-truth slot labels)."""

    def __init__(self, scenes):
        super().__init__()
        self.targets = slot_targets(scenes)
        self.slot_shapes = ("none", *SHAPES)
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    @property
    def device(self):
        return self.anchor.device

    @property
    def dtype(self):
        return self.anchor.dtype

    def forward(self, images):
        t = self.targets
        one_hot = {
            k: torch.nn.functional.one_hot(v.clamp(min=0), n).float() * 10
            for k, v, n in (
                ("shape", t["shape"], 5),
                ("colour", t["colour"], 6),
                ("size", t["size"], 2),
                ("background", t["background"], 3),
            )
        }
        return {k: v[: len(images)] for k, v in one_hot.items()}


def test_slot_targets_put_each_object_in_its_position():
    y = slot_targets([RED_CIRCLE_LEFT, PAIR])
    left, top, bottom = POSITIONS.index("left"), POSITIONS.index("top"), POSITIONS.index("bottom")
    assert y["shape"][0].tolist() == [1 if s == left else 0 for s in range(5)]  # 1 = circle, 0 = empty
    assert y["colour"][0, left] == 0 and (y["colour"][0, torch.arange(5) != left] == -100).all()
    assert y["shape"][1, top] == 2 and y["shape"][1, bottom] == 4  # square above plus
    assert y["size"][1, top] == 1 and y["size"][1, bottom] == 0 and y["background"].tolist() == [0, 0]


def test_a_judge_reads_the_shapes_of_its_world():
    assert ShapesJudge().slot_shapes == ("none", *SHAPES) and ShapesJudge().config.shapes == SHAPES
    wide = ShapesJudge(width=8, hidden=16, shapes=SHAPES + UNSEEN_SHAPES)
    assert wide(torch.zeros(2, 3, 32, 32))["shape"].shape == (2, 5, 7)
    star = Scene((ShapeSpec("star", "red", "small", "top"),), "grey")
    y = slot_targets([star, RED_CIRCLE_LEFT], shapes=wide.config.shapes)
    assert y["shape"][0, POSITIONS.index("top")] == 5 and y["shape"][1, POSITIONS.index("left")] == 1
    with pytest.raises(CourseError, match="unknown shape the judge reads 'star'; valid shape the judge reads"):
        slot_targets([star])
    with pytest.raises(CourseError, match="unknown shape 'hexagon'"):
        ShapesJudge(shapes=("circle", "hexagon"))
    with pytest.raises(CourseError, match="distinct"):
        ShapesJudge(shapes=("circle", "circle"))


def score(scene, prompt):
    return adherence(ExactJudge([scene]), torch.zeros(1, 3, 32, 32), [prompt])


def test_a_faithful_picture_adheres_to_its_full_and_partial_captions():
    for scene in (RED_CIRCLE_LEFT, PAIR):
        for omit in ((), ("colour", "size"), ("background",), ("colour_2", "size_2")):
            result = score(scene, caption(scene, omit=omit))
            assert result.overall == 1.0 and result.exact == 1.0, caption(scene, omit=omit)
    assert set(score(PAIR, caption(PAIR)).per_attribute) == {"shape", "colour", "size", "relation", "background"}
    assert set(score(RED_CIRCLE_LEFT, "a red circle").per_attribute) == {"shape", "colour"}


def test_each_wrong_attribute_costs_only_itself():
    result = score(RED_CIRCLE_LEFT, "a small blue circle on the right on a grey background")
    assert result.per_attribute == {"shape": 1.0, "colour": 0.0, "size": 1.0, "position": 0.0, "background": 1.0}
    assert result.overall == pytest.approx(3 / 5) and result.exact == 0.0
    assert result.frequency("colour", "red") == 1.0 and result.frequency("colour", "blue") == 0.0


def test_two_objects_are_told_apart_by_where_the_relation_puts_them():
    # the same picture, described from the other object: still right
    assert score(PAIR, "a small yellow plus below a large blue square on a grey background").overall == 1.0
    # objects swapped: the relation's slots are occupied, but each holds the other object
    swapped = score(PAIR, "a large blue square below a small yellow plus on a grey background")
    assert swapped.per_attribute["relation"] == 1.0 and swapped.per_attribute["shape"] == 0.0
    # side by side instead of stacked: the relation fails, and nothing is where the objects should be
    assert score(PAIR, "a large blue square left of a small yellow plus").per_attribute["relation"] == 0.0


def test_bad_input_is_one_line():
    judge = ExactJudge([RED_CIRCLE_LEFT])
    with pytest.raises(CourseError, match="1 images but 2 prompts"):
        adherence(judge, torch.zeros(1, 3, 32, 32), ["a circle", "a square"])
    with pytest.raises(CourseError, match="cannot parse caption"):
        adherence(judge, torch.zeros(1, 3, 32, 32), ["a red dog"])
    with pytest.raises(CourseError, match="no shapes judge"):
        load_shapes_judge("/nonexistent")


def test_brief_training_reads_renders_better_than_chance(tmp_path):
    torch.manual_seed(0)
    data = make_dataset(400, seed=5)
    config = TrainConfig(steps=60, batch_size=32, lr=3e-3, warmup_steps=5, ema_decay=0.5, seed=0)
    with torch.random.fork_rng():
        judge, losses = train_shapes_judge(ShapesJudge(width=8, hidden=32), data.images, data.scenes, config=config)
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    judge.save_pretrained(tmp_path, safe_serialization=True)
    again = load_shapes_judge(tmp_path)
    assert torch.equal(read_images(again, data.images[:8])["shape"], read_images(judge, data.images[:8])["shape"])
    assert judge_accuracy(again, data.images, data.scenes)["background"] > 0.5  # chance is 1/3


@pytest.mark.skipif(not (MODELS_DIR / "shapes-judge" / "config.json").is_file(), reason="run `make models`")
def test_the_committed_judge_reads_held_out_renders_and_their_captions():
    judge = load_shapes_judge(MODELS_DIR / "shapes-judge")
    saved = json.loads((MODELS_DIR / "shapes-judge" / "config.json").read_text())
    assert "shapes" not in saved and judge.slot_shapes == ("none", *SHAPES)  # saved before the field existed
    assert judge.shape_head.out_features == len(POSITIONS) * 5
    data = make_dataset(300, seed=12345)  # not the training seed
    accuracy = judge_accuracy(judge, data.images, data.scenes)
    assert accuracy["mean_accuracy"] > 0.97, accuracy
    faithful = adherence(judge, to_tensor(data.images), data.captions)
    shuffled = adherence(judge, data.images, data.captions[1:] + data.captions[:1])
    assert faithful.overall > 0.95 and shuffled.overall < 0.6, (faithful.overall, shuffled.overall)
