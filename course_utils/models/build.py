"""``make models``: train the course's offline models reproducibly and write their model cards.

    diffusion-course models [--only STAGE,...] [--out data/models] [--eval-only]
    python -m course_utils.models.build [--only STAGE,...] [--out data/models] [--eval-only]

The stages (:data:`course_utils.models.stages.STAGES`, in order, then :data:`LATE_STAGES`) are described in
:mod:`course_utils.models.stages` and :func:`course_utils.synthetic.study.build_study_stage`;
each prints its wall time. Training checkpoints go to ``build/checkpoints/`` so an interrupted run resumes where it
stopped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from course_utils.course.paths import MODELS_DIR
from course_utils.errors import ArgumentParser, CourseError, check_choice, main_guard
from course_utils.models.stages import DIGITS_CONFIG, STAGES, build_stage

LATE_STAGES = ("synthetic-study",)
"""Stages that run a face's pipeline (the synthetic-data pipeline of week 6), so this command dispatches them itself:
the floors below it never import the synthetic wing."""
ALL_STAGES = (*STAGES, *LATE_STAGES)

__all__ = ["build_parser", "main"]


def build_parser(prog: str | None = None) -> ArgumentParser:
    parser = ArgumentParser(prog=prog or "python -m course_utils.models.build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="where the model folders go")
    parser.add_argument("--only", default=",".join(ALL_STAGES), help=f"comma-separated stages: {', '.join(ALL_STAGES)}")
    parser.add_argument(
        "--steps",
        type=int,
        help=f"training steps of the digits stage (default {DIGITS_CONFIG.steps}; the others train on fixed budgets)",
    )
    parser.add_argument("--eval-only", action="store_true", help="measure the saved models, train nothing")
    return parser


@main_guard
def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    args = build_parser(prog).parse_strict(argv)
    stages = [check_choice("stage", name.strip(), ALL_STAGES) for name in args.only.split(",") if name.strip()]
    if args.steps is not None:  # it would otherwise change nothing, and a card would claim steps never run
        if args.eval_only:
            raise CourseError("--steps sets how long the digits stage trains, and --eval-only trains nothing")
        if "digits" not in stages:
            raise CourseError(f"--steps sets the digits stage's training steps only; --only {args.only} leaves it out")
        if args.steps < 1:
            raise CourseError(f"--steps must be a positive number of training steps, got {args.steps}")
    begun = time.perf_counter()
    for name in ALL_STAGES:
        if name not in stages:
            continue
        started = time.perf_counter()
        if name == "synthetic-study":
            from course_utils.synthetic.study import build_study_stage

            summary = build_study_stage(args.out, train=not args.eval_only)
        else:
            steps = args.steps or DIGITS_CONFIG.steps
            summary = build_stage(name, args.out, train=not args.eval_only, digits_steps=steps)
        if summary:
            print(summary)
        print(f"stage {name}: {time.perf_counter() - started:.0f} s")
    print(f"all stages: {(time.perf_counter() - begun) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
