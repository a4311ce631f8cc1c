"""Week 5's concept: prompts, what they ask for, instance pictures, the VAE check, and the judge that reads it."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from course_utils.course.paths import MODELS_DIR
from course_utils.data.concepts import (
    HEART,
    STAR,
    Concept,
    class_prompt,
    concept_prompt,
    expected_attributes,
    export_instance_images,
    instance_images,
    instance_prompt,
    vae_check,
    world_scene,
)
from course_utils.data.shapes import (
    SHAPES,
    UNSEEN_SHAPES,
    Scene,
    ShapeSpec,
    attributes,
    make_dataset,
    prompt_attributes,
    render,
)
from course_utils.errors import CourseError
from course_utils.training.loop import TrainConfig

CONCEPT_JUDGE = MODELS_DIR / "shapes-judge-unseen"
VAE = MODELS_DIR / "shapes-sd" / "vae"


def test_the_concepts_are_unseen_shapes_named_by_a_rare_token():
    assert (HEART.shape, HEART.colour, HEART.token, HEART.class_noun) == ("heart", "red", "sks", "shape")
    assert STAR.shape == "star" and {HEART.shape, STAR.shape} <= set(UNSEEN_SHAPES)
    with pytest.raises(CourseError, match="unknown concept shape 'circle'; valid concept shapes: star, heart"):
        Concept("circle", "circle", "red")  # the model knows circles: nothing to teach
    with pytest.raises(CourseError, match="unknown colour 'pink'"):
        Concept("heart", "heart", "pink")
    with pytest.raises(CourseError, match="token is one lower-case word outside the captions' words, got 'red'"):
        Concept("heart", "heart", "red", token="red")


def test_prompts_follow_dreambooth_and_the_caption_grammar():
    assert instance_prompt(HEART) == "a sks shape" and class_prompt(HEART) == "a shape"
    assert concept_prompt(HEART) == "a sks shape"
    assert concept_prompt(HEART, position="left", background="black") == "a sks shape on the left on a black background"
    assert concept_prompt(STAR, position="centre") == "a sks shape in the centre"
    with pytest.raises(CourseError, match="unknown position 'middle'; valid positions: left, right, top, bottom"):
        concept_prompt(HEART, position="middle")


def test_a_concept_prompt_asks_for_the_concept_and_its_place():
    prompt = concept_prompt(HEART, position="left", background="black")
    expected = expected_attributes(prompt, HEART)
    assert expected == {"shape": "heart", "colour": "red", "count": "one", "position": "left", "background": "black"}
    scene = world_scene(HEART, size="small", position="left", background="black")
    assert {k: v for k, v in attributes(scene).items() if k != "size"} == expected  # the scene is what it asks for
    assert expected_attributes("a sks shape", STAR) == {"shape": "star", "colour": "yellow", "count": "one"}
    assert expected_attributes("a large sks shape at the top", HEART)["size"] == "large"
    assert expected_attributes("a shape on the right", HEART) == {"count": "one", "position": "right"}  # class prompt
    ordinary = "a small blue square on the left on a grey background"
    assert expected_attributes(ordinary, HEART) == prompt_attributes(ordinary)
    for bad in ("a blue sks shape", "a sks circle", "a sks shape left of a circle"):
        with pytest.raises(CourseError, match="cannot parse prompt"):
            expected_attributes(bad, HEART)


def test_instance_images_are_seeded_varied_and_captioned_with_the_instance_prompt(tmp_path):
    data = instance_images(HEART, n=6, seed=0)
    assert data.images.shape == (6, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.captions == ["a sks shape"] * 6
    assert all(o.shape == "heart" and o.colour == "red" for s in data.scenes for o in s.objects)
    assert len({(s.objects[0].position, s.objects[0].size, s.background) for s in data.scenes}) == 6
    assert len({s.objects[0].position for s in data.scenes}) == 5 and len({s.background for s in data.scenes}) == 3
    assert len(set(instance_images(HEART, n=30, seed=3).scenes)) == 30  # no scene repeats in the first 30
    again = instance_images(HEART, n=6, seed=0)
    assert np.array_equal(data.images, again.images) and data.scenes == again.scenes
    other = instance_images(HEART, n=6, seed=1)
    assert not np.array_equal(data.images, other.images)
    canonical = np.stack([render(s) for s in data.scenes])
    assert not np.array_equal(data.images, canonical)  # jittered, not the canonical pictures
    folder = export_instance_images(HEART, tmp_path / "instance", n=4, seed=0)
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"instance_{i:02d}.png" for i in range(4)]  # only images: DreamBooth reads all
    assert np.array_equal(np.asarray(Image.open(files[2]).convert("RGB")), data.images[2])
    with pytest.raises(CourseError, match="at least one picture"):
        instance_images(HEART, n=0)


@pytest.mark.skipif(not (VAE / "config.json").is_file(), reason="run `make models`")
def test_the_vae_check_tells_the_heart_from_the_star():
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(VAE)
    heart, star = vae_check(vae, HEART, n=48, seed=0), vae_check(vae, STAR, n=48, seed=0)
    assert heart.concept_per_image.shape == (48,) and heart.concept_psnr.method == "bootstrap"
    assert heart.concept_psnr.low <= float(heart.concept_psnr) <= heart.concept_psnr.high
    assert float(heart.ordinary_psnr) > 30  # the shapes it was trained on come back well
    assert float(heart.concept_psnr) > 28  # the heart does too, a few dB lower
    assert star.gap.high < heart.gap.low  # the star's points cost clearly more than the heart
    with pytest.raises(CourseError, match="at least two"):
        vae_check(vae, HEART, n=1)


# ---------------------------------------------------------------------------------------------- the concept judge


def test_the_concept_judge_is_initialised_and_trained_reproducibly():
    from course_utils.models.shapes_judge import judge_accuracy
    from course_utils.models.stages import concept_world, train_concept_judge

    train_set, held_out = concept_world({"n": 300, "seed": 5, "held_out_fraction": 0.2})
    assert {o.shape for s in train_set.scenes for o in s.objects} == set(SHAPES + UNSEEN_SHAPES)
    config = TrainConfig(steps=30, batch_size=32, lr=3e-3, warmup_steps=5, ema_decay=0.5, seed=0)
    torch.rand(5)  # what ran before must not matter
    a = train_concept_judge(train_set, config=config, width=8, hidden=32)
    b = train_concept_judge(train_set, config=config, width=8, hidden=32)
    assert a.config.shapes == SHAPES + UNSEEN_SHAPES
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    c = train_concept_judge(train_set, config=replace(config, seed=1), width=8, hidden=32)
    assert not torch.equal(a.shape_head.weight, c.shape_head.weight)
    assert judge_accuracy(a, held_out.images, held_out.scenes)["background"] > 0.5  # chance is 1/3


@pytest.mark.skipif(not (CONCEPT_JUDGE / "config.json").is_file(), reason="run `make models`")
def test_the_committed_concept_judge_reads_unseen_shapes_in_held_out_renders():
    from course_utils.models.shapes_judge import concept_rate, judge_accuracy, load_shapes_judge

    judge = load_shapes_judge(CONCEPT_JUDGE)
    assert judge.slot_shapes == ("none", *SHAPES, *UNSEEN_SHAPES)
    world = make_dataset(400, seed=777, shapes=SHAPES + UNSEEN_SHAPES)  # not the training seed
    accuracy = judge_accuracy(judge, world.images, world.scenes)
    assert accuracy["mean_accuracy"] > 0.97, accuracy
    for concept in (HEART, STAR):
        pictures = instance_images(concept, n=40, seed=9)
        assert concept_rate(judge, pictures.images, concept).mean() > 0.95
        ordinary = make_dataset(200, seed=778)  # the training world: no concept anywhere
        assert concept_rate(judge, ordinary.images, concept).mean() < 0.03


@pytest.mark.skipif(not (CONCEPT_JUDGE / "config.json").is_file(), reason="run `make models`")
def test_concept_hits_score_each_asked_attribute():
    from course_utils.models.shapes_judge import concept_hits, load_shapes_judge

    judge = load_shapes_judge(CONCEPT_JUDGE)
    prompt = concept_prompt(HEART, position="left", background="black")
    right = [render(world_scene(HEART, size=s, position="left", background="black")) for s in ("small", "large")]
    wrong_place = render(world_scene(HEART, position="right", background="grey"))
    wrong_shape = render(Scene((ShapeSpec("circle", "red", "large", "left"),), "black"))
    hits = concept_hits(judge, np.stack([*right, wrong_place, wrong_shape]), prompt, HEART)
    assert set(hits) == {"shape", "colour", "position", "background"}
    assert hits["shape"].tolist() == [True, True, True, False]
    assert hits["colour"].tolist() == [True] * 4
    assert hits["position"].tolist() == [True, True, False, True]
    assert hits["background"].tolist() == [True, True, False, True]
    with pytest.raises(CourseError, match="4 images but 2 prompts"):
        concept_hits(judge, np.stack([*right, wrong_place, wrong_shape]), [prompt, prompt], HEART)


@pytest.mark.skipif(not (MODELS_DIR / "shapes-judge" / "config.json").is_file(), reason="run `make models`")
def test_the_training_world_judge_refuses_a_concept_it_cannot_read():
    from course_utils.models.shapes_judge import concept_rate, load_shapes_judge

    judge = load_shapes_judge(MODELS_DIR / "shapes-judge")
    assert judge.slot_shapes == ("none", *SHAPES)  # its config.json predates the field: the training world
    with pytest.raises(CourseError, match="reads only circle, square, triangle, plus, not the concept's heart"):
        concept_rate(judge, instance_images(HEART, n=2).images, HEART)
