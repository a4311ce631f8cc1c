"""Image datasets for training from scratch: the bundled digits offline, MNIST and CIFAR-10 from the Hugging Face Hub.

The ``gpu`` profile trains the week-4 networks on MNIST (LeCun et al. 1998) and CIFAR-10 (Krizhevsky 2009) through
Hugging Face ``datasets``; the ``offline`` profile on scikit-learn's 8×8 digits (:mod:`course_utils.data.digits`).
:func:`load_image_dataset` gives all three in one form, :class:`ImageData`: images ``(N, C, H, W)`` in ``[-1, 1]``
and labels ``(N,)``, so a notebook switches dataset by name only.

Nothing downloads at import time. ``load_image_dataset("mnist")`` calls ``datasets.load_dataset("ylecun/mnist")``,
which reads the ``datasets`` cache when the data is there and the Hub otherwise; offline and not cached it is one
line of :class:`~course_utils.errors.CourseError`. ``source=`` takes the same data from elsewhere: a folder written
by ``save_to_disk``, an imagefolder (one sub-folder of pictures per class), or an already loaded ``Dataset`` /
``DatasetDict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from course_utils.errors import CourseError, check_choice

__all__ = ["DATASETS", "NAMES", "HubImageDataset", "ImageData", "load_image_dataset"]


@dataclass(frozen=True)
class HubImageDataset:
    """A labelled image dataset on the Hub, as ``datasets`` loads it.

    Attributes:
        hub_id: the dataset repository (``datasets.load_dataset(hub_id, split=…)``).
        image_column, label_column: its columns (an ``Image`` and a ``ClassLabel`` feature).
        mode: the PIL mode the images are converted to (``"L"``: 1 channel, ``"RGB"``: 3).
        size: the images' side.
        splits: the splits it has.
        classes: the class names, by label.
    """

    hub_id: str
    image_column: str
    label_column: str
    mode: str
    size: int
    splits: tuple[str, ...]
    classes: tuple[str, ...]

    @property
    def channels(self) -> int:
        return {"L": 1, "RGB": 3}[self.mode]


DATASETS: dict[str, HubImageDataset] = {
    "mnist": HubImageDataset(
        "ylecun/mnist", "image", "label", "L", 28, ("train", "test"), tuple(str(i) for i in range(10))
    ),
    "cifar10": HubImageDataset(
        "uoft-cs/cifar10",
        "img",
        "label",
        "RGB",
        32,
        ("train", "test"),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
}
NAMES = ("digits", *DATASETS)
"""Every name :func:`load_image_dataset` knows: the bundled digits, then the Hub datasets."""


@dataclass(frozen=True)
class ImageData:
    """One split of a labelled image dataset, as the course's networks see it.

    Attributes:
        images: ``(N, C, H, W)`` float32 in ``[-1, 1]``.
        labels: ``(N,)`` long, indices into ``classes``.
        classes: the class names.
        name: the dataset's name (``digits``, ``mnist``, ``cifar10``).
        split: ``train`` or ``test``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    split: str


def load_image_dataset(
    name: str,
    *,
    split: str = "train",
    image_size: int | None = None,
    source: Any = None,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
) -> ImageData:
    """Load ``split`` of the dataset ``name`` (one of :data:`NAMES`) as ``(N, C, H, W)`` images in ``[-1, 1]``.

    Args:
        name: ``digits`` (bundled 8×8 scans), ``mnist`` (1×28×28) or ``cifar10`` (3×32×32).
        split: ``train`` or ``test``.
        image_size: resize every image to this side (PIL bicubic); ``None`` keeps the dataset's own.
        source: for the Hub datasets, where to read them instead of the Hub: a ``save_to_disk`` folder (of one
            split or of a ``DatasetDict``), an imagefolder, or a ``datasets.Dataset`` / ``DatasetDict``.
        limit: keep only the first ``limit`` images.
        cache_dir: the ``datasets`` cache to read and fill (default: ``datasets``' own, ``HF_DATASETS_CACHE``).

    Raises:
        CourseError: an unknown name or split, or a Hub dataset that is neither cached nor reachable.
    """
    check_choice("dataset", name, NAMES)
    if limit is not None and limit <= 0:
        raise CourseError(f"limit must be a positive number of images, got {limit}")
    if image_size is not None and image_size <= 0:
        raise CourseError(f"image_size must be positive, got {image_size}")
    if name == "digits":
        return _digits(split=split, image_size=image_size, source=source, limit=limit, cache_dir=cache_dir)
    spec = DATASETS[name]
    check_choice("split", split, spec.splits)
    dataset = _hub_split(spec, name, split, source=source, cache_dir=cache_dir)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    images, labels, classes = _to_tensors(dataset, spec, image_size=image_size or spec.size)
    return ImageData(images, labels, classes, name, split)


def _digits(*, split: str, image_size: int | None, source: Any, limit: int | None, cache_dir: Any) -> ImageData:
    """The bundled digits through the same door (:func:`course_utils.data.digits.load_digits_split`)."""
    from course_utils.data.digits import load_digits_split

    check_choice("split", split, ("train", "test"))
    if source is not None or cache_dir is not None:
        raise CourseError("the digits are bundled with scikit-learn: they take no source or cache_dir")
    if image_size not in (None, 8):
        raise CourseError(f"the bundled digits are 8×8; image_size must be 8 (or None), got {image_size}")
    digits = load_digits_split()
    images, labels = (digits.x_train, digits.y_train) if split == "train" else (digits.x_test, digits.y_test)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return ImageData(images, labels, tuple(str(i) for i in range(10)), "digits", split)


def _hub_split(spec: HubImageDataset, name: str, split: str, *, source: Any, cache_dir: Any):
    """The ``datasets.Dataset`` of ``split``: from ``source`` when given, else the cache or the Hub."""
    import datasets

    if source is None:
        try:
            return datasets.load_dataset(
                spec.hub_id, split=split, cache_dir=None if cache_dir is None else str(cache_dir)
            )
        except ConnectionError as err:  # what datasets raises offline (OfflineModeIsEnabled, no route to the Hub)
            raise CourseError(
                f"cannot load {name} ({spec.hub_id}, split {split!r}): it is not in the datasets cache and the Hub"
                f" is unreachable ({str(err).splitlines()[0]}); run once with a network, pass source= a local copy,"
                " or use the bundled 'digits'"
            ) from None
    if isinstance(source, (str, Path)):
        source = _from_folder(Path(source).expanduser())
    if isinstance(source, datasets.DatasetDict):
        check_choice(f"split of {name}'s source", split, list(source))
        return source[split]
    if isinstance(source, datasets.Dataset):
        if source.split is not None and str(source.split) != split:
            raise CourseError(f"the {name} source given is its {str(source.split)!r} split, not {split!r}")
        return source
    raise CourseError(f"source must be a folder, a datasets.Dataset or a DatasetDict, got {type(source).__name__}")


def _from_folder(path: Path):
    """A ``save_to_disk`` folder (``load_from_disk``) or an imagefolder (``load_dataset("imagefolder")``)."""
    import datasets

    if not path.is_dir():
        raise CourseError(f"no dataset folder at {path}")
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return datasets.load_from_disk(str(path))
    return datasets.load_dataset("imagefolder", data_dir=str(path))


def _to_tensors(dataset, spec: HubImageDataset, *, image_size: int) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """``Dataset`` rows → images ``(N, C, s, s)`` in ``[-1, 1]``, labels ``(N,)``, class names."""
    import datasets
    from PIL import Image

    image_column = _column(dataset, spec.image_column, datasets.Image, "image")
    label_column = _column(dataset, spec.label_column, datasets.ClassLabel, "label")
    feature = dataset.features[label_column]
    classes = tuple(feature.names) if isinstance(feature, datasets.ClassLabel) else spec.classes
    pixels = np.empty((len(dataset), image_size, image_size, spec.channels), dtype=np.uint8)  # (N, s, s, C)
    for i, picture in enumerate(dataset[image_column]):
        picture = picture.convert(spec.mode)
        if picture.size != (image_size, image_size):
            picture = picture.resize((image_size, image_size), Image.Resampling.BICUBIC)
        pixels[i] = np.asarray(picture).reshape(image_size, image_size, spec.channels)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1  # (N, s, s, C) → (N, C, s, s), [-1, 1]
    labels = torch.as_tensor(np.asarray(dataset[label_column]), dtype=torch.long)  # (N,)
    return images.contiguous(), labels, classes


def _column(dataset, preferred: str, kind: type, what: str) -> str:
    """``preferred`` when the dataset has it, else its one column of feature type ``kind`` (an imagefolder's)."""
    if preferred in dataset.column_names:
        return preferred
    found = [c for c, f in dataset.features.items() if isinstance(f, kind)]
    if len(found) != 1:
        raise CourseError(
            f"cannot tell the {what} column: no {preferred!r} among {', '.join(dataset.column_names)}"
            f" and {len(found)} columns of type {kind.__name__}"
        )
    return found[0]
