"""``diffusion-course``: the course's one command, a subcommand per face.

    diffusion-course --help
    diffusion-course run --weeks 01 --profile offline
    diffusion-course generate --prompt "a red circle on the left on a black background"
    diffusion-course train digits --output_dir runs/digits --max-seconds 120
    diffusion-course grade submissions/

Each subcommand is the very parser of its ``python -m course_utils.…`` form (:data:`COMMANDS` names the module),
imported only when it runs, so ``--help`` and a mistyped command answer at once. An unknown command is one line
naming the valid ones, exit code 2.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from course_utils.course.paths import ROOT
from course_utils.errors import CourseError, check_choice, main_guard

__all__ = ["COMMANDS", "Command", "main"]

PROG = "diffusion-course"


@dataclass(frozen=True)
class Command:
    """A subcommand: the module whose ``main(argv, *, prog)`` runs it, words put before the user's arguments
    (``grade``'s module holds ``assign`` and ``grade`` as its own subcommands), and its one-line summary."""

    module: str
    summary: str
    prefix: tuple[str, ...] = ()


COMMANDS: dict[str, Command] = {
    "run": Command("course_utils.course.run", "execute the week notebooks headlessly (papermill), report.json"),
    "generate": Command("course_utils.sd.generate", "text to image with a Stable Diffusion model: PNG + JSON sidecar"),
    "sweep": Command("course_utils.sd.sweep", "vary one generation setting, measure every image, write a grid"),
    "models": Command("course_utils.models.build", "retrain the offline models (seeded, resumable) and their cards"),
    "train": Command("course_utils.training.train", "train a recipe (digits, …) with checkpoints and bit-exact resume"),
    "finetune": Command("course_utils.training.finetune", "DreamBooth, LoRA or full fine-tuning of a Stable Diffusion"),
    "synthetic": Command("course_utils.synthetic.cli", "titles → caption variations → images → CSV; resumable"),
    "assign": Command("course_utils.course.grade", "build student notebooks and autograders (otter)", ("assign",)),
    "grade": Command("course_utils.course.grade", "grade a folder of executed submissions → scores.csv", ("grade",)),
    "bench": Command("benchmarks.__main__", "the course's samplers against diffusers' schedulers, as ratios"),
}


def usage() -> str:
    """``diffusion-course --help``: every command with its one line."""
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} COMMAND [--help] [ARGS ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", f"`{PROG} COMMAND --help` shows a command's options."]
    return "\n".join(lines)


def _load(command: Command):
    if command.module.startswith("benchmarks"):  # the benchmarks live beside the package, in the repository
        if not (ROOT / "benchmarks" / "__main__.py").is_file():
            raise CourseError(f"bench runs from a clone of the course repository; no benchmarks/ under {ROOT}")
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
    return importlib.import_module(command.module)


@main_guard
def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to its subcommand; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name = check_choice("command", argv[0], COMMANDS)
    command = COMMANDS[name]
    prog = PROG if command.prefix else f"{PROG} {name}"  # a prefixed module adds the subcommand's name itself
    return _load(command).main([*command.prefix, *argv[1:]], prog=prog) or 0


if __name__ == "__main__":
    raise SystemExit(main())
