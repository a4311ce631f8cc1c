"""Train a recipe: ``diffusion-course train`` (also ``python -m course_utils.training.train``).

    diffusion-course train digits --output_dir runs/digits
    diffusion-course train digits --output_dir runs/digits --max-seconds 120
    diffusion-course train digits-reference --output_dir runs/reference --max-steps 2000 --seed 1

The recipes are :data:`course_utils.training.recipes.RECIPES`. The run's folder receives ``checkpoint-{step}/``
folders (every ``--checkpoint-every`` steps, the newest ``--checkpoints-total-limit`` kept) and, when a budget ends
(``--max-steps``, or ``--max-seconds`` of optimisation time summed over resumed sessions), the last checkpoint, the
model in its family's layout (a ``DDPMPipeline`` folder for the digits recipes: ``DigitsPipeline.from_pretrained
(DIR)`` samples it), ``loss.png`` and ``training.json`` (written last: the recipe, the steps, the seconds and the
sessions that ran). The command exits 0.

Running the same command again after an interruption resumes from the newest checkpoint and ends with the weights
an uninterrupted run ends with; running it once the run is done does nothing and says so; a folder written by
another recipe or configuration is refused in one line (exit 2). A progress bar goes to stderr, one summary line
to stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from course_utils.errors import ArgumentParser, CourseError, main_guard
from course_utils.training.checkpoints import check_fingerprint, fingerprint, read_progress
from course_utils.training.loop import TrainConfig
from course_utils.training.recipes import RECIPES, recipe

__all__ = ["build_parser", "main"]

TRAINING_FILE = "training.json"


def build_parser(prog: str | None = None) -> ArgumentParser:
    parser = ArgumentParser(prog=prog or "python -m course_utils.training.train", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help=f"one of {', '.join(RECIPES)}")
    parser.add_argument("--output_dir", "--output-dir", dest="output_dir", required=True, help="the run's folder")
    parser.add_argument("--max-steps", "--max_steps", dest="max_steps", type=int, default=None,
                        help="optimisation steps of the whole run (default: the recipe's)")  # fmt: skip
    parser.add_argument("--max-seconds", "--max_seconds", dest="max_seconds", type=float, default=None,
                        help="stop after this much optimisation time, summed over resumed sessions")  # fmt: skip
    parser.add_argument("--seed", type=int, default=None, help="(default: the recipe's)")
    parser.add_argument("--checkpoint-every", "--checkpointing_steps", dest="checkpoint_every", type=int,
                        default=None, help="steps between checkpoints (default: the recipe's)")  # fmt: skip
    parser.add_argument("--checkpoints-total-limit", "--checkpoints_total_limit", dest="total_limit", type=int,
                        default=None, help="keep the newest N checkpoints (default: the recipe's)")  # fmt: skip
    return parser


def _check_numbers(args) -> None:
    """The budget and checkpoint flags, named as the user typed them (``TrainConfig`` would name its fields)."""
    for flag, value in (("--max-steps", args.max_steps), ("--checkpoint-every", args.checkpoint_every),
                        ("--checkpoints-total-limit", args.total_limit)):  # fmt: skip
        if value is not None and value < 1:
            raise CourseError(f"{flag} must be a whole number ≥ 1, got {value}")
    if args.max_seconds is not None and not 0 < args.max_seconds:
        raise CourseError(f"--max-seconds must be a positive number of seconds, got {args.max_seconds:g}")
    if args.seed is not None and args.seed < 0:
        raise CourseError(f"--seed must be a whole number ≥ 0, got {args.seed}")


def _config(args, base: TrainConfig) -> TrainConfig:
    _check_numbers(args)
    overrides = {
        "steps": args.max_steps,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
        "checkpoints_total_limit": args.total_limit,
    }
    config = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    return replace(config, checkpoint_dir=str(args.output_dir), max_seconds=args.max_seconds)


def _done(folder: Path, step: int) -> bool:
    """Was the model folder written after the checkpoint at ``step``?"""
    file = folder / TRAINING_FILE
    return file.is_file() and json.loads(file.read_text()).get("step") == step


@main_guard
def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    from accelerate import PartialState

    args = build_parser(prog).parse_strict(argv)
    chosen = recipe(args.recipe)
    config = _config(args, chosen.config)
    folder = Path(args.output_dir)
    if folder.exists() and not folder.is_dir():
        raise CourseError(f"--output_dir {folder} is a file, not a folder")
    # 1) a folder of another run is refused before anything trains; a finished run is left alone
    unet = chosen.build(seed=config.seed)
    before = read_progress(folder)
    if before is not None:
        expected = {**config.arithmetic(), **chosen.signature()}
        check_fingerprint(before, fingerprint(unet, expected, processes=PartialState().num_processes))
        spent = config.max_seconds is not None and before.seconds >= config.max_seconds
        if (before.step >= config.steps or spent) and _done(folder, before.step):
            print(
                f"{chosen.name}: {folder} is trained (step {before.step} of {config.steps}, {before.seconds:.1f} s of"
                " optimisation); nothing to do"
            )
            return 0
    # 2) train (resuming from the newest checkpoint), 3) the model folder, the loss curve, training.json last
    ema, losses = chosen.train(unet, config)
    after = read_progress(folder)
    session = after.runs[-1] if before is None or after.step > before.step else {"from": after.step, "steps": 0}
    state = PartialState()
    if state.is_main_process:
        (folder / TRAINING_FILE).unlink(missing_ok=True)
        chosen.save(ema, folder)
        _loss_figure(losses, chosen.name, folder / "loss.png")
        record = {
            "recipe": chosen.name,
            "step": after.step,
            "steps": config.steps,
            "seconds": after.seconds,
            "runs": after.runs,
            "config": config.arithmetic(),
            "signature": chosen.signature(),
        }
        (folder / TRAINING_FILE).write_text(json.dumps(record, indent=2) + "\n")
        stopped = "all steps done" if after.step >= config.steps else f"--max-seconds {config.max_seconds:g} spent"
        print(
            f"{chosen.name}: started at step {session['from']}, ran {session['steps']} steps; step {after.step} of"
            f" {config.steps}, {after.seconds:.1f} s of optimisation in all ({stopped}); model in {folder}"
        )
    return 0


def _loss_figure(losses: list[float], title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    from course_utils.plotting import loss_curve

    figure = loss_curve(losses, title=f"{title}: training loss")
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
