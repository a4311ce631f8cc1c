"""The synthetic-data pipeline against a bare diffusers loop (``make bench ARGS="--only synthetic"``).

- **Overhead**: seconds per image of ``course_utils.synthetic.pipeline.run`` (journal, atomic PNGs, the CSV rebuilt,
  CLIP off) against a bare loop that calls the same ``StableDiffusionPipeline`` on the same captions with the same
  seeds in batches of the same size (one title's captions) and saves each PNG: the ratio pipeline / bare
  (goal ≤ 1.05). Both include loading the model; the two alternate, ``--repeats`` times, and the medians are shown.
- **CLIP scoring**, timed on its own: seconds per image, and as a fraction of drawing it.
- **Resume after a kill**: the command killed with SIGKILL half-way, then run again: the second run's wall time
  against what its remaining images cost at the uninterrupted rate (the difference: start-up, loading, the sweep
  of orphans and the one title batch drawn again).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INPUT = Path(__file__).resolve().parents[1] / "data" / "synthetic" / "shapes_concepts.csv"


def _bare_loop(captions: list[list[str]], seeds: list[list[int]], folder: Path, *, steps: int) -> float:
    """Seconds for a plain diffusers loop: load, one call per title, save each PNG."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from course_utils.course.paths import MODELS_DIR

    started = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(MODELS_DIR / "shapes-sd")
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    folder.mkdir(parents=True)
    for t, (prompts, batch_seeds) in enumerate(zip(captions, seeds, strict=True)):
        generators = [torch.Generator("cpu").manual_seed(s) for s in batch_seeds]
        images = pipe(prompts, num_inference_steps=steps, guidance_scale=7.5, generator=generators).images
        for k, image in enumerate(images):
            image.save(folder / f"{t:06d}-{k}.png")
    return time.perf_counter() - started


def _pipeline(folder: Path, *, limit: int, steps: int, clip: str) -> tuple[float, object]:
    from course_utils.synthetic.pipeline import SyntheticConfig, run

    config = SyntheticConfig(input=INPUT, output_dir=folder, limit=limit, num_inference_steps=steps, clip_model=clip)
    started = time.perf_counter()
    summary = run(config)
    return time.perf_counter() - started, summary


def _captions(folder: Path) -> tuple[list[list[str]], list[list[int]]]:
    import csv

    by_title: dict[str, list[dict]] = {}
    with open(folder / "synthetic_captions.csv", newline="") as f:
        for row in csv.DictReader(f):
            by_title.setdefault(row["caption_id"].split("-")[0], []).append(row)
    rows = list(by_title.values())
    return [[r["caption"] for r in t] for t in rows], [[int(r["seed"]) for r in t] for t in rows]


def _resume_cost(tmp: Path, *, limit: int, steps: int, per_image: float) -> None:
    from course_utils.synthetic.pipeline import SyntheticConfig, command_line, kill_during

    config = SyntheticConfig(input=INPUT, output_dir=tmp / "killed", limit=limit, num_inference_steps=steps,
                             clip_model="none")  # fmt: skip
    total = limit * config.variations
    done = kill_during(config, images=total // 2)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "course_utils.synthetic.cli", *command_line(config)], check=True,
                   capture_output=True)  # fmt: skip
    resumed = time.perf_counter() - started
    remaining = (total - done) * per_image
    print(f"resume after SIGKILL at {done}/{total} images: {resumed:.1f} s; its {total - done} images cost"
          f" {remaining:.1f} s at the uninterrupted rate; the rest ({resumed - remaining:.1f} s) is the process"
          " start, loading and the sweep")  # fmt: skip


def run(*, limit: int = 24, steps: int = 25, repeats: int = 3) -> None:
    """Print the overhead ratio, CLIP's cost and the resume cost (``limit`` titles × 3 captions)."""
    import torch

    print(f"synthetic pipeline vs a bare diffusers loop: {limit} titles × 3 captions, course/shapes-sd, {steps} DDIM"
          f" steps, one call per title, {torch.get_num_threads()} threads")  # fmt: skip
    ours, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for r in range(repeats):
            seconds, summary = _pipeline(tmp / f"pipeline{r}", limit=limit, steps=steps, clip="none")
            ours.append(seconds / summary.images)
            captions, seeds = _captions(tmp / f"pipeline{r}")
            bare.append(_bare_loop(captions, seeds, tmp / f"bare{r}", steps=steps) / summary.images)
        _, scored = _pipeline(tmp / "scored", limit=limit, steps=steps, clip="auto")
        ours_s, bare_s = statistics.median(ours), statistics.median(bare)
        print(f"{'':<22} {'s/image':>8}")
        print(f"{'bare diffusers loop':<22} {bare_s:8.4f}")
        print(f"{'pipeline (CLIP off)':<22} {ours_s:8.4f}   overhead ratio {ours_s / bare_s:.3f} (goal ≤ 1.05)")
        clip = scored.seconds_per_score
        print(f"{'CLIP scoring alone':<22} {clip:8.4f}   {clip / scored.seconds_per_image:.3f} of drawing an image")
        _resume_cost(tmp, limit=limit, steps=steps, per_image=ours_s)


if __name__ == "__main__":
    run()
