"""``course_utils.data.hub_datasets``: MNIST / CIFAR-10 through Hugging Face ``datasets``, tested offline on tiny
datasets built here in the Hub datasets' own layout (columns, features, splits), saved and loaded as a user's copy
would be; the bundled digits through the same door; one line when the Hub is out of reach."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from course_utils.course.profiles import PROFILES
from course_utils.data.digits import load_digits_split
from course_utils.data.hub_datasets import DATASETS, NAMES, load_image_dataset
from course_utils.errors import CourseError

ROOT = Path(__file__).resolve().parents[1]


def pictures(n: int, *, side: int, mode: str, seed: int) -> tuple[list[Image.Image], np.ndarray]:
    """``n`` random PIL pictures and their pixels ``(n, side, side[, 3])`` uint8."""
    shape = (n, side, side) if mode == "L" else (n, side, side, 3)
    pixels = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    pixels[0] = 0  # one black picture and one white one: the ends of [-1, 1]
    pixels[1] = 255
    return [Image.fromarray(p, mode) for p in pixels], pixels


def hub_like(name: str, n: int, *, seed: int) -> tuple[datasets.Dataset, np.ndarray, np.ndarray]:
    """A split in the layout of the Hub dataset ``name``: its image and label columns and features."""
    spec = DATASETS[name]
    images, pixels = pictures(n, side=spec.size, mode=spec.mode, seed=seed)
    labels = np.arange(n) % 10
    features = datasets.Features(
        {spec.image_column: datasets.Image(), spec.label_column: datasets.ClassLabel(names=list(spec.classes))}
    )
    data = {spec.image_column: images, spec.label_column: labels.tolist()}
    return datasets.Dataset.from_dict(data, features=features), pixels, labels


@pytest.fixture(scope="module")
def mnist_copy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny MNIST ``DatasetDict`` saved with ``save_to_disk``, as ``load_dataset("ylecun/mnist")`` would be."""
    train, train_pixels, train_labels = hub_like("mnist", 12, seed=0)
    test, test_pixels, test_labels = hub_like("mnist", 5, seed=1)
    path = tmp_path_factory.mktemp("mnist") / "copy"
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(path))
    return {"path": path, "train": (train_pixels, train_labels), "test": (test_pixels, test_labels)}


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_saved_mnist_copy_loads_as_images_in_minus_one_to_one(mnist_copy: dict, split: str) -> None:
    data = load_image_dataset("mnist", split=split, source=mnist_copy["path"])
    pixels, labels = mnist_copy[split]
    assert data.images.shape == (len(labels), 1, 28, 28) and data.images.dtype == torch.float32
    expected = torch.from_numpy(pixels).float()[:, None] / 127.5 - 1  # (N, 28, 28) → (N, 1, 28, 28)
    torch.testing.assert_close(data.images, expected)
    assert float(data.images[0].max()) == -1 and float(data.images[1].min()) == 1  # black → −1, white → 1
    assert torch.equal(data.labels, torch.from_numpy(labels).long())
    assert (data.name, data.split, data.classes) == ("mnist", split, DATASETS["mnist"].classes)


def test_resizing_and_a_limit(mnist_copy: dict) -> None:
    data = load_image_dataset("mnist", split="train", source=mnist_copy["path"], image_size=8, limit=4)
    assert data.images.shape == (4, 1, 8, 8) and data.labels.tolist() == [0, 1, 2, 3]
    assert torch.all(data.images[0] == -1) and torch.all(data.images[1] == 1)  # a constant picture stays constant
    assert -1 <= float(data.images.min()) and float(data.images.max()) <= 1


def test_cifar10_keeps_its_colours_in_channel_order() -> None:
    split, _, labels = hub_like("cifar10", 3, seed=2)
    red = np.zeros((32, 32, 3), dtype=np.uint8)
    red[..., 0] = 255
    split = split.map(lambda row, i: {"img": Image.fromarray(red) if i == 2 else row["img"]}, with_indices=True)
    data = load_image_dataset("cifar10", split="test", source=datasets.DatasetDict({"test": split}))
    assert data.images.shape == (3, 3, 32, 32)
    assert torch.all(data.images[2, 0] == 1) and torch.all(data.images[2, 1:] == -1)  # (R, G, B) = (255, 0, 0)
    assert data.classes[:2] == ("airplane", "automobile") and data.labels.tolist() == labels.tolist()


def test_an_imagefolder_labels_by_sub_folder(tmp_path: Path) -> None:
    for label in ("0", "7"):
        images, _ = pictures(3, side=28, mode="L", seed=int(label))
        (tmp_path / "train" / label).mkdir(parents=True)
        for i, image in enumerate(images):
            image.save(tmp_path / "train" / label / f"{i}.png")
    data = load_image_dataset("mnist", split="train", source=tmp_path)
    assert data.images.shape == (6, 1, 28, 28) and data.classes == ("0", "7")
    assert sorted(data.labels.tolist()) == [0, 0, 0, 1, 1, 1]


def test_a_loaded_dataset_of_another_split_is_refused() -> None:
    split, _, _ = hub_like("mnist", 2, seed=3)
    split = datasets.Dataset(split.data, info=split.info, split=datasets.Split.TEST)
    assert load_image_dataset("mnist", split="test", source=split).images.shape == (2, 1, 28, 28)
    with pytest.raises(CourseError, match="its 'test' split, not 'train'"):
        load_image_dataset("mnist", split="train", source=split)
    with pytest.raises(CourseError, match="valid split of mnist's sources: test"):
        load_image_dataset("mnist", split="train", source=datasets.DatasetDict({"test": split}))


def test_the_digits_come_through_the_same_door() -> None:
    digits = load_digits_split()
    data = load_image_dataset("digits", split="test")
    assert torch.equal(data.images, digits.x_test) and torch.equal(data.labels, digits.y_test)
    assert data.images.shape[1:] == (1, 8, 8) and data.classes == tuple("0123456789")
    with pytest.raises(CourseError, match="8×8"):
        load_image_dataset("digits", image_size=28)
    with pytest.raises(CourseError, match="no source"):
        load_image_dataset("digits", source="somewhere")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(name="imagenet"), "unknown dataset 'imagenet'; valid datasets: digits, mnist, cifar10"),
        (dict(name="mnist", split="validation"), "unknown split 'validation'; valid splits: train, test"),
        (dict(name="mnist", limit=0), "positive"),
        (dict(name="mnist", source=Path("/nonexistent/mnist")), "no dataset folder"),
        (dict(name="mnist", source=[1, 2]), "got list"),
    ],
)
def test_bad_choices_are_one_line_naming_the_valid_ones(kwargs: dict, message: str) -> None:
    with pytest.raises(CourseError, match=message):
        load_image_dataset(**kwargs)


def test_offline_and_not_cached_is_one_line(tmp_path: Path) -> None:
    """The real path to the Hub, with the Hub out of reach (offline mode) and an empty cache."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets"),
        "PYTHONPATH": str(ROOT),
    }
    code = (
        "from course_utils.data.hub_datasets import load_image_dataset\n"
        "from course_utils.errors import CourseError\n"
        "try:\n    load_image_dataset('cifar10', split='test')\n"
        "except CourseError as err:\n    print(err)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    message = proc.stdout.strip()
    assert "\n" not in message and message.startswith("cannot load cifar10 (uoft-cs/cifar10, split 'test')"), message
    assert "not in the datasets cache" in message and "'digits'" in message


def test_each_profile_names_a_dataset_to_train_from_scratch() -> None:
    for profile in PROFILES.values():
        entry = profile.examples["from_scratch"]
        assert entry["dataset"] in NAMES and entry["image_size"] % 4 == 0  # the course U-Net halves twice
    assert PROFILES["offline"].examples["from_scratch"]["dataset"] == "digits"  # bundled: no network
    assert PROFILES["gpu"].examples["from_scratch"] == {"dataset": "mnist", "image_size": DATASETS["mnist"].size}
