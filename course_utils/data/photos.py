"""Bundled photos that need no network (scikit-image's), the course's shipped drawings, and the test images each
denoiser sees: held-out digits for the digits model, shapes scenes for the pixel-space shapes model (3×32×32), the
photos for the Hub's models.

Images come out as float tensors of shape ``(B, C, H, W)`` in ``[-1, 1]``, the range the diffusion
models see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from course_utils.data.digits import load_digits_split
from course_utils.data.shapes import make_dataset, parse_caption, render, to_tensor
from course_utils.errors import CourseError, check_choice

__all__ = [
    "EXAMPLE_SCENE",
    "EXAMPLE_SCENES_SEED",
    "PHOTOS",
    "example_batch",
    "example_image",
    "example_label",
    "fit_image",
    "load_image",
    "load_photo",
]

PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket")
SHAPES_SAMPLE_SHAPE = (3, 32, 32)  # the pixel-space shapes model's images
EXAMPLE_SCENE = "a large red circle left of a small blue square on a grey background"
"""The shapes model's test image (:func:`example_image`), drawn canonically."""
EXAMPLE_SCENES_SEED = 1213
"""Seed of the shapes scenes :func:`example_batch` measures the shapes model on (not the training set's seed)."""


def load_photo(name: str = "astronaut", *, size: int = 64) -> torch.Tensor:
    """One of scikit-image's bundled photos, centre-cropped square and resized: ``(1, 3, size, size)`` in ``[-1, 1]``.

    Grey photos (``camera``) are repeated to three channels.
    """
    import skimage.data
    from skimage.transform import resize

    check_choice("photo", name, PHOTOS)
    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    img = resize(img, (size, size), anti_aliasing=True, preserve_range=False).astype(np.float32)  # → [0, 1]
    return torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0) * 2.0 - 1.0


def example_image(
    sample_shape: tuple[int, int, int], *, photo: str = "astronaut", digit_index: int = 0
) -> torch.Tensor:
    """A clean test image shaped for a denoiser: ``(1, *sample_shape)`` in ``[-1, 1]``.

    Single-channel 8×8 models (the digits DDPM) get held-out test digit ``digit_index``; the 3×32×32 shapes model gets
    :data:`EXAMPLE_SCENE`; other RGB models get the bundled ``photo`` at their resolution.
    """
    channels, height, width = sample_shape
    if (channels, height, width) == (1, 8, 8):
        return load_digits_split().x_test[digit_index : digit_index + 1]
    if (channels, height, width) == SHAPES_SAMPLE_SHAPE:
        return to_tensor(render(parse_caption(EXAMPLE_SCENE), size=height)[None])
    if channels != 3 or height != width:
        raise CourseError(f"no example image for sample shape {sample_shape}")
    return load_photo(photo, size=height)


def example_label(sample_shape: tuple[int, int, int], *, digit_index: int = 0) -> int | str | None:
    """What :func:`example_image` shows: its digit for the digits model, its caption for the shapes model; ``None``
    for models of photos."""
    if tuple(sample_shape) == SHAPES_SAMPLE_SHAPE:
        return EXAMPLE_SCENE
    if tuple(sample_shape) != (1, 8, 8):
        return None
    return int(load_digits_split().y_test[digit_index])


def example_batch(
    sample_shape: tuple[int, int, int], *, n: int = 64
) -> tuple[torch.Tensor, torch.Tensor | list[str] | None]:
    """Clean test images to measure a denoiser on, ``(N, *sample_shape)`` in ``[-1, 1]``, and their labels.

    The digits model gets the first ``n`` held-out test digits (and their digits ``(N,)``); the shapes model ``n``
    scenes of the shapes world drawn with :data:`EXAMPLE_SCENES_SEED` (and their captions); other RGB models get the
    bundled photos (:data:`PHOTOS`, at most ``n`` of them) at their resolution, and no labels.
    """
    if n < 1:
        raise CourseError(f"n must be at least 1, got {n}")
    if tuple(sample_shape) == (1, 8, 8):
        split = load_digits_split()
        return split.x_test[:n], split.y_test[:n]
    if tuple(sample_shape) == SHAPES_SAMPLE_SHAPE:
        scenes = make_dataset(n, seed=EXAMPLE_SCENES_SEED, size=sample_shape[1])
        return to_tensor(scenes.images), list(scenes.captions)
    example_image(sample_shape)  # refuses a shape without example images
    return torch.cat([load_photo(name, size=sample_shape[1]) for name in PHOTOS[:n]]), None


def fit_image(image: torch.Tensor, sample_shape: tuple[int, int, int]) -> torch.Tensor:
    """Bring any image ``(1, C, H, W)`` in ``[-1, 1]`` to a model's ``(C', H', W')``: resize, and average
    to grey for single-channel models. A photo fitted to the digits model becomes an 8×8 grey picture,
    which SDEdit then projects onto digits."""
    import torch.nn.functional as F

    channels, height, width = sample_shape
    x = F.interpolate(image.float(), size=(height, width), mode="area")
    if channels == 1 and x.shape[1] != 1:
        x = x.mean(dim=1, keepdim=True)
    elif channels == 3 and x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return x.clamp(-1, 1)


def load_image(path: str | Path) -> torch.Tensor:
    """A PNG/JPEG file as ``(1, 3, H, W)`` in ``[-1, 1]`` (alpha dropped, grey repeated to RGB)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise CourseError(f"no image at {path}")
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0) * 2.0 - 1.0
