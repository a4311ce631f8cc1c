"""The seed's prompt grid: ``blocks_per_side``² blocks of 2×2 tiles, each block one prompt image and three fillers.

A 64-image grid is 4×4 blocks = 8×8 tiles: 16 images of the user's prompt, each at one corner of its block (fixed or
seeded), and 48 fillers. Fillers are either generated from random artistic prompts (:func:`filler_prompts` over
:data:`FILLER_CATEGORIES`; the seed's approach 3) or real pictures (:func:`real_fillers`, shapes scenes offline; the
seed's approach 1 with Flickr8k); :func:`draw_fillers` draws generated ones. :func:`block_layout` says which tile
holds what, :func:`block_grid` assembles the ``uint8`` array, :func:`grid_figure` draws it with the prompt tiles'
mean CLIPScore (Hessel et al. 2021) and its 95 % interval in the title.

Images are ``uint8`` ``(H, W, 3)`` arrays or PIL images (what diffusers pipelines return); see :func:`uint8_stack`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from course_utils.data.shapes import make_dataset
from course_utils.errors import CourseError, check_choice
from course_utils.metrics import to_uint8_images
from course_utils.stats import bootstrap_mean

__all__ = [
    "FILLER_CATEGORIES",
    "BlockLayout",
    "block_grid",
    "block_layout",
    "draw_fillers",
    "filler_categories",
    "filler_prompts",
    "grid_figure",
    "real_fillers",
    "uint8_stack",
]

# profile → category → prompts. The gpu categories are the seed's; offline every prompt is a full caption of the
# shapes world (data.shapes.parse_caption reads it, the shapes tokenizer knows every word), one category per shape.
FILLER_CATEGORIES: MappingProxyType[str, MappingProxyType[str, tuple[str, ...]]] = MappingProxyType(
    {
        "gpu": MappingProxyType(
            {
                "animal": (
                    "an impressionist painting of a fox in the snow",
                    "a watercolour of a heron standing in a misty lake",
                    "a pencil sketch of an owl on a branch at dusk",
                    "a ukiyo-e woodblock print of a koi fish",
                ),
                "landscape": (
                    "an impressionist painting of a lavender field at sunset",
                    "a watercolour of rolling hills under a stormy sky",
                    "a charcoal drawing of a mountain valley in fog",
                    "an oil painting of a desert canyon at noon",
                ),
                "object": (
                    "a still life oil painting of a teapot and lemons",
                    "a pencil sketch of an old brass pocket watch",
                    "a watercolour of a vase of sunflowers on a table",
                    "a cubist painting of a violin",
                ),
                "cityscape": (
                    "an impressionist painting of a Paris street in the rain",
                    "a watercolour of the canals of Venice at golden hour",
                    "an ink drawing of a crowded market street",
                    "an oil painting of a harbour town at dusk",
                ),
                "nature": (
                    "a watercolour of cherry blossoms in spring",
                    "an oil painting of a waterfall in a rainforest",
                    "an impressionist painting of water lilies on a pond",
                    "a botanical illustration of wildflowers in a meadow",
                ),
                "space": (
                    "a digital painting of a nebula with glowing stars",
                    "a watercolour of the moon over a quiet sea",
                    "a retro poster of a rocket leaving the earth",
                    "a pastel drawing of the milky way over a desert",
                ),
                "abstract": (
                    "an abstract painting of swirling blue and gold shapes",
                    "a geometric composition of overlapping circles in primary colours",
                    "a colour field painting in deep red and orange",
                    "an abstract expressionist canvas of splattered black paint",
                ),
            }
        ),
        "offline": MappingProxyType(
            {
                "circle": (
                    "a small red circle on the left on a grey background",
                    "a large blue circle in the centre on a black background",
                    "a small yellow circle above a large green square on a beige background",
                    "a large white circle right of a small purple triangle on a grey background",
                ),
                "square": (
                    "a large green square at the top on a beige background",
                    "a small purple square on the right on a black background",
                    "a large red square below a small white plus on a grey background",
                    "a small blue square left of a large yellow circle on a black background",
                ),
                "triangle": (
                    "a small white triangle at the bottom on a black background",
                    "a large yellow triangle in the centre on a grey background",
                    "a large blue triangle left of a small red square on a beige background",
                    "a small green triangle above a large purple circle on a black background",
                ),
                "plus": (
                    "a large purple plus on the left on a beige background",
                    "a small red plus at the top on a grey background",
                    "a small white plus right of a large blue triangle on a black background",
                    "a large yellow plus below a small green circle on a beige background",
                ),
            }
        ),
    }
)


def filler_categories(profile: str) -> Mapping[str, tuple[str, ...]]:
    """:data:`FILLER_CATEGORIES` of ``profile`` (``gpu`` or ``offline``); another name is a :class:`CourseError`."""
    return FILLER_CATEGORIES[check_choice("profile", profile, FILLER_CATEGORIES)]


def filler_prompts(*, categories: Mapping[str, Sequence[str]], n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` seeded ``(category, prompt)`` pairs: each a uniform category, then a uniform prompt of it.

    ``categories`` maps a category to its prompts (e.g. ``filler_categories("offline")``); the draws follow its
    order, so the same mapping and seed give the same list.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise CourseError(f"n must be a non-negative integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise CourseError(f"seed must be an integer, got {seed!r}")
    names = list(categories)
    if not names or any(isinstance(categories[c], str) or len(categories[c]) == 0 for c in names):
        raise CourseError("categories must map at least one category to a non-empty list of prompts")
    rng = np.random.default_rng(seed)
    drawn = []
    for _ in range(n):
        category = names[int(rng.integers(len(names)))]
        prompts = categories[category]
        drawn.append((category, prompts[int(rng.integers(len(prompts)))]))
    return drawn


def real_fillers(n: int, *, seed: int, size: int = 32) -> np.ndarray:
    """``n`` real pictures as fillers: scenes of :func:`course_utils.data.shapes.make_dataset`, ``uint8``
    ``(n, size, size, 3)``; the same seed gives the same pictures."""
    return make_dataset(n, seed=seed, size=size).images


def draw_fillers(
    prompts: Sequence[str], *, model_id: str, seed: int, steps: int | None = None, guidance_scale: float | None = None
) -> list:
    """Generated fillers (the seed's approach 3): one image per prompt from ``model_id``, image ``i`` drawn with
    ``stable_seed(seed, "filler", i)``, in one batched call (:func:`course_utils.sd.pipeline.sample_batch`)."""
    from course_utils.sd.pipeline import load_pipeline, sample_batch
    from course_utils.sd.support import check_request
    from course_utils.synthetic.ids import stable_seed

    settings, _ = check_request(model_id, steps=steps, guidance_scale=guidance_scale)
    loaded = load_pipeline(settings)
    seeds = [stable_seed(seed, "filler", i) for i in range(len(prompts))]
    images, _ = sample_batch(loaded, settings, prompts=list(prompts), seeds=seeds, batch_size=16)
    return images


def uint8_stack(images) -> np.ndarray:
    """``uint8`` ``(N, H, W, 3)`` from a ``uint8`` array, a list of PIL images or ``(H, W, 3)`` arrays, or float
    ``(N, 3, H, W)`` in ``[-1, 1]``; every image must have the same size."""
    images = to_uint8_images(images)
    if isinstance(images, np.ndarray):
        return images
    arrays = [np.asarray(im.convert("RGB")) if hasattr(im, "convert") else np.asarray(im) for im in images]
    shapes = sorted({(a.dtype.name, a.shape) for a in arrays})
    if len(shapes) != 1 or shapes[0][0] != "uint8" or len(shapes[0][1]) != 3 or shapes[0][1][-1] != 3:
        raise CourseError(f"images must be uint8 (H, W, 3) of one size, got {', '.join(f'{d} {s}' for d, s in shapes)}")
    return np.stack(arrays)


# ---------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True, eq=False)
class BlockLayout:
    """What each tile of a ``(2·blocks_per_side)²`` grid holds.

    Attributes:
        is_prompt: ``bool`` ``(tiles, tiles)``: ``True`` where a prompt image sits (one per 2×2 block).
        index: ``int`` ``(tiles, tiles)``: the prompt image's index (blocks in row-major order) on a prompt tile,
            the filler's index (filler tiles in row-major order) elsewhere.
    """

    is_prompt: np.ndarray
    index: np.ndarray

    @property
    def tiles_per_side(self) -> int:
        return self.is_prompt.shape[0]

    @property
    def blocks_per_side(self) -> int:
        return self.tiles_per_side // 2

    @property
    def n_prompts(self) -> int:
        return int(self.is_prompt.sum())

    @property
    def n_fillers(self) -> int:
        return int((~self.is_prompt).sum())


def block_layout(n_prompt_images: int, *, blocks_per_side: int, seed: int | None = None) -> BlockLayout:
    """The layout of ``blocks_per_side``² blocks of 2×2 tiles, each with one prompt image and three fillers.

    ``n_prompt_images`` must be ``blocks_per_side``² (one per block). Without ``seed`` every prompt image sits at its
    block's top-left corner; with one, at a seeded corner per block.
    """
    if isinstance(blocks_per_side, bool) or not isinstance(blocks_per_side, int) or blocks_per_side < 1:
        raise CourseError(f"blocks_per_side must be a positive integer, got {blocks_per_side!r}")
    n_blocks = blocks_per_side**2
    if n_prompt_images != n_blocks:
        root = round(n_prompt_images**0.5) if isinstance(n_prompt_images, int) and n_prompt_images > 0 else 0
        hint = f"; {n_prompt_images} fill blocks_per_side={root}" if root * root == n_prompt_images else ""
        raise CourseError(
            f"a grid of {blocks_per_side}×{blocks_per_side} blocks holds {n_blocks} prompt images (one per block),"
            f" got {n_prompt_images!r}{hint}"
        )
    # corner k of a block: (row, column) = divmod(k, 2); 0 is top-left
    corners = np.zeros(n_blocks, dtype=int) if seed is None else np.random.default_rng(seed).integers(4, size=n_blocks)
    tiles = 2 * blocks_per_side
    is_prompt = np.zeros((tiles, tiles), dtype=bool)
    index = np.zeros((tiles, tiles), dtype=int)
    for block, corner in enumerate(corners):
        (block_row, block_col), (dr, dc) = divmod(block, blocks_per_side), divmod(int(corner), 2)
        is_prompt[2 * block_row + dr, 2 * block_col + dc] = True
        index[2 * block_row + dr, 2 * block_col + dc] = block
    index[~is_prompt] = np.arange(3 * n_blocks)
    is_prompt.setflags(write=False)
    index.setflags(write=False)
    return BlockLayout(is_prompt, index)


def block_grid(prompt_images, filler_images, *, layout: BlockLayout) -> np.ndarray:
    """The grid as one ``uint8`` image ``(H·tiles, W·tiles, 3)``; tile ``(r, c)`` is ``prompt_images[layout.index[r,
    c]]`` where ``layout.is_prompt[r, c]``, else ``filler_images[layout.index[r, c]]``. All images share one size."""
    prompts, fillers = uint8_stack(prompt_images), uint8_stack(filler_images)
    if len(prompts) != layout.n_prompts or len(fillers) != layout.n_fillers:
        raise CourseError(
            f"the layout holds {layout.n_prompts} prompt images and {layout.n_fillers} fillers,"
            f" got {len(prompts)} and {len(fillers)}"
        )
    if prompts.shape[1:] != fillers.shape[1:]:
        raise CourseError(f"prompt images are {prompts.shape[1:]}, fillers {fillers.shape[1:]}: resize to one size")
    h, w = prompts.shape[1:3]
    tiles = layout.tiles_per_side
    grid = np.empty((h * tiles, w * tiles, 3), dtype=np.uint8)
    for r in range(tiles):
        for c in range(tiles):
            source = prompts if layout.is_prompt[r, c] else fillers
            grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = source[layout.index[r, c]]
    return grid


def grid_figure(
    grid: np.ndarray,
    *,
    layout: BlockLayout,
    prompt_scores,
    title: str = "One prompt image and three fillers per 2×2 block",
    min_tile_pixels: int = 96,
) -> plt.Figure:
    """Draw ``grid`` (from :func:`block_grid`): white lines between the 2×2 blocks, the prompt tiles outlined in
    yellow, and a title with the prompt tiles' mean CLIPScore and its 95 % bootstrap interval.

    ``prompt_scores`` ``(n_prompts,)``: the CLIPScore of each prompt image (``course_utils.metrics.clip_score``).
    Tiles smaller than ``min_tile_pixels`` are upscaled nearest-neighbour by a whole factor, so 32×32 tiles stay crisp.
    """
    tiles = layout.tiles_per_side
    if grid.ndim != 3 or grid.shape[0] % tiles or grid.shape[1] % tiles:
        raise CourseError(f"a grid of {tiles}×{tiles} tiles needs a (H·{tiles}, W·{tiles}, 3) image, got {grid.shape}")
    scores = np.asarray(prompt_scores, dtype=np.float64).reshape(-1)
    if scores.size != layout.n_prompts:
        raise CourseError(f"{layout.n_prompts} prompt tiles but {scores.size} prompt scores")
    scale = max(1, -(-min_tile_pixels // (grid.shape[0] // tiles)))  # ceil
    big = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    fig, ax = plt.subplots(figsize=(8, 8.6))
    ax.imshow(big, extent=(0, tiles, tiles, 0), interpolation="nearest")  # one unit per tile
    for k in range(2, tiles, 2):
        ax.axhline(k, color="white", linewidth=2.5)
        ax.axvline(k, color="white", linewidth=2.5)
    for r, c in zip(*np.nonzero(layout.is_prompt), strict=True):
        ax.add_patch(Rectangle((c + 0.04, r + 0.04), 0.92, 0.92, fill=False, edgecolor="#ffd400", linewidth=2))
    score = bootstrap_mean(scores)
    ax.set_title(
        f"{title}\nprompt tiles (outlined): mean CLIPScore {score.format()} (95 % bootstrap interval, n = {score.n})"
    )
    ax.set_axis_off()
    fig.tight_layout()
    return fig
