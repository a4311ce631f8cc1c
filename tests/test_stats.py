"""Intervals, their precision and the checked claims (``course_utils.stats``)."""

from __future__ import annotations

import numpy as np
import pytest

from course_utils.errors import CourseError
from course_utils.stats import ClaimError, Estimate, bootstrap_mean, claim, claimer, difference, proportion, wilson


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [(0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634), (2, 12, 0.0470, 0.4480)],
)
def test_wilson_matches_the_published_bounds(k, n, low, high):
    est = wilson(k, n)
    assert est.value == pytest.approx(k / n)
    assert (est.low, est.high) == pytest.approx((low, high), abs=1e-4)


def test_wilson_covers_the_true_share_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    p, n = 0.1, 60
    hits = [wilson(int(k), n).low <= p <= wilson(int(k), n).high for k in rng.binomial(n, p, size=2000)]
    assert 0.92 <= np.mean(hits) <= 0.985


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = []
    for _ in range(300):
        est = bootstrap_mean(rng.normal(3.0, 2.0, size=60), seed=int(rng.integers(1 << 30)), n_resamples=800)
        covered.append(est.low <= 3.0 <= est.high)
    assert 0.89 <= np.mean(covered) <= 0.98


def test_the_crossed_bootstrap_counts_seed_variation_too():
    """Measurements (prompts, seeds) whose seeds share an offset: resampling seeds widens the interval."""
    rng = np.random.default_rng(2)
    values = rng.normal(0, 0.1, size=(40, 4)) + np.array([0.0, 1.0, -1.0, 0.5])  # a strong per-seed effect
    crossed = bootstrap_mean(values)
    prompts_only = bootstrap_mean(values.reshape(-1))  # all 160 as independent images
    assert crossed.half_width > 3 * prompts_only.half_width
    assert crossed.value == pytest.approx(values.mean())


def test_a_paired_difference_cancels_what_the_settings_share():
    rng = np.random.default_rng(3)
    shared = rng.normal(90, 5, size=(48, 2))  # prompts differ a lot …
    a, b = shared + 0.5, shared + rng.normal(0, 0.2, size=shared.shape)  # … the setting adds 0.5
    paired = difference(a, b)
    unpaired = difference(a, b[:-1])  # different shapes: resampled independently
    assert paired.sign == 1 and paired.low > 0.3 and paired.high < 0.7
    assert unpaired.sign == 0 and unpaired.half_width > 5 * paired.half_width


def test_proportion_reads_boolean_arrays_and_tensors():
    import torch

    assert proportion(torch.tensor([True, False, True, True])).value == 0.75
    assert proportion(np.zeros((3, 4), dtype=bool)).n == 12


@pytest.mark.parametrize(
    ("est", "text"),
    [
        (Estimate(94.657, 94.25, 95.05, 48, "bootstrap"), "94.7 [94.2, 95.0]"),  # half-width 0.4: one decimal
        (Estimate(0.979, 0.962, 0.991, 48, "bootstrap"), "0.98 [0.96, 0.99]"),  # 0.015: two decimals
        (Estimate(53.8, 49.0, 58.9, 48, "bootstrap"), "54 [49, 59]"),  # 5: none
        (Estimate(1.0, 1.0, 1.0, 20, "bootstrap"), "1.000 [1.000, 1.000]"),  # no spread: EXACT_DECIMALS
    ],
)
def test_numbers_are_printed_at_the_precision_their_interval_supports(est, text):
    assert str(est) == text


def test_shares_print_as_percent():
    assert wilson(2, 12).percent() == "17 % [5, 45]"
    assert wilson(0, 12).percent() == "0 % [0, 24]"


def test_no_measurements_is_an_error():
    with pytest.raises(CourseError):
        bootstrap_mean([])
    with pytest.raises(CourseError):
        wilson(3, 2)


def test_a_claim_prints_itself_with_its_numbers(capsys):
    assert claim("adherence rises with w", True, wilson(7, 12), wilson(12, 12)) is True
    out = capsys.readouterr().out
    assert out.startswith("✓ adherence rises with w (0.6") and "; 1.0 [0.8, 1.0])" in out


def test_a_false_claim_fails_offline_and_is_not_shown_on_the_gpu(capsys):
    with pytest.raises(ClaimError, match="adherence rises with w"):
        claim("adherence rises with w", False, 0.5)
    assert claimer("gpu")("adherence rises with w", False, 0.5) is False
    assert capsys.readouterr().out == "– not shown here: adherence rises with w (0.5)\n"
    with pytest.raises(CourseError, match="valid profiles"):
        claimer("cloud")
