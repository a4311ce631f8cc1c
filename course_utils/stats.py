"""Numbers you can trust: every measured number with its 95 % interval, printed at the precision the interval
supports, and every sentence that states an effect checked by :func:`claim`.

- :func:`wilson` / :func:`proportion`: a share of successes with the Wilson score interval (Wilson 1927; Brown, Cai
  & DasGupta 2001 recommend it over the normal approximation for small ``n`` and shares near 0 or 1);
- :func:`bootstrap_mean` (and :func:`bootstrap_median`): a mean (a median) with its percentile-bootstrap interval
  (Efron & Tibshirani 1993). Measurements laid
  out as ``(prompts, seeds)`` are resampled over prompts *and* seeds independently (the crossed, "pigeonhole"
  bootstrap of Owen 2007), so both sources of variation widen the interval;
- :func:`difference`: the mean difference of two measurements, paired when they share prompts and seeds (the same
  resampled rows and columns on both sides), with its interval; a difference is an effect only when its interval
  excludes 0 (:attr:`Estimate.sign`), else it is "not significant here";
- :func:`claim`: print a sentence with its numbers and raise :class:`ClaimError` when the numbers contradict it, on
  the offline profile; on the ``gpu`` profile (a real model may behave otherwise) it says "not shown here".

Precision: the value and its bounds are printed with as many decimals as the interval's half-width has up to its
first significant digit (half-width 0.4 → one decimal, ``94.7 [94.3, 95.1]``); an interval of width 0 (every
measurement equal) keeps :data:`EXACT_DECIMALS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from course_utils.course.profiles import PROFILES
from course_utils.errors import CourseError, check_choice

__all__ = [
    "EXACT_DECIMALS",
    "ClaimError",
    "Estimate",
    "bootstrap_mean",
    "bootstrap_median",
    "claim",
    "claimer",
    "difference",
    "proportion",
    "wilson",
]

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
N_RESAMPLES = 2000
EXACT_DECIMALS = 3
PROFILES_THAT_CHECK = ("offline",)


@dataclass(frozen=True)
class Estimate:
    """A measured number with its 95 % interval.

    Attributes:
        value: the estimate (a mean or a share).
        low, high: the interval's bounds.
        n: how many measurements it rests on (images, or prompts × seeds).
        method: ``"wilson"``, ``"bootstrap"`` or ``"difference"``.
    """

    value: float
    low: float
    high: float
    n: int
    method: str

    def __float__(self) -> float:
        return float(self.value)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def decimals(self) -> int:
        """Decimals the interval supports: down to the half-width's first significant digit."""
        hw = self.half_width
        if not math.isfinite(hw) or hw <= 0:
            return EXACT_DECIMALS
        return max(0, -math.floor(math.log10(hw)))

    @property
    def sign(self) -> int:
        """+1 when the whole interval lies above 0, −1 when below, 0 when it contains 0 (not significant)."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def above(self, other: Estimate) -> bool:
        """This interval lies wholly above ``other``'s (a conservative test for unpaired measurements)."""
        return self.low > other.high

    def format(self, *, scale: float = 1.0, unit: str = "", decimals: int | None = None) -> str:
        """``value [low, high]`` at the interval's precision; ``scale=100, unit=" %"`` for a share in percent."""
        d = self.decimals if decimals is None else decimals
        if scale != 1.0 and decimals is None:
            d = max(0, d - round(math.log10(scale)))
        v, lo, hi = (x * scale for x in (self.value, self.low, self.high))
        return f"{v:.{d}f}{unit} [{lo:.{d}f}, {hi:.{d}f}]"

    def percent(self) -> str:
        """A share as ``17 % [9, 28]``."""
        d = max(0, self.decimals - 2) if self.half_width > 0 else 0
        return f"{self.value * 100:.{d}f} % [{self.low * 100:.{d}f}, {self.high * 100:.{d}f}]"

    def __str__(self) -> str:
        return self.format()

    def record(self) -> dict[str, float | int | str]:
        """JSON-able (for model cards' ``metrics.json``)."""
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n, "method": self.method}


def wilson(successes: int, n: int) -> Estimate:
    """The share ``successes / n`` with its 95 % Wilson score interval."""
    if n <= 0 or not 0 <= successes <= n:
        raise CourseError(f"a share needs 0 ≤ successes ≤ n and n > 0, got {successes} of {n}")
    p = successes / n
    z2 = Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n, "wilson")


def proportion(flags) -> Estimate:
    """:func:`wilson` of a boolean array or tensor (any shape): the share of ``True``."""
    a = _array(flags).astype(bool)
    return wilson(int(a.sum()), int(a.size))


def _array(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        raise CourseError("no measurements to estimate from")
    if a.ndim > 2:
        raise CourseError(f"measurements must be (n,) or (prompts, seeds), got shape {a.shape}")
    return a


def _resampled_means(arrays: Sequence[np.ndarray], *, seed: int, n_resamples: int) -> list[np.ndarray]:
    """Bootstrap means of each array under the *same* resampling of rows (and of columns for 2-D arrays)."""
    rng = np.random.default_rng(seed)
    a0 = arrays[0]
    rows = rng.integers(0, a0.shape[0], size=(n_resamples, a0.shape[0]))
    if a0.ndim == 1:
        return [a[rows].mean(axis=1) for a in arrays]
    cols = rng.integers(0, a0.shape[1], size=(n_resamples, a0.shape[1]))
    out = []
    for a in arrays:
        picked = a[rows[:, :, None], cols[:, None, :]]  # (n_resamples, prompts, seeds)
        out.append(picked.mean(axis=(1, 2)))
    return out


def _interval(means: np.ndarray) -> tuple[float, float]:
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def bootstrap_mean(values, *, seed: int = 0, n_resamples: int = N_RESAMPLES) -> Estimate:
    """The mean of ``values`` (``(n,)``, or ``(prompts, seeds)`` resampled over both) with its 95 % percentile
    bootstrap interval; the resampling is seeded, so the same numbers give the same interval."""
    a = _array(values)
    if a.size == 1:
        v = float(a.reshape(-1)[0])
        return Estimate(v, -math.inf, math.inf, 1, "bootstrap")
    (means,) = _resampled_means([a], seed=seed, n_resamples=n_resamples)
    low, high = _interval(means)
    return Estimate(float(a.mean()), low, high, int(a.size), "bootstrap")


def bootstrap_median(values, *, seed: int = 0, n_resamples: int = N_RESAMPLES) -> Estimate:
    """The median of ``values`` ``(n,)`` with its 95 % percentile-bootstrap interval (seeded)."""
    a = _array(values).reshape(-1)
    if a.size == 1:
        return Estimate(float(a[0]), -math.inf, math.inf, 1, "bootstrap")
    rows = np.random.default_rng(seed).integers(0, a.size, size=(n_resamples, a.size))
    low, high = _interval(np.median(a[rows], axis=1))
    return Estimate(float(np.median(a)), low, high, int(a.size), "bootstrap")


def difference(a, b, *, seed: int = 0, n_resamples: int = N_RESAMPLES) -> Estimate:
    """``mean(a) − mean(b)`` with its 95 % bootstrap interval.

    Arrays of the same shape are *paired* (the same prompts and seeds: one resampling for both, so what the
    settings share cancels out); arrays of different shapes are resampled independently.
    """
    x, y = _array(a), _array(b)
    if x.shape == y.shape:
        mx, my = _resampled_means([x, y], seed=seed, n_resamples=n_resamples)
    else:
        (mx,) = _resampled_means([x], seed=seed, n_resamples=n_resamples)
        (my,) = _resampled_means([y], seed=seed + 1, n_resamples=n_resamples)
    low, high = _interval(mx - my)
    return Estimate(float(x.mean() - y.mean()), low, high, int(min(x.size, y.size)), "difference")


class ClaimError(AssertionError):
    """A sentence of the notebook that its own numbers contradict (raised on the offline profile)."""


def claim(statement: str, holds: bool, *evidence: object, profile: str = "offline") -> bool:
    """Print ``statement`` with its ``evidence`` (estimates, counts) and whether the numbers show it.

    On the offline profile a claim that does not hold raises :class:`ClaimError`, so a change that breaks the story
    fails ``make test``; on any other profile it prints "not shown here" (a real model may behave otherwise).
    Returns whether it holds.
    """
    check_choice("profile", profile, PROFILES)
    shown = "; ".join(str(e) for e in evidence)
    suffix = f" ({shown})" if shown else ""
    if holds:
        print(f"✓ {statement}{suffix}")
        return True
    if profile in PROFILES_THAT_CHECK:
        raise ClaimError(f"the notebook claims '{statement}', but its numbers do not show it{suffix}")
    print(f"– not shown here: {statement}{suffix}")
    return False


def claimer(profile: str):
    """:func:`claim` bound to a profile: ``claim = claimer(prof.name)`` at the top of a notebook."""
    check_choice("profile", profile, PROFILES)

    def bound(statement: str, holds: bool, *evidence: object) -> bool:
        return claim(statement, holds, *evidence, profile=profile)

    return bound
