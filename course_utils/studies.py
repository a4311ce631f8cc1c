"""Measured studies, one per technique of week 2: each varies one setting and measures its effect.

    result = run_study("cfg", den, conditions=["3", "7"], scales=[0, 1, 3])
    result.grid(); result.curve(); print(result.text())
    result.difference("adherence", {"w": 3.0}, {"w": 0.0})     # paired, with its 95 % interval

A study returns a :class:`Study`: a table (one column per setting or measure, each measure an estimate with its
95 % interval: Wilson for shares, bootstrap for means), a labeled grid of example images and a curve of the
measures against the setting, with error bars. Measures that need a reader (adherence, "reads as", attributes kept)
are computed for the course's models, with :func:`course_utils.models.readers.reader_for` (the digit classifier, the
shapes judge); PSNR and diversity are computed for every model, the Hub's included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from course_utils.errors import CourseError, check_choice
from course_utils.metrics import diversity, psnr_per_image
from course_utils.models.readers import reader_for
from course_utils.sampling.diffusion import UPDATE_RULES, ddim_sample, ddpm_sample, strided_timesteps
from course_utils.sampling.editing import check_i_start, inpaint, sdedit, text_guided_sdedit
from course_utils.sampling.guidance import hybrid, low_pass, visual_anagram
from course_utils.sampling.views import get_view
from course_utils.stats import Estimate, bootstrap_mean, difference, proportion

__all__ = ["STUDIES", "Study", "run_study"]


@dataclass
class Study:
    """What a study measured.

    Attributes:
        name: the technique.
        setting: the column that varies (``w``, ``i_start``, …).
        table: column name → values, one row per setting (and per image or pair where there are several). A measured
            column holds :class:`~course_utils.stats.Estimate` s (the value with its 95 % interval); settings and
            exact quantities hold plain numbers.
        images: example results ``(N, C, H, W)``; ``labels`` one per image (``""``: none); ``ncols`` tiles per row;
            ``row_labels`` one per row of the grid: what the row holds (its prompt, condition or input).
        measures: the columns plotted against ``setting`` by :meth:`curve`.
        series: the column that tells the curves apart (a pair, an image, a scheduler), if any.
        samples: measured column → per row, the measurements behind its estimate (per image or per condition, aligned
            across rows: the same seeds), so two rows can be compared by a paired :meth:`difference`.
    """

    name: str
    setting: str
    table: dict[str, list[Any]]
    images: torch.Tensor
    labels: list[str]
    ncols: int
    measures: list[str] = field(default_factory=list)
    series: str | None = None
    samples: dict[str, list[np.ndarray]] = field(default_factory=dict)
    row_labels: list[str] | None = None

    def text(self) -> str:
        """The table as aligned text, every estimate with its interval at the precision the interval supports."""
        cols = list(self.table)
        cells = [[_fmt(v) for v in self.table[c]] for c in cols]
        widths = [max(len(c), *(len(x) for x in col)) for c, col in zip(cols, cells, strict=True)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
        for row in zip(*cells, strict=True):
            lines.append("  ".join(x.rjust(w) for x, w in zip(row, widths, strict=True)))
        return "\n".join(lines)

    def index(self, **where: Any) -> int:
        """The row whose columns equal ``where`` (``study.index(w=3.0)``, ``study.index(pair="6|9 rot180", w=1.0)``)."""
        for column in where:
            check_choice("column", column, self.table)
        rows = [i for i in range(len(self.table[self.setting])) if all(self.table[c][i] == v for c, v in where.items())]
        if len(rows) != 1:
            raise CourseError(f"{self.name}: {len(rows)} rows have {where}; name the row by more columns")
        return rows[0]

    def has(self, **where: Any) -> bool:
        """Whether exactly one row has the columns ``where`` (a notebook's claims name rows its parameters may drop)."""
        for column in where:
            check_choice("column", column, self.table)
        rows = range(len(self.table[self.setting]))
        return sum(all(self.table[c][i] == v for c, v in where.items()) for i in rows) == 1

    def estimate(self, measure: str, **where: Any) -> Estimate:
        """The estimate of ``measure`` in the row ``where`` names."""
        check_choice("measure", measure, self.samples)
        return self.table[measure][self.index(**where)]

    def difference(self, measure: str, a: dict[str, Any], b: dict[str, Any], *, against: str | None = None) -> Estimate:
        """``measure`` in row ``a`` minus ``against`` (default: the same measure) in row ``b``, paired over their
        shared seeds, with its 95 % interval (:func:`course_utils.stats.difference`): an effect only where the
        interval excludes 0. ``against`` compares with a control measured on the same seeds."""
        other = measure if against is None else against
        for name in (measure, other):
            check_choice("measure", name, self.samples)
        return difference(self.samples[measure][self.index(**a)], self.samples[other][self.index(**b)])

    def grid(self, title: str | None = None, *, rows: int | None = None):
        """The example images, labeled by the setting that produced them (only the first ``rows`` rows if given)."""
        from course_utils.plotting import image_grid

        n = len(self.images) if rows is None else rows * self.ncols
        row_labels = None if self.row_labels is None else self.row_labels[: -(-n // self.ncols)]
        return image_grid(
            self.images[:n], labels=self.labels[:n], row_labels=row_labels, ncols=self.ncols, title=title or self.name
        )

    def show(self, *, rows: int | None = None) -> None:
        """Print the table, show the example grid (its first ``rows`` rows) and, where something was measured, the
        curve."""
        import matplotlib.pyplot as plt

        print(self.text())
        self.grid(rows=rows)
        if self.measures:
            self.curve()
        plt.show()

    def curve(self, title: str | None = None):
        """Each measure against the setting, with 95 % error bars (one line per series where the study has several)."""
        from course_utils.plotting import measured_curves

        return measured_curves(self, title=title or f"{self.name}: measured")


def _fmt(value: Any) -> str:
    if isinstance(value, Estimate):
        return str(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _measured(study_table: dict, samples: dict, measure: str, values: Any, *, share: bool) -> None:
    """Append the estimate of ``values`` (per image, or per condition) to ``study_table[measure]`` and keep the
    values in ``samples[measure]``: a share of successes (Wilson) or a mean (bootstrap)."""
    a = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, float)
    study_table.setdefault(measure, []).append(proportion(a) if share else bootstrap_mean(a))
    samples.setdefault(measure, []).append(a)


def _sample(
    den: Any, n: int, cond: Any, uncond: Any, *, w: float, timesteps: list[int], seed: int, model=None, update="ddpm"
):
    """``n`` samples from pure noise with the course's DDPM (or DDIM) loop, seeded, guided with scale ``w``."""
    check_choice("update rule", update, UPDATE_RULES)
    gen = torch.Generator().manual_seed(seed)
    x_T = den.noise(n, generator=gen)
    sampler = ddpm_sample if update == "ddpm" else ddim_sample
    return sampler(
        model or den, x_T, timesteps, schedule=den.schedule, cond=cond, uncond=uncond, guidance_scale=w, generator=gen
    )


def cfg_study(
    den: Any,
    *,
    conditions: Sequence[Any],
    scales: Sequence[float] = (0.0, 1.0, 2.0, 3.0, 5.0, 7.5),
    samples_per_condition: int = 10,
    steps: int = 33,
    seed: int = 0,
    update: str = "ddpm",
) -> Study:
    """Classifier-free guidance: adherence (read by the model's reader) and diversity as functions of the scale w.

    ``update`` picks the sampler, ``ddpm`` (as the week's loops) or ``ddim`` (as the model card measures).
    """
    timesteps = strided_timesteps(den.schedule.num_timesteps, steps)
    items = [c for c in conditions for _ in range(samples_per_condition)]
    cond, uncond = den.condition(items), den.null_condition(len(items))
    reader = reader_for(den)
    table: dict[str, list[Any]] = {"w": []}
    measured: dict[str, list[np.ndarray]] = {}
    shown, labels = [], []
    for w in scales:
        x = _sample(den, len(items), cond, uncond, w=w, timesteps=timesteps, seed=seed, update=update)
        groups = x.view(len(conditions), samples_per_condition, *x.shape[1:])
        table["w"].append(float(w))
        if reader is not None:  # per sample: read as its condition or not
            _measured(table, measured, "adherence", reader.reads(x, items), share=True)
        _measured(table, measured, "diversity", [diversity(g) for g in groups], share=False)  # per condition
        shown += [groups[i, 0] for i in range(len(conditions))]
        labels += [f"'{c}'" if not labels else "" for c in conditions]  # the columns' conditions, on the top row
    measures = ["adherence", "diversity"] if reader is not None else ["diversity"]
    rows = [f"w = {w:g}" for w in scales]
    grid = dict(images=torch.stack(shown), labels=labels, ncols=len(conditions), row_labels=rows)
    return Study("classifier-free guidance", "w", table, measures=measures, samples=measured, **grid)


def sdedit_study(
    den: Any,
    *,
    images: Mapping[str, torch.Tensor],
    levels: Sequence[int] = (1, 3, 5, 7, 10, 20),
    samples: int = 8,
    steps: int = 33,
    seed: int = 0,
) -> Study:
    """SDEdit: similarity (PSNR) of the edit to the original at each starting index ``i_start`` and, with a reader,
    the share of what it reads on the original that it still reads on the edit (``kept``)."""
    timesteps = strided_timesteps(den.schedule.num_timesteps, steps)
    for i_start in levels:
        check_i_start(i_start, timesteps)
    reader = reader_for(den)
    table: dict[str, list[Any]] = {"image": [], "i_start": [], "t": []}
    measured: dict[str, list[np.ndarray]] = {}
    shown, labels = [], []
    for name, image in images.items():
        shown.append(image[0])
        labels.append("original" if not labels else "")
        batch = image.expand(samples, *image.shape[1:]).to(den.device, den.dtype)
        null = den.null_condition(samples)
        for i_start in levels:
            gen = torch.Generator().manual_seed(seed)
            x = sdedit(den, batch, timesteps, i_start=i_start, schedule=den.schedule, cond=null, generator=gen)
            table["image"].append(name)
            table["i_start"].append(i_start)
            table["t"].append(timesteps[i_start])
            _measured(table, measured, "psnr_db", psnr_per_image(x, batch), share=False)
            if reader is not None:
                _measured(table, measured, "kept", reader.kept(x, batch[:1]), share=False)
            shown.append(x[0])
            labels.append(f"i_start={i_start}" if len(labels) <= len(levels) else "")  # on the top row
    measures = ["psnr_db", "kept"] if reader is not None else ["psnr_db"]
    grid = dict(images=torch.stack(shown), labels=labels, ncols=len(levels) + 1, row_labels=list(images))
    return Study("SDEdit", "i_start", table, measures=measures, series="image", samples=measured, **grid)


def img2img_study(
    den: Any,
    *,
    image: torch.Tensor,
    prompt: Any,
    levels: Sequence[int] = (1, 3, 5, 7, 10, 20),
    samples: int = 16,
    guidance_scale: float = 3.0,
    steps: int = 33,
    seed: int = 0,
) -> Study:
    """Text-conditional image-to-image: how far ``prompt`` pulls ``image`` at each noise level."""
    timesteps = strided_timesteps(den.schedule.num_timesteps, steps)
    batch = image.expand(samples, *image.shape[1:]).to(den.device, den.dtype)
    cond, uncond = den.condition([prompt] * samples), den.null_condition(samples)
    reader = reader_for(den)
    table: dict[str, list[Any]] = {"i_start": [], "t": []}
    measured: dict[str, list[np.ndarray]] = {}
    shown, labels = [image[0]], ["original"]
    for i_start in levels:
        gen = torch.Generator().manual_seed(seed)
        x = text_guided_sdedit(
            den,
            batch,
            timesteps,
            i_start=i_start,
            schedule=den.schedule,
            cond=cond,
            uncond=uncond,
            guidance_scale=guidance_scale,
            generator=gen,
        )
        table["i_start"].append(i_start)
        table["t"].append(timesteps[i_start])
        _measured(table, measured, "psnr_db", psnr_per_image(x, batch), share=False)
        if reader is not None:
            _measured(table, measured, "reads_as_prompt", reader.reads(x, [prompt] * samples), share=True)
        shown.append(x[0])
        labels.append(f"i_start={i_start}")
    measures = ["reads_as_prompt", "psnr_db"] if reader is not None else ["psnr_db"]
    name = f"image-to-image towards '{prompt}'"
    grid = dict(images=torch.stack(shown), labels=labels, ncols=len(levels) + 1, row_labels=[f"towards '{prompt}'"])
    return Study(name, "i_start", table, measures=measures, samples=measured, **grid)


def inpaint_study(
    den: Any,
    *,
    image: torch.Tensor,
    masks: Mapping[str, torch.Tensor],
    label: Any | None = None,
    prompt: Any | None = None,
    samples: int = 16,
    steps: int = 33,
    seed: int = 0,
) -> Study:
    """RePaint-style inpainting per mask: the known region's error (always 0) and, with a reader, whether the
    completed image reads as the ``prompt`` it was inpainted towards or, unconditional, still as the original's
    ``label``: the larger the hole, the less the kept pixels say about it."""
    timesteps = strided_timesteps(den.schedule.num_timesteps, steps)
    batch = image.expand(samples, *image.shape[1:]).to(den.device, den.dtype)
    cond = den.condition([prompt] * samples) if prompt is not None else den.null_condition(samples)
    reader = reader_for(den)
    target = prompt if prompt is not None else label
    table: dict[str, list[Any]] = {"mask": [], "masked_fraction": [], "known_region_max_error": []}
    measured: dict[str, list[np.ndarray]] = {}
    shown, labels = [], []
    for name, mask in masks.items():
        gen = torch.Generator().manual_seed(seed)
        x = inpaint(den, batch, mask, timesteps, schedule=den.schedule, cond=cond, generator=gen)
        keep = (mask == 0).to(x.device)
        table["mask"].append(name)
        table["masked_fraction"].append(float(mask.float().mean()))
        table["known_region_max_error"].append(float((x - batch)[..., keep].abs().max()) if keep.any() else 0.0)
        if reader is not None and target is not None:
            measure = "reads_as_prompt" if prompt is not None else "reads_as_label"
            _measured(table, measured, measure, reader.reads(x, [target] * samples), share=True)
        holed = batch[0] * (1 - mask.to(batch)) - mask.to(batch)  # the hole shown black
        shown += [batch[0], holed, x[0], x[1]]
        labels += ["original", "hole (black)", "inpainted", "inpainted"] if not labels else [""] * 4
    measures = [m for m in ("reads_as_prompt", "reads_as_label") if m in table] or ["known_region_max_error"]
    towards = f", towards '{prompt}'" if prompt is not None else ""
    grid = dict(images=torch.stack(shown), labels=labels, ncols=4, row_labels=[f"mask {m}{towards}" for m in masks])
    return Study("inpainting", "masked_fraction", table, measures=measures, samples=measured, **grid)


def anagram_study(
    den: Any,
    *,
    pairs: Sequence[tuple[Any, Any, str]],
    scales: Sequence[float] = (1.0, 2.0, 3.0),
    samples: int = 50,
    steps: int = 33,
    seed: int = 0,
) -> Study:
    """Visual anagrams: does the sample read as a, and its view as b? With a control: plain samples of a
    that already read as b in the view (6 turned upside down is a 9 anyway)."""
    timesteps = strided_timesteps(den.schedule.num_timesteps, steps)
    reader = reader_for(den)
    null = den.null_condition(samples)
    table: dict[str, list[Any]] = {"pair": [], "w": []}
    measured: dict[str, list[np.ndarray]] = {}
    shown, labels = [], []
    for a, b, view_name in pairs:
        view = get_view(view_name)
        ca, cb = den.condition([a] * samples), den.condition([b] * samples)
        plain = _sample(den, samples, ca, null, w=max(scales), timesteps=timesteps, seed=seed)
        for w in scales:
            model = visual_anagram(den, view=view)
            x = _sample(den, samples, (ca, cb), (null, null), w=w, timesteps=timesteps, seed=seed, model=model)
            table["pair"].append(f"{a}|{b} {view_name}")
            table["w"].append(float(w))
            if reader is not None:
                ok_a = reader.reads(x, [a] * samples)
                ok_b = reader.reads(view.forward(x), [b] * samples)
                control = reader.reads(plain, [a] * samples) & reader.reads(view.forward(plain), [b] * samples)
                for measure, flags in [("reads_a", ok_a), ("view_reads_b", ok_b), ("both", ok_a & ok_b)]:
                    _measured(table, measured, measure, flags, share=True)
                _measured(table, measured, "control_both", control, share=True)
        shown += [x[0], view.forward(x)[0], x[1], view.forward(x)[1]]
        labels += ["sample", f"its {view_name} view", "sample", f"its {view_name} view"]
    measures = ["both", "control_both"] if reader is not None else []
    rows = [f"'{a}', {view_name}: '{b}'\n(w = {scales[-1]:g})" for a, b, view_name in pairs]  # the last w's samples
    grid = dict(images=torch.stack(shown), labels=labels, ncols=4, row_labels=rows)
    return Study("visual anagrams", "w", table, measures=measures, series="pair", samples=measured, **grid)


def hybrid_study(
    den: Any,
    *,
    pairs: Sequence[tuple[Any, Any]],
    sigmas: Sequence[float] = (0.8, 1.0, 1.5),
    guidance_scale: float = 3.0,
    samples: int = 50,
    steps: int = 33,
    seed: int = 0,
) -> Study:
    """Hybrid images: the blurred sample should read as the low-frequency condition and the sample itself
    as the high-frequency one. Control: blurred plain samples of the high condition read as the low one."""
    timesteps = strided_timesteps(den.schedule.num_timesteps, steps)
    reader = reader_for(den)
    null = den.null_condition(samples)
    table: dict[str, list[Any]] = {"pair": [], "sigma": []}
    measured: dict[str, list[np.ndarray]] = {}
    shown, labels = [], []
    for low, high in pairs:
        c_low, c_high = den.condition([low] * samples), den.condition([high] * samples)
        plain = _sample(den, samples, c_high, null, w=guidance_scale, timesteps=timesteps, seed=seed)
        for sigma in sigmas:
            model = hybrid(den, sigma=sigma)
            x = _sample(
                den,
                samples,
                (c_low, c_high),
                (null, null),
                w=guidance_scale,
                timesteps=timesteps,
                seed=seed,
                model=model,
            )
            table["pair"].append(f"low {low} | high {high}")
            table["sigma"].append(float(sigma))
            if reader is not None:
                blurred_reads_low = reader.reads(low_pass(x, sigma), [low] * samples)
                _measured(table, measured, "blurred_reads_low", blurred_reads_low, share=True)
                _measured(table, measured, "reads_high", reader.reads(x, [high] * samples), share=True)
                control = reader.reads(low_pass(plain, sigma), [low] * samples)
                _measured(table, measured, "control_blurred_reads_low", control, share=True)
            shown += [x[0], low_pass(x, sigma)[0], x[1], low_pass(x, sigma)[1]]
            labels += ["sample", f"blurred (σ = {sigma:g})", "sample", f"blurred (σ = {sigma:g})"]
    measures = ["blurred_reads_low", "reads_high", "control_blurred_reads_low"] if reader is not None else []
    rows = [f"low '{low}' | high '{high}'\nσ = {sigma:g}" for low, high in pairs for sigma in sigmas]
    grid = dict(images=torch.stack(shown), labels=labels, ncols=4, row_labels=rows)
    return Study("hybrid images", "sigma", table, measures=measures, series="pair", samples=measured, **grid)


STUDIES: dict[str, Callable[..., Study]] = {
    "cfg": cfg_study,
    "sdedit": sdedit_study,
    "inpaint": inpaint_study,
    "img2img": img2img_study,
    "anagram": anagram_study,
    "hybrid": hybrid_study,
}


def run_study(technique: str, den: Any, **settings: Any) -> Study:
    """Run the study of ``technique`` (one of :data:`STUDIES`); an unknown name is one line naming the valid ones."""
    check_choice("technique", technique, STUDIES)
    try:
        return STUDIES[technique](den, **settings)
    except TypeError as err:
        if "unexpected keyword" in str(err) or "missing" in str(err):
            raise CourseError(f"{technique} study: {err}") from None
        raise
