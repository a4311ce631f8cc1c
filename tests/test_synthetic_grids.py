"""The prompt grid of 2×2 blocks (layout, assembly, figure), its filler prompts, and the diversity measures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from course_utils.data.shapes import parse_caption, to_tensor
from course_utils.errors import CourseError
from course_utils.models.shapes_clip import unknown_words
from course_utils.synthetic.diversity import (
    caption_diversity,
    distinct_n,
    image_diversity,
    image_diversity_by_group,
    words,
)
from course_utils.synthetic.grids import (
    FILLER_CATEGORIES,
    block_grid,
    block_layout,
    filler_categories,
    filler_prompts,
    grid_figure,
    real_fillers,
    uint8_stack,
)


def distinct_images(n: int, *, size: int = 4, offset: int = 0) -> np.ndarray:
    """``n`` uint8 images, image ``i`` filled with the value ``offset + i`` (so each tile says where it came from)."""
    values = np.arange(offset, offset + n, dtype=np.uint8)
    return np.broadcast_to(values[:, None, None, None], (n, size, size, 3)).copy()


# ---------------------------------------------------------------------------------------------- layout


@pytest.mark.parametrize("seed", [None, 0, 7])
@pytest.mark.parametrize("blocks_per_side", [1, 2, 4])
def test_every_block_holds_one_prompt_tile_and_every_index_is_used_once(blocks_per_side, seed):
    layout = block_layout(blocks_per_side**2, blocks_per_side=blocks_per_side, seed=seed)
    tiles = 2 * blocks_per_side
    assert layout.is_prompt.shape == layout.index.shape == (tiles, tiles)
    blocks = layout.is_prompt.reshape(blocks_per_side, 2, blocks_per_side, 2).sum(axis=(1, 3))
    assert (blocks == 1).all()
    assert sorted(layout.index[layout.is_prompt]) == list(range(blocks_per_side**2))
    assert sorted(layout.index[~layout.is_prompt]) == list(range(3 * blocks_per_side**2))
    # prompt index = the block's row-major number
    for r, c in zip(*np.nonzero(layout.is_prompt), strict=True):
        assert layout.index[r, c] == (r // 2) * blocks_per_side + c // 2


def test_a_64_image_grid_is_16_prompt_tiles_and_48_fillers():
    layout = block_layout(16, blocks_per_side=4)
    assert (layout.tiles_per_side, layout.blocks_per_side) == (8, 4)
    assert (layout.n_prompts, layout.n_fillers) == (16, 48)
    assert layout.is_prompt[::2, ::2].all()  # fixed corner: top-left of every block


def test_seeded_corners_are_reproducible_and_vary():
    a, b = block_layout(16, blocks_per_side=4, seed=1), block_layout(16, blocks_per_side=4, seed=1)
    assert np.array_equal(a.is_prompt, b.is_prompt) and np.array_equal(a.index, b.index)
    corners = {tuple(np.argwhere(a.is_prompt.reshape(4, 2, 4, 2)[i, :, j, :])[0]) for i in range(4) for j in range(4)}
    assert len(corners) > 1
    assert not np.array_equal(a.is_prompt, block_layout(16, blocks_per_side=4, seed=2).is_prompt)


@pytest.mark.parametrize(
    ("n_prompt_images", "blocks_per_side", "says"),
    [
        (15, 4, "holds 16 prompt images"),
        (9, 4, "blocks_per_side=3"),
        (16, 0, "positive integer"),
        (4, 2.0, "positive integer"),
    ],
)
def test_bad_sizes_are_one_line_errors_naming_what_is_valid(n_prompt_images, blocks_per_side, says):
    with pytest.raises(CourseError, match=says) as err:
        block_layout(n_prompt_images, blocks_per_side=blocks_per_side)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------- assembly


def test_each_tile_of_the_grid_is_its_input_image():
    layout = block_layout(16, blocks_per_side=4, seed=3)
    prompts, fillers = distinct_images(16, size=5), distinct_images(48, size=5, offset=100)
    grid = block_grid(prompts, [Image.fromarray(f) for f in fillers], layout=layout)
    assert grid.dtype == np.uint8 and grid.shape == (40, 40, 3)
    for r in range(8):
        for c in range(8):
            source = prompts if layout.is_prompt[r, c] else fillers
            assert np.array_equal(grid[5 * r : 5 * r + 5, 5 * c : 5 * c + 5], source[layout.index[r, c]])


def test_the_grid_refuses_wrong_counts_and_sizes():
    layout = block_layout(4, blocks_per_side=2)
    with pytest.raises(CourseError, match="4 prompt images and 12 fillers"):
        block_grid(distinct_images(4), distinct_images(11), layout=layout)
    with pytest.raises(CourseError, match="one size"):
        block_grid(distinct_images(4, size=4), distinct_images(12, size=6), layout=layout)
    with pytest.raises(CourseError, match="one size"):
        uint8_stack([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)])


def test_uint8_stack_reads_pil_and_float_tensors():
    images = distinct_images(3, offset=10)
    assert np.array_equal(uint8_stack([Image.fromarray(im) for im in images]), images)
    assert np.array_equal(uint8_stack(to_tensor(images)), images)


def test_the_figure_outlines_prompt_tiles_and_titles_the_mean_score():
    layout = block_layout(16, blocks_per_side=4, seed=0)
    grid = block_grid(real_fillers(16, seed=1), real_fillers(48, seed=2), layout=layout)
    scores = np.linspace(20.0, 30.0, 16)
    fig = grid_figure(grid, layout=layout, prompt_scores=scores)
    ax = fig.axes[0]
    assert len(ax.patches) == 16
    assert len(ax.lines) == 2 * 3  # block borders: 3 horizontal, 3 vertical
    shown = ax.images[0].get_array()
    assert shown.shape == (8 * 96, 8 * 96, 3)  # 32-pixel tiles upscaled ×3, nearest-neighbour
    assert np.array_equal(shown[::3, ::3], grid)
    assert "mean CLIPScore 25" in ax.get_title() and "95 %" in ax.get_title()
    with pytest.raises(CourseError, match="16 prompt tiles but 15"):
        grid_figure(grid, layout=layout, prompt_scores=scores[:15])
    plt.close("all")


def test_real_fillers_are_seeded_shapes_scenes():
    a = real_fillers(6, seed=4)
    assert a.dtype == np.uint8 and a.shape == (6, 32, 32, 3)
    assert np.array_equal(a, real_fillers(6, seed=4))
    assert not np.array_equal(a, real_fillers(6, seed=5))


# ---------------------------------------------------------------------------------------------- filler prompts


@pytest.mark.parametrize("profile", ["gpu", "offline"])
def test_filler_prompts_are_deterministic_per_seed_and_differ_across_seeds(profile):
    categories = filler_categories(profile)
    a = filler_prompts(categories=categories, n=48, seed=0)
    assert a == filler_prompts(categories=categories, n=48, seed=0)
    assert a != filler_prompts(categories=categories, n=48, seed=1)
    assert len(a) == 48 and all(prompt in categories[category] for category, prompt in a)
    assert len({category for category, _ in a}) > 1


def test_the_gpu_categories_are_the_seeds():
    expected = {"animal", "landscape", "object", "cityscape", "nature", "space", "abstract"}
    assert set(FILLER_CATEGORIES["gpu"]) == expected


def test_offline_filler_prompts_are_shapes_captions():
    for category, prompts in FILLER_CATEGORIES["offline"].items():
        for prompt in prompts:
            assert unknown_words(prompt) == [], prompt
            assert parse_caption(prompt).objects[0].shape == category


def test_filler_prompts_refuse_bad_arguments():
    with pytest.raises(CourseError, match="valid profiles: gpu, offline"):
        filler_categories("cloud")
    with pytest.raises(CourseError, match="non-empty"):
        filler_prompts(categories={"animal": ()}, n=3, seed=0)
    with pytest.raises(CourseError, match="non-negative"):
        filler_prompts(categories=FILLER_CATEGORIES["gpu"], n=-1, seed=0)
    with pytest.raises(CourseError, match="seed must be an integer"):
        filler_prompts(categories=FILLER_CATEGORIES["gpu"], n=3, seed=None)


# ---------------------------------------------------------------------------------------------- diversity


def test_distinct_n_on_a_hand_made_example():
    captions = ["a b a", "a b"]
    # unigrams: a b a | a b → 5, distinct {a, b}; bigrams: (a b) (b a) | (a b) → 3, distinct {(a b), (b a)}
    assert distinct_n(captions, 1) == pytest.approx(2 / 5)
    assert distinct_n(captions, 2) == pytest.approx(2 / 3)
    assert caption_diversity(captions) == pytest.approx({"distinct_1": 2 / 5, "distinct_2": 2 / 3, "vocabulary": 2})
    # n-grams never span captions: "b" + "a" across the boundary is not a bigram
    assert distinct_n(["a b", "a b"], 2) == pytest.approx(1 / 2)


def test_distinct_n_lowercases_and_splits_on_punctuation():
    assert words("A cat, wearing NEON-glasses!") == ["a", "cat", "wearing", "neon", "glasses"]
    assert distinct_n(["Cat.", "cat"], 1) == pytest.approx(1 / 2)
    with pytest.raises(CourseError, match="fewer than 3 words"):
        distinct_n(["a b", "c"], 3)
    with pytest.raises(CourseError, match="positive integer"):
        distinct_n(["a b"], 0)


def test_image_diversity_is_zero_for_identical_images_and_positive_otherwise():
    same = np.repeat(real_fillers(1, seed=0), 4, axis=0)
    assert image_diversity(same) == 0.0
    assert image_diversity([Image.fromarray(im) for im in same]) == 0.0
    varied = real_fillers(4, seed=0)
    assert image_diversity(varied) > 0.0
    # the mean over ordered pairs of RMS distances in [-1, 1]
    x = to_tensor(varied).flatten(1)
    pairs = [torch.sqrt(((x[i] - x[j]) ** 2).mean()) for i in range(4) for j in range(4) if i != j]
    assert image_diversity(varied) == pytest.approx(float(torch.stack(pairs).mean()), rel=1e-5)


def test_image_diversity_by_group_averages_the_groups():
    same, varied = np.repeat(real_fillers(1, seed=0), 3, axis=0), real_fillers(3, seed=1)
    images = np.concatenate([same, varied])
    estimate = image_diversity_by_group(images, ["same"] * 3 + ["varied"] * 3)
    assert estimate.n == 2
    assert estimate.value == pytest.approx(image_diversity(varied) / 2)
    assert estimate.low <= estimate.value <= estimate.high
    with pytest.raises(CourseError, match="groups with one: lonely"):
        image_diversity_by_group(images, ["same"] * 3 + ["varied"] * 2 + ["lonely"])
    with pytest.raises(CourseError, match="6 images but 5 group labels"):
        image_diversity_by_group(images, ["same"] * 5)
