"""Week 6's synthetic-data study: the narrow split, the downstream captioner, the study's table, the folder reader."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from course_utils.data.narrow import (
    ALL_COMBINATIONS,
    SEEN_COMBINATIONS,
    UNSEEN_COMBINATIONS,
    combination,
    make_combination_dataset,
    narrow_split,
    title,
)
from course_utils.data.shapes import COLOURS, SHAPES, Scene, ShapesDataset, ShapeSpec, caption, parse_caption
from course_utils.errors import CourseError
from course_utils.models.shapes_captioner import (
    HEADS,
    caption_hits,
    predict_attributes,
    predict_captions,
    train_shapes_captioner,
)
from course_utils.synthetic.study import (
    CONDITIONS,
    DIFFERENCES,
    MEASURES,
    StudyConfig,
    load_synthetic_folder,
    research_study,
    synthetic_labels,
)
from course_utils.training.loop import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread, no OpenMP contention on a busy machine

TINY = TrainConfig(steps=12, batch_size=16, lr=3e-3, warmup_steps=2, use_ema=False, seed=0)


# ---------------------------------------------------------------------------------------------- the narrow split


def test_the_combinations_are_narrow_and_cover_every_word():
    assert set(SEEN_COMBINATIONS).isdisjoint(UNSEEN_COMBINATIONS)
    assert set(SEEN_COMBINATIONS) | set(UNSEEN_COMBINATIONS) == set(ALL_COMBINATIONS) and len(ALL_COMBINATIONS) == 24
    for shape in SHAPES:  # each shape in exactly two of the six colours
        assert sum(s == shape for s, _ in SEEN_COMBINATIONS) == 2
    assert {c for _, c in SEEN_COMBINATIONS} == set(COLOURS)  # every colour is seen, only pairs are new


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_the_split_never_lets_an_unseen_combination_into_the_real_sets(seed):
    split = narrow_split(n_real=50, n_extra=40, n_test_unseen=40, n_test_seen=20, seed=seed)
    for part in (split.real, split.extra_real, split.test_seen):
        assert {combination(s) for s in part.scenes} <= set(SEEN_COMBINATIONS)
    assert {combination(s) for s in split.test_unseen.scenes} == set(UNSEEN_COMBINATIONS)  # balanced: every one
    for part in (split.real, split.extra_real, split.test_unseen, split.test_seen):
        assert [caption(s) for s in part.scenes] == part.captions
        assert all(parse_caption(c) == s for c, s in zip(part.captions, part.scenes, strict=True))
    # the control's pictures are new pictures, not copies of the real set's
    assert not any((split.extra_real.images[:, None] == split.real.images[None]).all(axis=(2, 3, 4)).any(axis=1))


def test_the_split_is_seeded_and_its_test_sets_do_not_follow_the_training_seed():
    a = narrow_split(n_real=16, n_extra=8, n_test_unseen=16, n_test_seen=8, seed=3)
    b = narrow_split(n_real=16, n_extra=8, n_test_unseen=16, n_test_seen=8, seed=3)
    c = narrow_split(n_real=16, n_extra=8, n_test_unseen=16, n_test_seen=8, seed=4)
    assert np.array_equal(a.real.images, b.real.images) and a.real.captions == b.real.captions
    assert not np.array_equal(a.real.images, c.real.images)
    assert np.array_equal(a.test_unseen.images, c.test_unseen.images)
    # a longer real set extends a shorter one; the control's pictures follow it in the same stream
    longer = narrow_split(n_real=24, n_extra=0, n_test_unseen=1, n_test_seen=1, seed=3)
    assert np.array_equal(longer.real.images[:16], a.real.images)
    assert np.array_equal(longer.real.images[16:24], a.extra_real.images)
    with pytest.raises(CourseError, match="colour"):
        make_combination_dataset(2, seed=0, combinations=[("circle", "pink")])


# ---------------------------------------------------------------------------------------------- the captioner


@pytest.fixture(scope="module")
def small_data():
    return make_combination_dataset(64, seed=5, combinations=ALL_COMBINATIONS)


def test_the_captioners_captions_parse_and_agree_with_its_heads(small_data):
    model, losses = train_shapes_captioner(small_data.images, small_data.scenes, config=TINY)
    assert len(losses) == TINY.steps and all(np.isfinite(losses))
    texts = predict_captions(model, small_data.images)
    heads = predict_attributes(model, small_data.images)
    assert len(texts) == len(small_data)
    for i, text in enumerate(texts):
        only = parse_caption(text).objects[0]
        assert only.shape == HEADS["shape"][int(heads["shape"][i])]
        assert only.colour == HEADS["colour"][int(heads["colour"][i])]
        assert parse_caption(text).background == HEADS["background"][int(heads["background"][i])]
    hits = caption_hits(model, small_data.images, small_data.scenes)
    assert np.array_equal(hits["exact"], np.array([t == c for t, c in zip(texts, small_data.captions, strict=True)]))
    assert np.array_equal(hits["shape_colour"], hits["shape"] & hits["colour"])


def test_training_is_deterministic_per_seed(small_data):
    a, la = train_shapes_captioner(small_data.images, small_data.scenes, config=TINY)
    b, lb = train_shapes_captioner(small_data.images, small_data.scenes, config=TINY)
    c, _ = train_shapes_captioner(
        small_data.images, small_data.scenes, config=TrainConfig(**{**TINY.__dict__, "seed": 1})
    )
    assert la == lb
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_the_captioner_learns_its_data():
    """A few hundred steps on 8 combinations: held-out pictures of the same combinations are captioned right."""
    split = narrow_split(n_real=160, n_extra=0, n_test_unseen=8, n_test_seen=80, seed=0)
    config = TrainConfig(steps=150, batch_size=32, lr=3e-3, warmup_steps=10, use_ema=False, seed=0)
    model, _ = train_shapes_captioner(split.real.images, split.real.scenes, config=config)
    assert caption_hits(model, split.test_seen.images, split.test_seen.scenes)["shape_colour"].mean() > 0.8


def test_the_captioner_refuses_two_objects_and_ema():
    pair = Scene.pair(ShapeSpec("circle", "red", "small"), ShapeSpec("plus", "blue", "large"), relation="above")
    with pytest.raises(CourseError, match="one-object"):
        train_shapes_captioner(np.zeros((1, 32, 32, 3), np.uint8), [pair], config=TINY)
    with pytest.raises(CourseError, match="use_ema"):
        train_shapes_captioner(np.zeros((1, 32, 32, 3), np.uint8), [pair], config=TrainConfig(use_ema=True))


# ---------------------------------------------------------------------------------------------- the study


def test_the_study_returns_its_table_with_intervals_that_hold_their_values():
    synthetic = make_combination_dataset(24, seed=11, combinations=ALL_COMBINATIONS)  # renders stand in for SD here
    config = StudyConfig(n_real=32, n_test_unseen=32, n_test_seen=16, steps=8, batch_size=16, warmup_steps=2)
    threads = torch.get_num_threads()
    result = research_study(synthetic=synthetic, seeds=(0, 1), config=StudyConfig(**{**config.__dict__, "threads": 2}))
    assert torch.get_num_threads() == threads  # the study's thread setting is restored
    assert set(result.estimates) == set(CONDITIONS) and set(result.differences) == set(DIFFERENCES)
    assert result.train_sizes == {"real": 32, "real+synthetic": 56, "real+extra-real": 56}
    assert result.synthetic_unseen_share == pytest.approx(16 / 24)
    for cond in CONDITIONS:
        assert set(result.estimates[cond]) == set(MEASURES)
        assert result.hits[cond]["unseen_exact"].shape == (32, 2)
        assert result.hits[cond]["seen_exact"].shape == (16, 2)
        for m, e in result.estimates[cond].items():
            assert e.low <= e.value <= e.high and e.value == pytest.approx(result.hits[cond][m].mean())
    for name, (a, b) in DIFFERENCES.items():
        for m, d in result.differences[name].items():
            assert d.low <= d.value <= d.high
            assert d.value == pytest.approx(result.estimates[a][m].value - result.estimates[b][m].value)
    table = result.table().splitlines()
    assert len(table) == 2 + len(CONDITIONS) + len(DIFFERENCES)
    assert all(line.count("|") == len(MEASURES) + 3 for line in table)
    assert result.verdict().startswith("Synthetic data")
    json.dumps(result.records())


def test_the_study_reads_labels_from_the_captions_not_the_scenes():
    """A synthetic picture's label is what was asked for: the caption, whatever the scene field says."""
    asked = "a small red square on the left on a grey background"
    drawn = Scene((ShapeSpec("circle", "blue", "large", "right"),), "black")
    data = ShapesDataset(np.zeros((1, 32, 32, 3), np.uint8), [asked], [drawn])
    assert synthetic_labels(data) == [parse_caption(asked)]
    two = "a small red square above a large blue plus on a grey background"
    with pytest.raises(CourseError, match="two objects"):
        synthetic_labels(ShapesDataset(np.zeros((1, 32, 32, 3), np.uint8), [two], [parse_caption(two)]))
    with pytest.raises(CourseError, match="at least two distinct seeds"):
        research_study(synthetic=data, seeds=(0,))


def test_a_killed_study_resumes_at_the_next_model(tmp_path, monkeypatch):
    """The cache keeps each trained model's scores: a study killed after some models trains only the rest, and ends
    with the estimates of an uninterrupted one; another configuration never reads them."""
    import course_utils.synthetic.study as study

    synthetic = make_combination_dataset(24, seed=11, combinations=ALL_COMBINATIONS)
    config = StudyConfig(n_real=32, n_test_unseen=32, n_test_seen=16, steps=8, batch_size=16, warmup_steps=2)
    whole = research_study(synthetic=synthetic, seeds=(0, 1), config=config)
    trained = []
    real_train = study.train_shapes_captioner

    def killed_after_two(*args, **kwargs):
        if len(trained) == 2:
            raise KeyboardInterrupt  # stands in for the kill
        trained.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(study, "train_shapes_captioner", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        research_study(synthetic=synthetic, seeds=(0, 1), config=config, cache=tmp_path)
    monkeypatch.setattr(study, "train_shapes_captioner", lambda *a, **k: (trained.append(1), real_train(*a, **k))[1])
    resumed = research_study(synthetic=synthetic, seeds=(0, 1), config=config, cache=tmp_path)
    assert len(trained) == 6  # 2 before the kill, the other 4 after: none trained twice
    assert resumed.estimates == whole.estimates and resumed.differences == whole.differences
    other = research_study(synthetic=synthetic, seeds=(0, 1), config=replace(config, steps=9), cache=tmp_path)
    assert len(trained) == 12 and other.estimates != whole.estimates


def test_the_pipelines_own_folder_is_the_studys_synthetic_set(tmp_path, one_thread):
    """A pipeline run on shapes titles reads back as full one-object captions, each picture labelled by its caption."""
    from course_utils.synthetic.outputs import read_rows
    from course_utils.synthetic.pipeline import SyntheticConfig, run

    titles = tmp_path / "titles.csv"
    titles.write_text("title\n" + "".join(f"{title(c)}\n" for c in UNSEEN_COMBINATIONS[:3]))
    run(SyntheticConfig(input=titles, output_dir=tmp_path / "out", variations=2, num_inference_steps=2), progress=False)
    data = load_synthetic_folder(tmp_path / "out")
    rows = read_rows(tmp_path / "out")
    assert data.images.shape == (6, 32, 32, 3) and sorted(data.captions) == sorted(r["caption"] for r in rows)
    assert [combination(s) for s in synthetic_labels(data)] == [c for c in UNSEEN_COMBINATIONS[:3] for _ in range(2)]


# ---------------------------------------------------------------------------------------------- the folder


def _write_folder(folder, images, captions, **extra):
    (folder / "images").mkdir(parents=True)
    with (folder / "metadata.jsonl").open("w", encoding="utf-8") as f:
        for i, (image, text) in enumerate(zip(images, captions, strict=True)):
            name = f"images/{i:04d}.png"
            Image.fromarray(image).save(folder / name)
            f.write(json.dumps({"file_name": name, "text": text, **extra}) + "\n")


def test_load_synthetic_folder_round_trips_an_imagefolder(tmp_path):
    data = make_combination_dataset(6, seed=2, combinations=UNSEEN_COMBINATIONS)
    _write_folder(tmp_path / "run", data.images, data.captions, title="a red square", clip_score=0.3)
    back = load_synthetic_folder(tmp_path / "run")
    assert np.array_equal(back.images, data.images)
    assert back.captions == data.captions and back.scenes == data.scenes
    # a larger model's pictures are box-resampled to the captioner's 32 px
    big = np.repeat(np.repeat(data.images, 2, axis=1), 2, axis=2)  # (6, 64, 64, 3), each pixel 2×2
    _write_folder(tmp_path / "big", big, data.captions)
    assert np.array_equal(load_synthetic_folder(tmp_path / "big").images, data.images)


def test_load_synthetic_folder_refuses_what_the_study_cannot_read(tmp_path):
    image = np.zeros((1, 32, 32, 3), np.uint8)
    _write_folder(tmp_path / "dish", image, ["Almond Horchata, in a tall glass"])
    with pytest.raises(CourseError, match="cannot read the synthetic folder"):
        load_synthetic_folder(tmp_path / "dish")
    _write_folder(tmp_path / "pair", image, ["a small red square above a large blue plus on a grey background"])
    with pytest.raises(CourseError, match="two objects"):
        load_synthetic_folder(tmp_path / "pair")
    with pytest.raises(CourseError, match="metadata.jsonl"):
        load_synthetic_folder(tmp_path / "nothing")
