"""``make bench`` (``diffusion-course bench``): ratios against a reference, measured in one run.

- ``sampling``: the course's hand-written samplers against diffusers' schedulers on the same model: wall time per
  sampling loop and the ratio course / diffusers (≈ 1 means the readable loop costs nothing extra); each timing is
  the median of ``--repeats`` runs;
- ``training``: the course's digits recipe against diffusers' reference recipe on one wall-clock budget
  (:mod:`benchmarks.training`), mean ± sd over ``--seeds``, and the course recipe's time to ≥ 98 % agreement;
- ``finetuning``: LoRA against full fine-tuning of the U-Net at equal steps (:mod:`benchmarks.finetuning`):
  trainable parameters, seconds per step, training memory, size on disk, concept rate, as ratios;
- ``synthetic``: week 6's research study (:mod:`benchmarks.synthetic`): a downstream captioner trained on a narrow
  real set, on it plus synthetic pictures, and on it plus as many extra real ones, scored on the attribute
  combinations the real set never shows; the differences with their intervals (``--synthetic-dir`` reads a
  pipeline's output folder instead of generating).

``--short`` runs both briefly (a smoke test of the benchmark, not a measurement). Run on an otherwise idle machine.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from course_utils.denoisers import load_denoiser
from course_utils.errors import ArgumentParser, check_choice, main_guard
from course_utils.sampling.diffusion import ddim_sample, ddpm_sample
from course_utils.sampling.schedules import NoiseSchedule


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _diffusers_loop(scheduler, den, x, cond) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in scheduler.timesteps:
            t_batch = torch.full((x.shape[0],), int(t), dtype=torch.long)
            x = scheduler.step(den(x, t_batch, cond), t, x, generator=generator).prev_sample
    return x


BENCHES = ("sampling", "training", "finetuning", "synthetic")


def sampling_bench(*, batch: int, steps: int, repeats: int) -> None:
    """Print the sampler timings (see the module docstring)."""
    den = load_denoiser("course/digits-ddpm", device="cpu")
    cond = den.condition([i % 10 for i in range(batch)])
    x_T = den.noise(batch, generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    print(f"digits DDPM, batch {batch}, {steps} steps, median of {repeats} runs, {threads} threads")
    print(f"{'loop':<6} {'course s':>9} {'diffusers s':>12} {'ratio':>6}")
    for name, scheduler_cls, sampler in [("ddpm", DDPMScheduler, ddpm_sample), ("ddim", DDIMScheduler, ddim_sample)]:
        scheduler = scheduler_cls(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)
        scheduler.set_timesteps(steps)
        ours = _median_seconds(
            functools.partial(
                sampler,
                den,
                x_T,
                scheduler.timesteps.tolist(),
                schedule=NoiseSchedule.from_scheduler(scheduler),
                cond=cond,
                generator=torch.Generator().manual_seed(1),
            ),
            repeats,
        )
        theirs = _median_seconds(functools.partial(_diffusers_loop, scheduler, den, x_T, cond), repeats)
        print(f"{name:<6} {ours:9.3f} {theirs:12.3f} {ours / theirs:6.2f}")


@main_guard
def main(argv: list[str] | None = None, *, prog: str = "python -m benchmarks") -> int:
    parser = ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated: {', '.join(BENCHES)}")
    parser.add_argument("--short", action="store_true", help="a brief run of each (checks the benchmark runs)")
    parser.add_argument("--batch", type=int, default=256, help="sampling: images per loop")
    parser.add_argument("--steps", type=int, default=50, help="sampling: denoising steps")
    parser.add_argument("--repeats", type=int, default=5, help="sampling: timings per loop (the median is shown)")
    parser.add_argument("--budget", type=float, default=120.0, help="training: seconds of optimisation per recipe")
    parser.add_argument("--seeds", default="0,1,2", help="training: comma-separated seeds")
    parser.add_argument("--checkpoint-every", type=int, default=250, help="training: steps between agreement reads")
    parser.add_argument("--finetune-steps", type=int, default=200, help="finetuning: steps per method")
    parser.add_argument("--study-seeds", default="0,1,2,3,4", help="synthetic: comma-separated training seeds")
    parser.add_argument("--synthetic-per-title", type=int, default=None, help="synthetic: variations a title (20)")
    parser.add_argument("--synthetic-dir", default=None, help="synthetic: a pipeline's imagefolder output to study")
    parser.add_argument("--synthetic-titles", default=None, help="synthetic: all (24) or seen (8) titles")
    args = parser.parse_args(argv)
    chosen = [check_choice("benchmark", name.strip(), BENCHES) for name in args.only.split(",") if name.strip()]
    n_seeds = 24
    if args.short:
        args.batch, args.steps, args.repeats, args.budget, args.checkpoint_every = 32, 10, 1, 5.0, 50
        args.finetune_steps, n_seeds = 4, 2
    if "sampling" in chosen:
        sampling_bench(batch=args.batch, steps=args.steps, repeats=args.repeats)
    if "training" in chosen:
        from benchmarks.training import run

        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        run(budget=args.budget, seeds=seeds, checkpoint_every=args.checkpoint_every)
    if "finetuning" in chosen:
        from benchmarks import finetuning

        finetuning.run(steps=args.finetune_steps, n_seeds=n_seeds)
    if "synthetic" in chosen:
        from benchmarks import synthetic

        study_seeds = tuple(int(s) for s in args.study_seeds.split(",") if s.strip())
        synthetic.run(seeds=study_seeds, per_title=args.synthetic_per_title, titles=args.synthetic_titles,
                      synthetic_dir=args.synthetic_dir, short=args.short)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
