"""Radial frequency bands, band power, settle steps, SNR per band and patch contrast, on inputs whose answers are
known by construction."""

import math

import pytest
import torch

from course_utils.errors import CourseError
from course_utils.sampling.spectrum import (
    band_centres,
    band_edges,
    band_index,
    band_power,
    band_relative_error,
    band_snr,
    patch_contrast,
    patch_errors,
    radial_frequency,
    settle_steps,
    snr_crossing_steps,
)

EDGES = band_edges(8)  # 1/16 cycle per pixel wide


def wave(fx: float, fy: float = 0.0, *, size: int = 32, channels: int = 3) -> torch.Tensor:
    """A cosine of frequency ``(fx, fy)`` cycles per pixel, ``(channels, size, size)``."""
    y, x = torch.meshgrid(torch.arange(size).double(), torch.arange(size).double(), indexing="ij")
    return torch.cos(2 * math.pi * (fx * x + fy * y)).expand(channels, size, size).clone()


def test_radial_frequency_and_bands_by_hand():
    f = radial_frequency(4, 4)  # fftfreq(4) = [0, 1/4, -1/2, -1/4]
    assert f[0, 0] == 0 and f[0, 1] == 0.25 and f[1, 0] == 0.25 and f[0, 2] == 0.5
    assert f[2, 2] == pytest.approx(math.sqrt(0.5))
    torch.testing.assert_close(EDGES, torch.arange(9, dtype=torch.float64) / 16)
    torch.testing.assert_close(band_centres(band_edges(2)), torch.tensor([0.125, 0.375], dtype=torch.float64))
    index = band_index(32, 32, EDGES)
    assert index.shape == (32, 32) and index[0, 0] == 0
    assert index[16, 16] == 7  # the corner (|f| = 0.71) joins the last band
    assert index[0, 8] == 4  # |f| = 1/4 opens band 4
    assert index[0, 7] == 3
    assert set(index.unique().tolist()) == set(range(8))
    with pytest.raises(CourseError, match="hold no frequency"):
        band_index(8, 8, band_edges(16))
    with pytest.raises(CourseError, match="rise from 0"):
        band_index(8, 8, torch.tensor([0.1, 0.3]))
    with pytest.raises(CourseError, match="n_bands"):
        band_edges(0)


def test_a_low_frequency_image_has_its_power_in_the_first_band():
    image = 0.3 + 0.5 * wave(1 / 32)  # the mean and one slow cosine: both below 1/16 cycle per pixel
    power = band_power(image, edges=EDGES)
    assert power.shape == (8,)
    assert power[0] > 1 and bool((power[1:] < 1e-20).all())


def test_a_cosine_puts_its_power_in_its_band_and_the_bands_keep_the_energy():
    for fx, band in ((3 / 32, 1), (8 / 32, 4), (11 / 32, 5), (15 / 32, 7)):
        power = band_power(wave(fx), edges=EDGES)
        assert int(power.argmax()) == band and float(power.sum() - power[band]) < 1e-20
    # Parseval: power × bins per band, summed over bands, is the mean over channels of Σ x²
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(band_index(32, 32, EDGES).reshape(-1)).double()
    torch.testing.assert_close(
        (band_power(images, edges=EDGES) * counts).sum(-1), (images.double() ** 2).sum((2, 3)).mean(1)
    )


def test_white_noise_has_unit_power_in_every_band():
    noise = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    power = band_power(noise, edges=EDGES).mean(0)
    assert bool(((power - 1).abs() < 0.06).all()), power


def test_settle_steps_by_hand():
    errors = torch.tensor([[0.5, 0.05, 0.5], [0.05, 0.05, 0.5], [0.2, 0.05, 0.5], [0.05, 0.05, 0.05], [0.01, 0.0, 0.5]])
    assert settle_steps(errors).tolist() == [3, 0, 5]  # back above at step 2; always below; still above at the end
    assert settle_steps(errors, tol=0.3).tolist() == [1, 0, 5]
    with pytest.raises(CourseError, match="positive"):
        settle_steps(errors, tol=0)


def test_a_trajectory_that_converges_band_by_band_settles_at_those_steps():
    """The final image is a sum of cosines, one in each of four bands; at step s the trajectory holds component i
    exactly when s ≥ k_i (before that, the component at the wrong amplitude): each band settles at k_i."""
    frequencies, settle_at, steps = (0.0, 3 / 32, 6 / 32, 12 / 32), (2, 5, 7, 9), 12
    components = torch.stack([wave(f) for f in frequencies])  # (4, 3, 32, 32)
    final = components.sum(0)
    trajectory = torch.stack(
        [sum(c if s >= k else 0.4 * c for c, k in zip(components, settle_at, strict=True)) for s in range(steps)]
    )  # (steps, 3, 32, 32)
    errors = band_relative_error(trajectory[:, None], final[None], edges=EDGES)  # (steps, 1, bands)
    assert errors.shape == (steps, 1, 8)
    torch.testing.assert_close(errors[0, 0, 0], torch.tensor(0.6, dtype=torch.float64))  # ‖0.4c − c‖ / ‖c‖
    settled = settle_steps(errors)[0]
    assert [int(settled[b]) for b in (0, 1, 3, 6)] == list(settle_at)
    with pytest.raises(CourseError, match="is not"):
        band_relative_error(trajectory, final[None], edges=EDGES)


def test_snr_per_band_against_a_hand_computation():
    alpha_bar = torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64)
    power = torch.tensor([2.0, 0.1], dtype=torch.float64)
    snr = band_snr(alpha_bar, power)
    expected = [
        [0.5 * 2 / 0.5, 0.5 * 0.1 / 0.5],
        [0.9 * 2 / 0.1, 0.9 * 0.1 / 0.1],
        [0.99 * 2 / 0.01, 0.99 * 0.1 / 0.01],
    ]
    torch.testing.assert_close(snr, torch.tensor(expected, dtype=torch.float64))
    assert snr_crossing_steps(snr).tolist() == [0, 2]  # band 1: 0.1, 0.9, 9.9
    assert snr_crossing_steps(snr[:2]).tolist() == [0, 2]  # never above 1 in two steps: one past the end
    with pytest.raises(CourseError, match="strictly between"):
        band_snr(torch.tensor([1.0]), power)


def test_patch_contrast_sees_texture_not_colour():
    image = torch.zeros(3, 16, 16)
    image[0, :8, :8] = 0.8  # a flat red patch
    checks = (torch.arange(8).reshape(-1, 1) + torch.arange(8)) % 2 * 2.0 - 1  # ±1 checkerboard
    image[:, 8:, 8:] = checks
    contrast = patch_contrast(image, patch=8)
    assert contrast.shape == (2, 2)
    torch.testing.assert_close(contrast, torch.tensor([[0.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    with pytest.raises(CourseError, match="divides"):
        patch_contrast(image, patch=5)


def test_patch_errors_are_local_and_in_units_of_the_pictures_contrast():
    final = torch.zeros(1, 3, 16, 16)
    final[..., :8, :8] = 1.0
    trajectory = final.expand(3, -1, -1, -1, -1).clone()
    trajectory[0, ..., 8:, 8:] += 0.5  # step 0 is wrong in the bottom-right patch only
    errors = patch_errors(trajectory, final, patch=8)
    assert errors.shape == (3, 1, 2, 2)
    scale = math.sqrt(0.25 * 0.75)  # a quarter of the pixels at 1, the rest at 0: std √(p(1 − p))
    torch.testing.assert_close(errors[0, 0], torch.tensor([[0, 0], [0, 0.5 / scale]], dtype=torch.float64))
    assert float(errors[1:].abs().max()) == 0
    assert settle_steps(errors).reshape(-1).tolist() == [0, 0, 0, 1]
