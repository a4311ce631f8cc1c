"""Sweeps: vary one generation setting with the rest fixed and seeded, measure every image (the core of
``diffusion-course sweep`` and of week 3's studies).

Settings that can vary (:data:`SETTINGS`): ``scheduler``, ``guidance_scale``, ``num_inference_steps``,
``negative_prompt`` (``""`` or ``none`` for no negative prompt) and ``model_id``. Every combination is checked
against the support matrix (:mod:`course_utils.sd.support`) before any weights load, so a sweep that would fail
at its fifth value fails at once, in one line.

Each image is measured with

- **CLIP score** (Hessel et al. 2021; :func:`course_utils.metrics.clip_score`): the course's shapes CLIP for the
  course's model, ``openai/clip-vit-base-patch32`` for the Hub models (``--clip_model`` picks another, ``none``
  turns it off);
- **adherence** for the course's model: the share of the attributes a prompt names that the attribute judge reads
  in the picture (:func:`course_utils.models.shapes_judge.adherence`).

The result is a :class:`course_utils.studies.Study` (per-value means, the grid, the curves), written by
:func:`save_sweep` as ``grid.png`` (rows: prompt × seed, columns: the values), ``metrics.csv`` (one row per
image) and ``summary.csv`` (one row per value; each measure with its 95 % interval, ``<measure>_low`` and
``<measure>_high``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from course_utils.course.paths import MODELS_DIR
from course_utils.course.registry import check_available, load_failure_reason, resolve_text_model
from course_utils.data.images import from_pil
from course_utils.errors import CourseError, check_choice
from course_utils.metrics import diversity
from course_utils.runtime import quiet_loading, resolve_device
from course_utils.sd.pipeline import DEFAULT_MODEL_ID, LoadedPipeline, load_pipeline, sample_batch
from course_utils.sd.support import GenerationSettings, check_prompt, check_request
from course_utils.stats import Estimate, bootstrap_mean
from course_utils.studies import Study

__all__ = ["SETTINGS", "SweepResult", "check_clip", "combine", "load_clip", "run_sweep", "save_sweep"]

SETTINGS = ("scheduler", "guidance_scale", "num_inference_steps", "negative_prompt", "model_id")
COURSE_CLIP = "course/shapes-clip"
HUB_CLIP = "openai/clip-vit-base-patch32"
COURSE_JUDGE = MODELS_DIR / "shapes-judge"
_NO_NEGATIVE = ("", "none")


@dataclass
class SweepResult:
    """A sweep's per-image rows (``value``, ``prompt``, ``seed``, measures, ``seconds``), the images ``(3, H, W)`` in
    ``[-1, 1]`` aligned with them, and its :class:`Study`."""

    setting: str
    values: list[Any]
    rows: list[dict[str, Any]]
    images: list[torch.Tensor]
    study: Study
    warnings: list[str] = field(default_factory=list)

    def images_of(self, value: Any) -> tuple[torch.Tensor, list[str]]:
        """The images ``(N, 3, H, W)`` made with ``value`` and their prompts."""
        picked = [
            (image, row["prompt"]) for image, row in zip(self.images, self.rows, strict=True) if row["value"] == value
        ]
        if not picked:
            raise CourseError(
                f"{value!r} is not a value of this sweep; its values: {', '.join(map(_label, self.values))}"
            )
        return torch.stack([image for image, _ in picked]), [prompt for _, prompt in picked]


def load_clip(model_id: str):
    """``(CLIPModel, CLIPProcessor)`` for ``model_id``: ``course/shapes-clip`` (the offline one), a Hub id or a
    folder; in eval mode."""
    from transformers import CLIPModel, CLIPProcessor

    if model_id == COURSE_CLIP:
        from course_utils.models.shapes_clip import load_shapes_clip

        return load_shapes_clip(MODELS_DIR / "shapes-clip")
    try:
        with quiet_loading():
            return CLIPModel.from_pretrained(model_id).eval(), CLIPProcessor.from_pretrained(model_id)
    except OSError as err:  # offline and not cached, gone, a folder of something else …
        folder = Path(model_id).expanduser().is_dir()
        why = (str(err).strip().splitlines() or [type(err).__name__])[0][:200] if folder else load_failure_reason(err)
        raise CourseError(f"cannot load CLIP {model_id}: {why}") from None


def check_clip(model_id: str) -> str:
    """``model_id`` if :func:`load_clip` can load it, checked without loading: the course's CLIP, a folder with a
    ``config.json``, or a CLIP id of the course registry (in the local cache, when offline); else one line."""
    if model_id == COURSE_CLIP:
        return model_id
    path = Path(model_id).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CourseError(f"CLIP folder {path} has no config.json: not a transformers model")
        return model_id
    check_available(resolve_text_model(model_id, family="clip"), what="CLIP")
    return model_id


def _value(setting: str, value: Any) -> Any:
    """A CLI string (or a Python value) as the setting's type; ``""`` / ``none`` → no negative prompt."""
    try:
        if setting == "guidance_scale":
            return float(value)
        if setting == "num_inference_steps":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
    except (TypeError, ValueError):
        raise CourseError(f"{setting} values must be numbers, got {value!r}") from None
    if setting == "negative_prompt" and (value is None or str(value).strip().lower() in _NO_NEGATIVE):
        return None
    return str(value)


def _request(base: dict[str, Any], setting: str, value: Any) -> tuple[GenerationSettings, list[str]]:
    fields = {**base, setting: value}
    return check_request(
        fields["model_id"],
        scheduler=fields["scheduler"],
        steps=fields["num_inference_steps"],
        guidance_scale=fields["guidance_scale"],
        height=fields["height"],
        width=fields["width"],
        negative_prompt=fields["negative_prompt"],
    )


def run_sweep(
    *,
    setting: str,
    values: Sequence[Any],
    prompts: Sequence[str],
    seeds: Sequence[int] = (0,),
    model_id: str = DEFAULT_MODEL_ID,
    scheduler: str | None = None,
    guidance_scale: float | None = None,
    num_inference_steps: int | None = None,
    negative_prompt: str | None = None,
    height: int | None = None,
    width: int | None = None,
    device: str = "auto",
    clip_model: str | None = "auto",
    judge: bool = True,
    batch_size: int = 64,
    progress: bool = True,
) -> SweepResult:
    """Generate every (value, prompt, seed) with everything else fixed, and measure each image.

    Args:
        setting: one of :data:`SETTINGS`; ``values`` its values (strings are converted: ``"7.5"``, ``"none"``).
        prompts, seeds: each value draws ``len(prompts) × len(seeds)`` images; image (prompt, seed) uses
            ``torch.Generator("cpu").manual_seed(seed)`` at every value, so columns differ only by the setting.
        model_id … width: the fixed settings (``None``: the model's default, see
            :func:`course_utils.sd.support.check_request`).
        clip_model: ``"auto"`` (the shapes CLIP for the course's model, else ``openai/clip-vit-base-patch32``), an id
            or folder, or ``None`` for no CLIP score.
        judge: score adherence where the model is the course's and the judge exists.
        batch_size: images per pipeline call (:func:`course_utils.sd.pipeline.sample_batch`).

    Every measure is reported with its 95 % interval, bootstrapped over prompts and seeds; with two seeds or more,
    ``diversity`` (mean pairwise RMS distance between one prompt's images across seeds) is measured too.
    """
    # 1) check every value before loading anything
    check_choice("setting", setting, SETTINGS)
    values = [_value(setting, v) for v in values]
    if not values or not prompts or not seeds:
        raise CourseError("a sweep needs at least one value, one prompt and one seed")
    base = {
        "model_id": model_id,
        "scheduler": scheduler,
        "guidance_scale": guidance_scale,
        "num_inference_steps": num_inference_steps,
        "negative_prompt": _value("negative_prompt", negative_prompt),
        "height": height,
        "width": width,
    }
    checked = [_request(base, setting, v) for v in values]
    warnings = list(dict.fromkeys(w for _, ws in checked for w in ws))
    for settings, _ in checked:
        for prompt in prompts:
            check_prompt(settings, prompt)
    resolve_device(device)
    families = {settings.family for settings, _ in checked}
    clip_id = (COURSE_CLIP if families == {"course-sd"} else HUB_CLIP) if clip_model == "auto" else clip_model
    if clip_id is not None:
        check_clip(clip_id)
    for settings in {settings.source: settings for settings, _ in checked}.values():
        check_available(settings.resolved)
    # 2) generate: one pipeline per model, loaded once
    pipelines: dict[str, LoadedPipeline] = {}
    rows: list[dict[str, Any]] = []
    tiles: list[tuple[int, int, torch.Tensor]] = []  # (row, column, image)
    grid_prompts = [prompt for prompt in prompts for _ in seeds]  # row-major: prompt × seed
    grid_seeds = [seed for _ in prompts for seed in seeds]
    bar = tqdm(total=len(values) * len(grid_prompts), desc=f"sweep {setting}", disable=not progress)
    for column, (value, (settings, _)) in enumerate(zip(values, checked, strict=True)):
        if settings.source not in pipelines:
            pipelines[settings.source] = load_pipeline(settings, device=device)
        pictures, seconds = sample_batch(
            pipelines[settings.source], settings, prompts=grid_prompts, seeds=grid_seeds, batch_size=batch_size
        )
        for row, (prompt, seed, image) in enumerate(zip(grid_prompts, grid_seeds, pictures, strict=True)):
            rows.append(
                {
                    "value": value,
                    "prompt": prompt,
                    "seed": seed,
                    "family": settings.family,
                    "scheduler": settings.scheduler,
                    "seconds": seconds,
                }
            )
            tiles.append((row, column, from_pil(image)))
        bar.update(len(grid_prompts))
    bar.close()
    pipelines.clear()
    # 3) measure
    images = [t for _, _, t in tiles]
    if clip_id is not None:
        from course_utils.metrics import clip_score

        model, processor = load_clip(clip_id)
        scores = clip_score(model, processor, [_pil(t) for t in images], [r["prompt"] for r in rows])
        for row, score in zip(rows, scores.tolist(), strict=True):
            row["clip_score"] = score
    if judge and families == {"course-sd"} and (COURSE_JUDGE / "config.json").is_file():
        from course_utils.models.shapes_judge import adherence, load_shapes_judge

        found = adherence(load_shapes_judge(COURSE_JUDGE), torch.stack(images), [r["prompt"] for r in rows])
        for row, share in zip(rows, found.per_sample.tolist(), strict=True):
            row["adherence"] = share
    row_labels = [f"'{prompt}', seed {seed}" for prompt, seed in zip(grid_prompts, grid_seeds, strict=True)]
    study = _study(setting, values, rows, tiles, n_prompts=len(prompts), n_seeds=len(seeds), row_labels=row_labels)
    return SweepResult(setting, values, rows, images, study, warnings)


def _pil(image: torch.Tensor):
    from PIL import Image

    return Image.fromarray(((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())


def _label(value: Any) -> str:
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _study(
    setting: str, values: list, rows: list[dict], tiles: list, *, n_prompts: int, n_seeds: int, row_labels: list[str]
) -> Study:
    measures = [m for m in ("adherence", "clip_score") if m in rows[0]]
    table: dict[str, list[Any]] = {setting: [_label(v) if not isinstance(v, int | float) else v for v in values]}
    samples: dict[str, list[np.ndarray]] = {}
    for m in measures:  # wall times stay in the per-image rows (metrics.csv): they differ from run to run
        for v in values:
            grid = np.array([r[m] for r in rows if r["value"] == v], dtype=float).reshape(n_prompts, n_seeds)
            table.setdefault(m, []).append(bootstrap_mean(grid))  # over prompts × seeds
            samples.setdefault(m, []).append(grid)
    if n_seeds >= 2:  # per prompt: how different its seeds' pictures are
        measures.append("diversity")
        for column in range(len(values)):
            images = torch.stack([t for _, c, t in tiles if c == column]).view(n_prompts, n_seeds, *tiles[0][2].shape)
            per_prompt = np.array([diversity(group) for group in images])
            table.setdefault("diversity", []).append(bootstrap_mean(per_prompt))
            samples.setdefault("diversity", []).append(per_prompt)
    order = sorted(range(len(tiles)), key=lambda i: (tiles[i][0], tiles[i][1]))  # row-major: prompt × seed, value
    labels = [f"{setting} = {_label(values[tiles[i][1]])}" if tiles[i][0] == 0 else "" for i in order]
    return Study(
        name=f"sweep of {setting}",
        setting=setting,
        table=table,
        images=[tiles[i][2] for i in order],
        labels=labels,
        ncols=len(values),
        measures=measures,
        samples=samples,
        row_labels=row_labels,
    )


def combine(studies: dict[str, Study], *, series: str) -> Study:
    """Several sweeps of one setting as one :class:`Study` whose curves have a line per key of ``studies`` (e.g.
    the guidance sweep with DDPM and with DDIM); the grid is the first study's."""
    first = next(iter(studies.values()))
    if any(s.setting != first.setting or s.measures != first.measures for s in studies.values()):
        raise CourseError("combine needs sweeps of the same setting with the same measures")
    table: dict[str, list[Any]] = {series: [name for name, s in studies.items() for _ in s.table[s.setting]]}
    for column in first.table:
        table[column] = [v for s in studies.values() for v in s.table[column]]
    samples = {m: [v for s in studies.values() for v in s.samples[m]] for m in first.samples}
    return Study(
        name=f"{first.name} by {series}",
        setting=first.setting,
        table=table,
        images=first.images,
        labels=first.labels,
        ncols=first.ncols,
        measures=first.measures,
        series=series,
        samples=samples,
        row_labels=first.row_labels,
    )


def save_sweep(result: SweepResult, output_dir: str | Path) -> dict[str, Path]:
    """Write ``grid.png``, ``metrics.csv`` (one row per image) and ``summary.csv`` (per value) into ``output_dir``."""
    import matplotlib.pyplot as plt

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"grid": out / "grid.png", "metrics": out / "metrics.csv", "summary": out / "summary.csv"}
    fig = result.study.grid(title=f"{result.study.name} (rows: prompt × seed)")
    fig.savefig(paths["grid"], dpi=120, bbox_inches="tight")
    plt.close(fig)
    columns = ["setting", "value", *[k for k in result.rows[0] if k != "value"]]
    with paths["metrics"].open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in result.rows:
            writer.writerow({**row, "setting": result.setting, "value": _label(row["value"])})
    table = result.study.table
    header, columns = [], []
    for name, values in table.items():  # an estimate becomes three columns: value, low, high (95 %)
        if values and isinstance(values[0], Estimate):
            header += [name, f"{name}_low", f"{name}_high"]
            columns += [[v.value for v in values], [v.low for v in values], [v.high for v in values]]
        else:
            header.append(name)
            columns.append(values)
    with paths["summary"].open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(zip(*columns, strict=True))
    return paths
