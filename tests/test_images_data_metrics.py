"""Bundled data, the Gaussian blur, the digit classifier and the plots."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from course_utils.data.digits import load_digits_split
from course_utils.data.images import gaussian_blur, gaussian_kernel
from course_utils.data.photos import example_image, load_photo
from course_utils.errors import CourseError
from course_utils.metrics import agreement, digit_classifier, psnr
from course_utils.plotting import image_grid, schedule_curves, trajectory_grid
from course_utils.sampling.diffusion import DiffusionStep
from course_utils.sampling.schedules import NoiseSchedule


def test_digits_split_is_stratified_scaled_and_reproducible():
    a, b = load_digits_split(), load_digits_split()
    assert a.x_train.shape == (1437, 1, 8, 8) and a.x_test.shape == (360, 1, 8, 8)
    assert a.x_train.min() == -1 and a.x_train.max() == 1
    assert torch.equal(a.x_test, b.x_test)
    assert torch.bincount(a.y_test).min() >= 35  # every class held out


def test_photos_are_square_rgb_in_range():
    x = load_photo("camera", size=32)
    assert x.shape == (1, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    with pytest.raises(CourseError, match="valid photos: astronaut"):
        load_photo("mona_lisa")
    assert example_image((1, 8, 8)).shape == (1, 1, 8, 8)
    assert example_image((3, 16, 16)).shape == (1, 3, 16, 16)


def test_gaussian_blur_preserves_constants_and_removes_noise():
    k = gaussian_kernel(1.0)
    assert k.sum().item() == pytest.approx(1.0) and k.numel() == 7
    const = torch.full((1, 3, 16, 16), 0.3)
    torch.testing.assert_close(gaussian_blur(const, 2.0), const)
    noise = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    assert gaussian_blur(noise, 2.0).std() < 0.3 * noise.std()
    with pytest.raises(CourseError, match="sigma must be positive"):
        gaussian_kernel(0)


def test_classifier_recognises_real_held_out_digits():
    clf = digit_classifier()
    split = load_digits_split()
    assert clf.held_out_accuracy > 0.97
    assert agreement(split.x_test, split.y_test, clf) == pytest.approx(clf.held_out_accuracy)
    assert agreement(torch.zeros(10, 1, 8, 8), torch.arange(10), clf) <= 0.2  # a blank image is one class at most


def test_psnr():
    x = torch.zeros(1, 1, 4, 4)
    assert psnr(x, x) == float("inf")
    assert psnr(x + 0.2, x) == pytest.approx(10 * torch.log10(torch.tensor(4 / 0.04)).item())


def test_plots_are_labeled():
    fig = image_grid(torch.zeros(3, 1, 8, 8), labels=["a", "b", "c"], title="T")
    assert [ax.get_title() for ax in fig.axes[:3]] == ["a", "b", "c"] and fig._suptitle.get_text() == "T"
    with pytest.raises(CourseError, match="3 images but 2 labels"):
        image_grid(torch.zeros(3, 1, 8, 8), labels=["a", "b"])
    fig = schedule_curves({"linear": NoiseSchedule.from_name("linear").alphas_cumprod})
    assert fig.axes[0].get_xlabel() == "timestep t"
    x = torch.zeros(1, 1, 8, 8)
    steps = [DiffusionStep(index=i, t=t, t_prev=t - 1, x_t=x, x0_pred=x, x_prev=x) for i, t in enumerate([2, 1, 0])]
    assert len(trajectory_grid(steps).axes) == 8  # (3 steps + x_0) × 2 rows


def test_example_label_and_classifier_follow_the_model_kind():
    from course_utils.data.photos import example_label
    from course_utils.metrics import classifier_for

    split = load_digits_split()
    assert example_label((1, 8, 8), digit_index=3) == int(split.y_test[3])
    assert example_label((3, 64, 64)) is None

    class Shape:
        def __init__(self, shape):
            self.sample_shape = shape

    assert classifier_for(Shape((1, 8, 8))) is digit_classifier()
    assert classifier_for(Shape((3, 64, 64))) is None


def test_select_weeks_normalises_ids_and_names_the_valid_ones():
    from course_utils.course.paths import select_weeks

    assert select_weeks(None, ["01", "02"]) == ["01", "02"]
    assert select_weeks(["2", " 01"], ["01", "02"]) == ["02", "01"]
    with pytest.raises(CourseError, match="unknown week '07'; valid weeks: 01, 02"):
        select_weeks(["7"], ["01", "02"])
