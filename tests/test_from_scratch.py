"""Week 4's diffusion from scratch: the optimal denoiser against brute force and its limits, the memorization ratio
on constructed cases, each recipe's loss falling in a few steps, the committed networks loading, and the notebook's
gpu-profile path on a tiny MNIST built here."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from course_utils.course.paths import MODELS_DIR, WEEKS_DIR
from course_utils.data.digits import load_digits_split
from course_utils.errors import CourseError
from course_utils.models.course_unet import CourseUNet
from course_utils.models.from_scratch import FOLDER, MODELS, build_unet, load_from_scratch, load_losses, train_model
from course_utils.stats import bootstrap_median
from course_utils.training.from_scratch import (
    COPY_RATIO,
    ddpm_schedule,
    held_out_loss_per_level,
    memorization_ratio,
    optimal_denoiser,
    sample_ddpm,
    train_class_conditioned,
    train_single_step_denoiser,
    train_time_conditioned,
    training_subset,
)
from course_utils.training.loop import TrainConfig

NOTEBOOK = WEEKS_DIR / "04_unet_from_scratch" / "04b_diffusion_from_scratch.ipynb"


def brute_force_posterior_mean(z: torch.Tensor, train: torch.Tensor, sigma: float) -> torch.Tensor:
    """E[x | z] image by image: log-weights −‖z − x_i‖² / 2σ², normalised by log-sum-exp, in float64."""
    out = []
    for zi in z.double():
        logw = np.array([-float(((zi - xi.double()) ** 2).sum()) / (2 * sigma**2) for xi in train])
        w = np.exp(logw - logw.max())
        w /= w.sum()
        out.append(sum(float(wi) * xi.double() for wi, xi in zip(w, train, strict=True)))
    return torch.stack(out).float()


def test_the_optimal_denoiser_is_the_posterior_mean_computed_by_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    train = torch.rand((12, 1, 4, 4), generator=gen) * 2 - 1
    z = train[:5] + 0.7 * torch.randn((5, 1, 4, 4), generator=gen)
    for sigma in (0.3, 0.7, 2.0):
        torch.testing.assert_close(optimal_denoiser(z, train, sigma), brute_force_posterior_mean(z, train, sigma))


def test_the_optimal_denoiser_tends_to_the_nearest_image_and_to_the_mean() -> None:
    gen = torch.Generator().manual_seed(1)
    train = torch.rand((20, 1, 4, 4), generator=gen) * 2 - 1
    z = torch.rand((6, 1, 4, 4), generator=gen) * 2 - 1
    nearest = train[torch.cdist(z.flatten(1), train.flatten(1)).argmin(dim=1)]
    torch.testing.assert_close(optimal_denoiser(z, train, 0.0), nearest)
    torch.testing.assert_close(optimal_denoiser(z, train, 1e-3), nearest)  # σ → 0: the nearest training image
    far = optimal_denoiser(z, train, 1e4)  # σ → ∞: every weight 1/N
    torch.testing.assert_close(far, train.mean(dim=0, keepdim=True).expand_as(z), rtol=1e-4, atol=1e-4)
    with pytest.raises(CourseError, match="σ must be ≥ 0"):
        optimal_denoiser(z, train, -1.0)


def test_the_memorization_ratio_on_constructed_cases() -> None:
    train = torch.zeros((3, 1, 2, 2))
    train[1] += 1.0
    train[2] += 4.0
    copies = train[:2] + 0.01  # on top of image 0 and image 1
    middle = (train[0] + train[1])[None] / 2  # halfway between the two nearest: ratio 1
    ratios = memorization_ratio(torch.cat([copies, middle]), train)
    assert ratios[0] < COPY_RATIO and ratios[1] < COPY_RATIO
    assert math.isclose(ratios[2], 1.0, rel_tol=1e-9)
    # a quarter of the way from 0 to 1: distances 0.25·2 and 0.75·2 (4 pixels) → 1/3
    quarter = (0.75 * train[0] + 0.25 * train[1])[None]
    assert math.isclose(memorization_ratio(quarter, train)[0], 1 / 3, rel_tol=1e-9)


def test_with_one_training_image_the_second_neighbour_comes_from_outside() -> None:
    one = torch.zeros((1, 1, 2, 2))
    outside = torch.full((2, 1, 2, 2), 3.0)
    outside[1] = 10.0
    sample = torch.full((1, 1, 2, 2), 1.0)  # distance 2 to the training image, 4 to the nearest outside one
    assert math.isclose(memorization_ratio(sample, one, outside)[0], 0.5, rel_tol=1e-9)
    with pytest.raises(CourseError, match="pass outside"):
        memorization_ratio(sample, one)


def test_training_subsets_are_nested_or_one_class() -> None:
    labels = torch.arange(50) % 10
    first_10 = training_subset(labels, n=10, seed=3)
    assert torch.equal(training_subset(labels, n=1, seed=3), first_10[:1])
    assert len(set(first_10.tolist())) == 10
    assert torch.equal(training_subset(labels, digit=4), torch.nonzero(labels == 4).flatten())
    for bad in ({}, {"n": 3, "digit": 2}, {"n": 0}, {"digit": 11}):
        with pytest.raises(CourseError):
            training_subset(labels, **bad)


def test_bootstrap_median_holds_the_median() -> None:
    values = np.arange(101, dtype=float)
    m = bootstrap_median(values)
    assert m.value == 50 and m.low < 50 < m.high


# ---- each recipe trains and its loss falls ----------------------------------------------------------------------

CONFIG = TrainConfig(steps=60, batch_size=32, lr=3e-3, warmup_steps=5, ema_decay=0.9, seed=0)


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def _falls(losses: list[float]) -> bool:
    return float(np.mean(losses[-10:])) < 0.8 * float(np.mean(losses[:10]))


def test_the_single_step_denoiser_learns(digits) -> None:
    unet = build_unet(MODELS["denoiser"])
    _, losses = train_single_step_denoiser(unet, x0=digits.x_train, config=CONFIG)
    assert len(losses) == CONFIG.steps and _falls(losses)


def test_the_time_conditioned_ddpm_learns(digits) -> None:
    unet = build_unet(MODELS["ddpm"])
    _, losses = train_time_conditioned(unet, x0=digits.x_train, schedule=ddpm_schedule(), config=CONFIG)
    assert _falls(losses)
    with pytest.raises(CourseError, match="T = 300"):
        train_time_conditioned(unet, x0=digits.x_train, schedule=ddpm_schedule(1000), config=CONFIG)


def test_the_class_conditioned_ddpm_learns_and_samples_with_guidance(digits) -> None:
    unet = build_unet(MODELS["class-ddpm"])
    ema, losses = train_class_conditioned(
        unet, x0=digits.x_train, labels=digits.y_train, schedule=ddpm_schedule(), config=CONFIG
    )
    assert _falls(losses)
    labels = torch.arange(4)
    x = sample_ddpm(
        ema,
        n=4,
        schedule=ddpm_schedule(),
        generator=torch.Generator().manual_seed(0),
        class_labels=labels,
        guidance_scale=5.0,
        steps=10,
    )
    assert x.shape == (4, 1, 8, 8) and float(x.abs().max()) <= 1.0 + 1e-6
    with pytest.raises(CourseError, match="class_labels"):
        sample_ddpm(ema, n=4, schedule=ddpm_schedule(), generator=torch.Generator(), steps=10)


def test_a_subset_recipe_trains_on_its_subset_and_keeps_an_early_copy(digits, tmp_path: Path) -> None:
    spec = replace(MODELS["subset-10"], early_step=6)
    ema, losses, early = train_model(spec, digits.x_train, digits.y_train, steps=60, checkpoint_dir=tmp_path)
    assert _falls(losses)
    assert early is not None and not torch.equal(early.conv_out.weight, ema.conv_out.weight)
    assert (tmp_path / "checkpoint-6").is_dir()


def test_the_latent_recipe_trains_on_four_channel_latents() -> None:
    latents = torch.randn((64, 4, 8, 8), generator=torch.Generator().manual_seed(0)).contiguous()
    ema, losses, _ = train_model(MODELS["latent"], latents, torch.zeros(64, dtype=torch.long), steps=5)
    assert ema.config.in_channels == 4 and len(losses) == 5


def test_held_out_loss_per_level_has_a_value_per_image_and_bucket(digits) -> None:
    unet = build_unet(MODELS["lr-1e-3"]).eval()
    levels = held_out_loss_per_level(unet, digits.x_test[:30], schedule=ddpm_schedule(1000), buckets=4)
    assert list(levels) == [(0, 249), (250, 499), (500, 749), (750, 999)]
    assert all(v.shape == (30,) and np.all(v > 0) for v in levels.values())


# ---- the committed networks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_the_committed_networks_load_and_run(name: str) -> None:
    spec = MODELS[name]
    model = load_from_scratch(name)
    assert isinstance(model, CourseUNet) and model.config.num_train_timesteps == spec.num_timesteps
    assert len(load_losses(name)) == spec.config.steps
    channels = 4 if spec.latent else 1
    x = torch.zeros((2, channels, 8, 8))
    t = None if spec.kind == "denoiser" else torch.tensor([0, 1])
    labels = torch.tensor([3, 10]) if spec.kind == "class-ddpm" else None
    with torch.no_grad():
        assert model(x, t, class_labels=labels).sample.shape == x.shape
    if spec.early_step:
        early = load_from_scratch(name, early=True)
        assert not torch.equal(early.conv_out.weight, model.conv_out.weight)
    folder = MODELS_DIR / FOLDER / name
    assert (folder / "README.md").is_file() and (folder / "metrics.json").is_file()
    assert (folder / "diffusion_pytorch_model.safetensors").stat().st_size < 1_000_000


def test_the_stage_stays_small() -> None:
    total = sum(f.stat().st_size for f in (MODELS_DIR / FOLDER).rglob("*") if f.is_file())
    assert total < 6_000_000


# ---- the notebook's gpu-profile path -----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_notebook_trains_on_mnist_on_the_gpu_profile_path(tmp_path: Path) -> None:
    import datasets
    from notebooks import execute_notebook
    from PIL import Image

    def split(n: int, seed: int) -> datasets.Dataset:
        pixels = np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
        data = {"image": [Image.fromarray(p, "L") for p in pixels], "label": (np.arange(n) % 10).tolist()}
        return datasets.Dataset.from_dict(data, features=features)

    source = tmp_path / "mnist"
    datasets.DatasetDict({"train": split(120, 0), "test": split(20, 1)}).save_to_disk(str(source))
    parameters = {
        "profile": "gpu",
        "device": "cpu",
        "dataset_source": str(source),
        "train_steps": 3,
        "sample_steps": 3,
        "n_samples": 4,
    }
    text, _ = execute_notebook(NOTEBOOK, parameters, tmp_path, timeout=600)
    assert "profile gpu: mnist, 120 training and 20 held-out images of shape (1, 28, 28)" in text
    assert "no agreement on mnist" in text  # the digit classifier reads 8×8 digits only
    assert "N =   120" in text  # the memorization study ran with every training image
