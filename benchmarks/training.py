"""The digits recipes on one wall-clock budget: the course's ``digits`` recipe against diffusers' reference recipe.

Both train through :func:`course_utils.training.loop.fit` on the same data (the training split of the 8×8 digits,
10 % label dropout) for the same optimisation time (``--budget`` seconds, ``TrainConfig.max_seconds``), and both are
read by the same reader: agreement at guidance w = 1 of 500 samples (50 per digit, DDIM 50 steps, seed 0) with the
RBF-SVM trained on the real digits (:func:`course_utils.models.stages.digits_agreement`, as ``make models``
measures the committed model). The reference (``digits-reference``) is ``DDPMScheduler()``'s defaults (linear β,
T = 1000, ε-prediction) on the same ``UNet2DModel``, AdamW at a constant 1e-4, no warm-up, no EMA.

Printed per seed and as mean ± sd over the seeds: each recipe's agreement after the budget, their ratio and their
ratio of steps per second (measured in the same run, so the machine's load cancels as far as it is steady), and the
course recipe's optimisation time to ≥ 98 % agreement (its checkpoints are read one by one). The two recipes run
in alternating order from seed to seed. Times are noisy on a shared machine: prefer the ratios.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from course_utils.training.checkpoints import checkpoint_folders

TARGET = 0.98


def _agreement_of(recipe, unet, folder: Path) -> float:
    from course_utils.denoisers import load_denoiser
    from course_utils.models.stages import digits_agreement

    recipe.save(unet, folder)
    return digits_agreement(load_denoiser(str(folder), device="cpu"), scales=(1.0,))["agreement@1"].value


def _train(name: str, *, seed: int, budget: float, folder: Path, checkpoint_every: int | None) -> dict:
    """Train recipe ``name`` for ``budget`` seconds of optimisation; agreement after it (and at every checkpoint
    when ``checkpoint_every`` is given: ``curve`` = [(seconds, agreement), …])."""
    from safetensors.torch import load_model

    from course_utils.training.recipes import recipe

    chosen = recipe(name)
    config = replace(
        chosen.config,
        seed=seed,
        checkpoint_dir=str(folder / "run"),
        checkpoint_every=checkpoint_every or 10**9,
        checkpoints_total_limit=None,
        max_seconds=budget,
    )
    if chosen.config.lr_schedule == "constant":  # the budget, not the step count, ends it
        config = replace(config, steps=10**9)
    unet = chosen.build(seed=seed)
    ema, _ = chosen.train(unet, config, description=f"{name} seed {seed}")
    checkpoints = checkpoint_folders(folder / "run")
    final = json.loads((checkpoints[-1] / "loop_state.json").read_text())
    result = {"steps": final["step"], "seconds": final["seconds"], "agreement": _agreement_of(chosen, ema, folder)}
    if checkpoint_every:
        curve = []
        for path in checkpoints[:-1]:
            state = json.loads((path / "loop_state.json").read_text())
            load_model(ema, str(path / "ema.safetensors"))
            curve.append((state["seconds"], _agreement_of(chosen, ema, folder / "at")))
        result["curve"] = [*curve, (final["seconds"], result["agreement"])]
    return result


def _time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((seconds for seconds, agreement in curve if agreement >= target), None)


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def run(*, budget: float, seeds: list[int], checkpoint_every: int, course: str = "digits") -> None:
    """Print the comparison (see the module docstring)."""
    import torch

    print(
        f"digits recipes, {budget:g} s of optimisation each, seeds {', '.join(map(str, seeds))},"
        f" {torch.get_num_threads()} threads; agreement at w = 1 (500 samples, DDIM 50)"
    )
    header = f"{'seed':>4} {'course':>7} {'reference':>9} {'ratio':>6} {'steps/s ratio':>13} {'t(≥98 %) s':>10}"
    print(header)
    rows = []
    for i, seed in enumerate(seeds):
        with tempfile.TemporaryDirectory() as tmp:
            order = ["course", "reference"] if i % 2 == 0 else ["reference", "course"]
            results = {}
            for which in order:
                name = course if which == "course" else "digits-reference"
                every = checkpoint_every if which == "course" else None
                results[which] = _train(
                    name, seed=seed, budget=budget, folder=Path(tmp) / which, checkpoint_every=every
                )
        ours, theirs = results["course"], results["reference"]
        speed = (ours["steps"] / ours["seconds"]) / (theirs["steps"] / theirs["seconds"])
        reached = _time_to(ours["curve"], TARGET)
        rows.append({"ours": ours, "theirs": theirs, "speed": speed, "reached": reached})
        shown = f"{reached:.0f}" if reached is not None else "not yet"
        print(
            f"{seed:>4} {ours['agreement']:7.3f} {theirs['agreement']:9.3f}"
            f" {ours['agreement'] / max(theirs['agreement'], 1e-9):6.2f} {speed:13.2f} {shown:>10}"
        )
    reached = [r["reached"] for r in rows if r["reached"] is not None]
    print(
        f"mean ± sd: course {_mean_sd([r['ours']['agreement'] for r in rows])},"
        f" reference {_mean_sd([r['theirs']['agreement'] for r in rows])},"
        f" ratio {_mean_sd([r['ours']['agreement'] / max(r['theirs']['agreement'], 1e-9) for r in rows])},"
        f" steps/s ratio {_mean_sd([r['speed'] for r in rows])}"
    )
    print(
        f"course recipe's time to ≥ {TARGET:.0%} agreement: {_mean_sd(reached)} s"
        f" ({len(reached)} of {len(rows)} seeds reached it within {budget:g} s;"
        f" as a share of the budget {_mean_sd([r / budget for r in reached])})"
    )
