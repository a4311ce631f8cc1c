"""``make bench``: the course's hand-written samplers against diffusers' schedulers on the same model.

Prints wall time per sampling loop and the ratio course / diffusers (≈ 1 means the readable loop costs
nothing extra). Run on an otherwise idle machine; each timing is the median of ``--repeats`` runs.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from course_utils.denoisers import load_denoiser
from course_utils.errors import ArgumentParser, main_guard
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


@main_guard
def main(argv: list[str] | None = None, *, prog: str = "python -m benchmarks") -> int:
    parser = ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    den = load_denoiser("course/digits-ddpm", device="cpu")
    cond = den.condition([i % 10 for i in range(args.batch)])
    x_T = den.noise(args.batch, generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    print(f"digits DDPM, batch {args.batch}, {args.steps} steps, median of {args.repeats} runs, {threads} threads")
    print(f"{'loop':<6} {'course s':>9} {'diffusers s':>12} {'ratio':>6}")
    for name, scheduler_cls, sampler in [("ddpm", DDPMScheduler, ddpm_sample), ("ddim", DDIMScheduler, ddim_sample)]:
        scheduler = scheduler_cls(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)
        scheduler.set_timesteps(args.steps)
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
            args.repeats,
        )
        theirs = _median_seconds(functools.partial(_diffusers_loop, scheduler, den, x_T, cond), args.repeats)
        print(f"{name:<6} {ours:9.3f} {theirs:12.3f} {ours / theirs:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
