"""Figures: labeled image grids, denoising trajectories, schedule curves, measured curves, training loss curves.

Every function returns the matplotlib ``Figure`` (titles and axis labels set) and draws nothing else,
so notebooks end a cell with it and tests can inspect it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import torch

from course_utils.data.images import to_numpy_image
from course_utils.errors import CourseError
from course_utils.sampling.diffusion import DiffusionStep
from course_utils.stats import Estimate

__all__ = ["DrawingPad", "image_grid", "loss_curve", "measured_curves", "schedule_curves", "trajectory_grid"]


def image_grid(
    images: torch.Tensor | Sequence[torch.Tensor],
    *,
    labels: Sequence[str] | None = None,
    ncols: int | None = None,
    title: str | None = None,
    tile_size: float = 1.6,
) -> plt.Figure:
    """Show images ``(N, C, H, W)`` in ``[-1, 1]`` as a grid, each tile labeled with ``labels[i]``."""
    images = list(images)
    if labels is not None and len(labels) != len(images):
        raise CourseError(f"image_grid: {len(images)} images but {len(labels)} labels")
    n = len(images)
    ncols = ncols or min(n, 8)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(tile_size * ncols, (tile_size + 0.3) * nrows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = to_numpy_image(images[i])
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            if labels is not None:
                ax.set_title(labels[i], fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def trajectory_grid(
    steps: Sequence[DiffusionStep], *, every: int = 1, sample: int = 0, title: str | None = None
) -> plt.Figure:
    """Two rows per recorded step: ``x_t`` (top) and the model's x̂₀ at that step (bottom)."""
    chosen = list(steps)[::every]
    if not chosen:
        raise CourseError("trajectory_grid: no steps recorded")
    tops = [s.x_t[sample] for s in chosen] + [chosen[-1].x_prev[sample]]
    bottoms = [s.x0_pred[sample] for s in chosen] + [chosen[-1].x_prev[sample]]
    labels = [f"x_{s.t}" for s in chosen] + ["x_0"]
    labels += [f"x̂₀ at t={s.t}" for s in chosen] + ["x_0"]
    return image_grid(tops + bottoms, labels=labels, ncols=len(tops), title=title)


def schedule_curves(curves: Mapping[str, torch.Tensor], *, title: str = "Noise schedules") -> plt.Figure:
    """Plot ``√ᾱ_t`` (signal) and ``√(1 − ᾱ_t)`` (noise) against ``t`` for each named ᾱ ``(T,)``."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, alpha_bar in curves.items():
        axes[0].plot(alpha_bar.sqrt().numpy(), label=name)
        axes[1].plot((1 - alpha_bar).sqrt().numpy(), label=name)
    for ax, what in zip(axes, ["signal √ᾱ_t", "noise √(1 − ᾱ_t)"], strict=True):
        ax.set_xlabel("timestep t")
        ax.set_ylabel(what)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_curve(
    losses: Sequence[float] | Mapping[str, Sequence[float]], *, title: str = "Training loss", window: int = 50
) -> plt.Figure:
    """The loss of every step (faint) and its running mean over ``window`` steps, against the step, on a log
    scale; a mapping draws one run per name (as :func:`course_utils.training.loop.fit` returns them)."""
    runs = losses if isinstance(losses, Mapping) else {"": losses}
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, values in runs.items():
        values = torch.as_tensor(list(values), dtype=torch.float64)
        if values.numel() == 0:
            raise CourseError(f"loss_curve: run {name!r} has no losses")
        steps = torch.arange(1, values.numel() + 1)
        (line,) = ax.plot(steps, values, alpha=0.25, linewidth=0.8)
        width = max(1, min(window, values.numel()))
        mean = values.cumsum(0)
        mean[width:] = mean[width:] - mean[:-width].clone()
        mean = mean / torch.arange(1, values.numel() + 1).clamp(max=width)
        ax.plot(steps, mean, color=line.get_color(), label=f"{name} mean of {width}".strip())
    ax.set_yscale("log")
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def measured_curves(study: Any, *, title: str) -> plt.Figure:
    """One panel per measure of a :class:`course_utils.studies.Study`, against its setting, a line per series, each
    estimate with its 95 % interval as an error bar."""
    if not study.measures:
        raise CourseError(f"{study.name}: nothing was measured for this model (the measures need the digits model)")
    table = study.table
    series = table[study.series] if study.series else ["all"] * len(table[study.setting])
    names = list(dict.fromkeys(series))
    fig, axes = plt.subplots(1, len(study.measures), figsize=(4.2 * len(study.measures), 3.2), squeeze=False)
    for ax, measure in zip(axes[0], study.measures, strict=True):
        for name in names:
            rows = [i for i, s in enumerate(series) if s == name]
            xs, values = [table[study.setting][i] for i in rows], [table[measure][i] for i in rows]
            if all(isinstance(v, Estimate) for v in values):  # 95 % intervals as error bars
                ys = [v.value for v in values]
                bars = [[_bar(v.value - v.low) for v in values], [_bar(v.high - v.value) for v in values]]
                ax.errorbar(xs, ys, yerr=bars, marker="o", capsize=3, label=name)
            else:
                ax.plot(xs, values, marker="o", label=name)
        ax.set_xlabel(study.setting)
        ax.set_ylabel(measure.replace("_", " "))
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _bar(length: float) -> float:
    """An error bar's length: 0 for a bound on the wrong side (a percentile interval need not hold its mean) or an
    infinite one (a single measurement)."""
    return length if 0 < length < float("inf") else 0.0


class DrawingPad:
    """A small grid of toggle buttons to draw on in Jupyter (click a cell to paint it white).

    ``pad.widget`` is the ipywidgets box to display; ``pad.image()`` returns the drawing as
    ``(1, 1, size, size)`` in ``[-1, 1]``, or ``None`` while nothing is drawn (headless runs never draw,
    so notebooks fall back to a shipped picture).
    """

    def __init__(self, size: int = 8) -> None:
        import ipywidgets as widgets

        if not 2 <= size <= 32:
            raise CourseError(f"DrawingPad size must be in 2..32, got {size}")
        self.size = size
        self.buttons = [
            widgets.ToggleButton(layout=widgets.Layout(width="26px", height="26px")) for _ in range(size**2)
        ]
        self.widget = widgets.GridBox(
            self.buttons, layout=widgets.Layout(grid_template_columns=f"repeat({size}, 28px)", grid_gap="1px")
        )

    def image(self):
        """The drawing ``(1, 1, size, size)`` in ``[-1, 1]`` (white strokes on black), or ``None`` if empty."""
        import torch

        values = torch.tensor([float(b.value) for b in self.buttons]).view(1, 1, self.size, self.size)
        return None if values.sum() == 0 else values * 2 - 1
