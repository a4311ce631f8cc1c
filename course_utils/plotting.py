"""Figures: labeled image grids, denoising trajectories, schedule curves, measured curves (of a study, or of any
estimates: :func:`estimate_curves`), training loss curves,
cross-attention maps over a picture, settle step and SNR against frequency, patch settle step against contrast.

Every function returns the matplotlib ``Figure`` (titles and axis labels set) and draws nothing else,
so notebooks end a cell with it and tests can inspect it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from course_utils.data.images import to_numpy_image
from course_utils.errors import CourseError, check_choice
from course_utils.runtime import in_colab
from course_utils.sampling.diffusion import DiffusionStep
from course_utils.sampling.spectrum import band_centres, snr_crossing_steps
from course_utils.stats import Estimate

__all__ = [
    "DrawingPad",
    "estimate_curves",
    "finetune_curves",
    "image_grid",
    "loss_curve",
    "measured_curves",
    "patch_settle_plot",
    "schedule_curves",
    "settle_curves",
    "token_map_grid",
    "trajectory_grid",
]


def image_grid(
    images: torch.Tensor | Sequence[torch.Tensor],
    *,
    labels: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    ncols: int | None = None,
    title: str | None = None,
    tile_size: float = 1.6,
) -> plt.Figure:
    """Show images ``(N, C, H, W)`` in ``[-1, 1]`` as a grid, each tile labeled with ``labels[i]`` and each row, at
    its left, with ``row_labels[r]`` (what the row holds: a prompt, a condition). Pixels stay square and crisp
    (nearest-neighbour), so 8×8 and 32×32 pictures are readable at any tile size."""
    images = list(images)
    if labels is not None and len(labels) != len(images):
        raise CourseError(f"image_grid: {len(images)} images but {len(labels)} labels")
    n = len(images)
    ncols = ncols or min(n, 8)
    nrows = (n + ncols - 1) // ncols
    if row_labels is not None and len(row_labels) != nrows:
        raise CourseError(f"image_grid: {nrows} rows but {len(row_labels)} row labels")
    # long labels (a caption) wrap to the tile's width, and the rows make room for their lines
    width = max(10, round(tile_size * 13))
    labels = None if labels is None else [textwrap.fill(str(x), width=width) for x in labels]
    lines = max((label.count("\n") + 1 for label in labels or [""]), default=1)
    row_height = tile_size + 0.17 * lines + 0.13
    margin = 0.0 if row_labels is None else 1.7  # inches at the left for the row labels
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(tile_size * ncols + margin, row_height * nrows + 0.4), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = to_numpy_image(images[i])
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            if labels is not None and labels[i]:
                ax.set_title(labels[i], fontsize=9)
    for row, label in enumerate(row_labels or []):
        ax = axes[row, 0]
        ax.axis("on")  # a y-label needs the axis; its ticks and frame stay hidden
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        wrapped = "\n".join(textwrap.fill(line, width=22) for line in str(label).split("\n"))
        ax.set_ylabel(wrapped, rotation=0, ha="right", va="center", fontsize=9)
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


def finetune_curves(
    losses: Sequence[float],
    *,
    parts: Mapping[str, Sequence[float]] | None = None,
    validations: Sequence[Sequence[float]] = (),
    best_step: int | None = None,
    title: str = "Fine-tuning",
    window: int = 20,
) -> plt.Figure:
    """A fine-tuning run: :func:`loss_curve` of the training loss and its named parts, and the validation loss at
    each validation, the best one marked."""
    runs = {name: v for name, v in {"training loss": losses, **(parts or {})}.items() if len(v)}
    fig = loss_curve(runs, title=title, window=window)
    ax = fig.axes[0]
    if validations:
        steps, values = zip(*validations, strict=True)
        ax.plot(steps, values, "o-", color="black", label="validation loss (held-out images)")
        if best_step is not None and best_step in steps:
            ax.plot([best_step], [values[steps.index(best_step)]], "*", color="gold", markersize=16, zorder=5,
                    markeredgecolor="black", label=f"best (step {best_step}): the weights kept")  # fmt: skip
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


MEASURE_LABELS = {
    "adherence": "adherence (judge)",
    "diversity": "diversity (pairwise RMS)",
    "clip_score": "CLIP score",
    "psnr_db": "PSNR to the input (dB)",
    "kept": "share of the input's reading kept",
    "reads_as_prompt": "share read as the prompt",
    "reads_as_label": "share read as the label",
    "known_region_max_error": "largest error, known region",
    "both": "share read both ways",
    "control_both": "control: read both ways",
    "blurred_reads_low": "blurred: read as low",
    "reads_high": "sharp: read as high",
    "control_blurred_reads_low": "control blurred: read as low",
}
"""Axis labels of the studies' measures (:func:`measured_curves`); another measure is labelled by its name."""


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
        ax.set_ylabel(MEASURE_LABELS.get(measure, measure.replace("_", " ")))
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def estimate_curves(
    xs: Sequence[float],
    curves: Mapping[str, Sequence[Estimate]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    logx: bool = False,
    ax: Any = None,
) -> plt.Figure:
    """One line per name of ``curves``, its estimates at ``xs`` with their 95 % intervals as error bars (on
    ``ax`` when given, else a new figure)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 3.4))
    else:
        fig = ax.figure
    for name, estimates in curves.items():
        if len(estimates) != len(xs):
            raise CourseError(f"estimate_curves: {name!r} has {len(estimates)} estimates for {len(xs)} settings")
        _errorbars(ax, xs, estimates, marker="o", label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _bar(length: float) -> float:
    """An error bar's length: 0 for a bound on the wrong side (a percentile interval need not hold its mean) or an
    infinite one (a single measurement)."""
    return length if 0 < length < float("inf") else 0.0


def _errorbars(ax: Any, xs: Sequence[float], estimates: Sequence[Estimate], **kwargs: Any) -> None:
    ys = [e.value for e in estimates]
    bars = [[_bar(e.value - e.low) for e in estimates], [_bar(e.high - e.value) for e in estimates]]
    ax.errorbar(xs, ys, yerr=bars, capsize=3, **kwargs)


def token_map_grid(
    image: torch.Tensor,
    maps: torch.Tensor,
    tokens: Sequence[str],
    *,
    show: Sequence[int] | None = None,
    ncols: int = 8,
    title: str | None = None,
    tile_size: float = 1.6,
) -> plt.Figure:
    """The picture ``(3, H, W)`` in ``[-1, 1]`` and after it each shown token's attention map ``maps[k]``
    (``(tokens, h, w)``, e.g. :func:`course_utils.sd.attention_maps.token_maps` of one image) over a faint copy of
    the picture, each latent pixel drawn as a block (nearest neighbour), titled with its token and its peak (each
    map's colours span its own range), ``ncols`` tiles a row.

    ``show``: the token indices to draw (default: every token but the start and end markers and padding).
    """
    words = [t.removesuffix("</w>") for t in tokens]
    if show is None:
        show = [k for k, w in enumerate(words) if not w.startswith("<|")]
    if not show:
        raise CourseError("token_map_grid: no token to show")
    h, w = image.shape[-2:]
    picture = to_numpy_image(image)
    n = len(show) + 1
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(tile_size * ncols, (tile_size + 0.3) * nrows + 0.4), squeeze=False)
    tiles = list(axes.flat)
    tiles[0].imshow(picture, interpolation="nearest")
    tiles[0].set_title("picture", fontsize=9)
    for ax, k in zip(tiles[1:n], show, strict=True):
        ax.imshow(picture, interpolation="nearest", alpha=0.35)
        m = maps[k].detach().float().cpu().numpy()
        ax.imshow(m, cmap="magma", alpha=0.75, interpolation="nearest", extent=(-0.5, w - 0.5, h - 0.5, -0.5))
        ax.set_title(f"{words[k]} (max {m.max():.2f})", fontsize=9)
    for ax in tiles:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def settle_curves(study: Any, *, title: str = "When each frequency band of x̂₀ settles") -> plt.Figure:
    """Two panels for a :class:`course_utils.sd.coarse_to_fine.CoarseToFineStudy`: the mean settle step of each band
    (95 % intervals as error bars) against the band's centre frequency, in cycles per picture pixel (latent bands
    divided by the autoencoder's downsampling factor), for the latents and the decoded pixels, with the step from
    which each band's SNR exceeds 1 (dashed); and SNR_t(f) of each latent band along sampling (log scale)."""
    factor = study.trajectory.final_pixels.shape[-1] / study.trajectory.final_latents.shape[-1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    for space, per_pixel, marker in (("latents", factor, "o"), ("pixels", 1.0, "s")):
        xs = (band_centres(study.edges[space]) / per_pixel).tolist()
        _errorbars(ax, xs, study.settle_estimates(space), marker=marker, label=f"settle step ({space})")
        crossing = snr_crossing_steps(study.snr[space]).tolist()
        ax.plot(xs, crossing, marker=marker, linestyle="--", alpha=0.6, label=f"SNR > 1 from ({space})")
    ax.set_xlabel("band centre frequency (cycles per picture pixel)")
    ax.set_ylabel(f"sampling step (of {study.steps})")
    ax.set_ylim(-0.5, study.steps + 0.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("settle step and SNR crossing per band", fontsize=9)
    ax = axes[1]
    snr = study.snr["latents"]
    centres = band_centres(study.edges["latents"]).tolist()
    for i in range(snr.shape[1]):
        ax.semilogy(range(study.steps), snr[:, i].numpy(), label=f"band {i} (f ≈ {centres[i]:.2f}/latent px)")
    ax.axhline(1.0, color="grey", linestyle=":", label="SNR = 1")
    ax.set_xlabel("sampling step (t falls →)")
    ax.set_ylabel("SNR_t(f) = ᾱ_t C(f) / (1 − ᾱ_t)")
    ax.set_title("latent signal-to-noise ratio per band", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def patch_settle_plot(study: Any, *, title: str = "Patch settle step against contrast") -> plt.Figure:
    """Each patch of a :class:`course_utils.sd.coarse_to_fine.CoarseToFineStudy` as a point (its contrast in the final
    picture, its settle step, jittered a little so equal steps stay visible), and the mean settle step of the
    low-, mid- and high-contrast thirds with their 95 % intervals over samples (at each third's median contrast)."""

    contrast = study.contrast.reshape(-1).numpy()
    settle = study.patch_settle.reshape(-1).double().numpy()
    jitter = np.random.default_rng(0).uniform(-0.2, 0.2, settle.shape)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.scatter(contrast, settle + jitter, s=6, alpha=0.3, label="patches")
    terciles = study.tercile_estimates()
    _errorbars(
        ax, terciles["median contrast"], terciles["settle"], marker="o", color="black", label="mean per contrast third"
    )
    ax.set_xlabel("patch contrast (std of the final picture's pixels in the patch)")
    ax.set_ylabel(f"settle step (of {study.steps})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


class DrawingPad:
    """A canvas to draw a picture on in Jupyter or Colab: press and drag to paint with the chosen colour and brush;
    *fill* paints the whole picture (a background), *clear* starts again.

    ``pad.widget`` is the ipywidgets box to display (an ``ipycanvas.Canvas`` of ``size × size`` cells, each
    ``scale`` screen pixels, above its controls). ``pad.image()`` returns the drawing as ``(1, channels, size,
    size)`` in ``[-1, 1]`` (black where nothing is painted), or ``None`` while nothing is drawn: headless runs never
    draw, so notebooks fall back to a shipped picture. ``paint(x, y)`` is what a drag calls, in screen pixels.
    """

    def __init__(self, size: int = 32, *, channels: int = 3, scale: int = 8, colour: str = "#ff0000") -> None:
        import ipywidgets as widgets
        from ipycanvas import Canvas

        if not 2 <= size <= 64:
            raise CourseError(f"DrawingPad size must be in 2..64, got {size}")
        check_choice("DrawingPad channels", channels, (1, 3))
        if not 1 <= scale <= 32:
            raise CourseError(f"DrawingPad scale must be in 1..32 screen pixels per cell, got {scale}")
        if in_colab():  # Colab draws third-party widgets only through its custom widget manager
            try:
                from google.colab import output
            except ImportError:  # a kernel that only looks like Colab's (the tests' stand-in)
                output = None
            if output is not None:
                output.enable_custom_widget_manager()
        self.size, self.channels, self.scale = size, channels, scale
        self.pixels = np.zeros((size, size, 3), dtype=np.float32)  # (H, W, RGB) in [0, 1]
        self.drawn = False
        self._pressed = False
        side = f"{size * scale}px"  # shown at its own size: a front end would otherwise stretch it to the page width
        self.canvas = Canvas(width=size * scale, height=size * scale, layout={"width": side, "height": side})
        self.colour = widgets.ColorPicker(value=colour, description="colour", concise=True)
        self.brush = widgets.IntSlider(value=max(1, size // 12), min=1, max=max(1, size // 4), description="brush")
        self.fill_button = widgets.Button(description="fill", tooltip="paint the whole picture this colour")
        self.clear_button = widgets.Button(description="clear")
        self.fill_button.on_click(lambda _: self.fill())
        self.clear_button.on_click(lambda _: self.clear())
        self.canvas.on_mouse_down(self._press)
        self.canvas.on_mouse_move(self._drag)
        self.canvas.on_mouse_up(self._release)
        self.canvas.on_mouse_out(self._release)
        self.clear()
        self.widget = widgets.VBox(
            [self.canvas, widgets.HBox([self.colour, self.brush, self.fill_button, self.clear_button])]
        )

    def _rgb(self) -> np.ndarray:
        hexcode = self.colour.value.lstrip("#")
        if len(hexcode) == 3:
            hexcode = "".join(c * 2 for c in hexcode)
        return np.array([int(hexcode[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float32) / 255

    def _draw(self, rows: slice, cols: slice) -> None:
        """Redraw cells ``[rows, cols]`` of ``pixels`` on the canvas (in one message to the front end)."""
        from ipycanvas import hold_canvas

        with hold_canvas(self.canvas):
            self._draw_cells(rows, cols)

    def _draw_cells(self, rows: slice, cols: slice) -> None:
        for r in range(rows.start, rows.stop):
            for c in range(cols.start, cols.stop):
                red, green, blue = (self.pixels[r, c] * 255).round().astype(int)
                self.canvas.fill_style = f"rgb({red}, {green}, {blue})"
                self.canvas.fill_rect(c * self.scale, r * self.scale, self.scale, self.scale)

    def paint(self, x: float, y: float) -> None:
        """Paint a disc of the brush's radius (in cells) with the chosen colour around screen pixel ``(x, y)``."""
        col, row = int(x // self.scale), int(y // self.scale)
        if not (0 <= row < self.size and 0 <= col < self.size):
            return
        radius = self.brush.value - 1
        rows = slice(max(0, row - radius), min(self.size, row + radius + 1))
        cols = slice(max(0, col - radius), min(self.size, col + radius + 1))
        r, c = np.ogrid[rows, cols]
        disc = (r - row) ** 2 + (c - col) ** 2 <= radius**2 + radius  # radius 0: the one cell
        self.pixels[rows, cols][disc] = self._rgb()
        self.drawn = True
        self._draw(rows, cols)

    def fill(self) -> None:
        """Paint every cell the chosen colour."""
        self.pixels[:] = self._rgb()
        self.drawn = True
        self._draw(slice(0, self.size), slice(0, self.size))

    def clear(self) -> None:
        """Back to black, with nothing drawn."""
        self.pixels[:] = 0
        self.drawn = False
        self.canvas.fill_style = "black"
        self.canvas.fill_rect(0, 0, self.canvas.width, self.canvas.height)

    def _press(self, x: float, y: float) -> None:
        self._pressed = True
        self.paint(x, y)

    def _drag(self, x: float, y: float) -> None:
        if self._pressed:
            self.paint(x, y)

    def _release(self, x: float, y: float) -> None:
        self._pressed = False

    def image(self) -> torch.Tensor | None:
        """The drawing ``(1, channels, size, size)`` in ``[-1, 1]`` (one channel: its luminance), or ``None`` if
        nothing is drawn."""
        if not self.drawn:
            return None
        picture = torch.from_numpy(self.pixels.copy()).permute(2, 0, 1)  # (3, H, W) in [0, 1]
        if self.channels == 1:
            picture = (picture * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
        return picture.unsqueeze(0) * 2 - 1
