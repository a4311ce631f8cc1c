"""Assignments with otter-grader: build them from one source notebook a week, grade submissions locally.

    make assignments ARGS="--weeks 01"          # diffusion-course assign [--weeks 01,02] [--out dist]
    make grade SUBMISSIONS=dir ARGS="--week 01" # diffusion-course grade DIR [--week 01] [--dist dist]

(``python -m course_utils.course.grade assign|grade …`` is the same command line.)

A week's assignment is one notebook in otter assign format v1, ``assignments/<NN>_<slug>/<name>.ipynb``:
solutions, public and hidden tests are marked in that one notebook. ``assign`` runs ``otter assign`` on
each, which writes ``<out>/<NN>_<slug>/student/<name>.ipynb`` (solutions and hidden tests removed) and
``<out>/<NN>_<slug>/autograder/`` (the solution notebook and ``autograder.zip``); the solution is graded
against every test on the way and must score full marks. In both notebooks otter's init cell (``import otter``)
then follows the setup cell (on Colab the setup cell installs otter-grader), not the other way round.

``grade`` runs ``otter run`` (no Docker: submissions execute on a kernel of *this* interpreter, which must
import ``course_utils``) on every ``*.ipynb`` under SUBMISSIONS, keeps each run's ``results.json`` and log
under ``<out>/runs/``, and writes ``<out>/scores.csv``: one row per submission with the submission's path,
one score column per question, ``total``, ``possible``, ``percent`` and ``error``. A submission otter cannot
grade (not a notebook, for another assignment, timed out) gets zeros and an error note; the others go on.
Exit code 0 on success, 2 (one line on stderr) for a mistake in the input or a solution failing its tests.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from course_utils.course.colab import is_setup_cell
from course_utils.course.paths import ROOT, select_weeks, week_folders
from course_utils.errors import ArgumentParser, CourseError, check_choice, main_guard

__all__ = [
    "AUTOGRADER_ZIP",
    "Built",
    "Grade",
    "assign",
    "find_autograder",
    "find_submissions",
    "grade",
    "grade_one",
    "init_after_setup",
    "main",
    "read_questions",
    "sources",
    "write_scores",
]

ASSIGNMENTS_DIR = ROOT / "assignments"
DEFAULT_DIST = Path("dist")
DEFAULT_GRADES = Path("build/grades")
AUTOGRADER_ZIP = "autograder.zip"
ASSIGN_TIMEOUT_S = 1800
DEFAULT_JOBS = min(4, os.cpu_count() or 1)
OTTER_INIT = "# Initialize Otter\nimport otter\n"
"""How otter assign's init cell begins."""
ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit)\w*:")


# ---- finding things ---------------------------------------------------------------------------------------


def sources(assignments_dir: Path = ASSIGNMENTS_DIR) -> dict[str, Path]:
    """Week id → its source notebook, the one ``*.ipynb`` in ``<assignments_dir>/<NN>_<slug>/``."""
    found: dict[str, Path] = {}
    for week, folder in week_folders(assignments_dir).items():
        notebooks = sorted(folder.glob("*.ipynb"))
        if len(notebooks) != 1:
            raise CourseError(f"{folder} must hold exactly one source notebook, found {len(notebooks)}")
        found[week] = notebooks[0]
    if not found:
        raise CourseError(f"no assignments under {assignments_dir}/<NN>_<slug>/")
    return found


def find_submissions(path: Path) -> list[Path]:
    """Every ``*.ipynb`` under ``path`` (or ``path`` itself), sorted, checkpoint folders skipped."""
    if path.is_file() and path.suffix == ".ipynb":
        return [path]
    if not path.is_dir():
        raise CourseError(f"no submissions folder at {path}")
    found = sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not found:
        raise CourseError(f"no notebooks (*.ipynb) under {path}")
    return found


def find_autograder(dist: Path, *, week: str | None, assignments_dir: Path = ASSIGNMENTS_DIR) -> Path:
    """``<dist>/<NN>_<slug>/autograder/autograder.zip`` for ``week`` (``None``: the only week built)."""
    built_folders = week_folders(dist)
    built = {w: f / "autograder" / AUTOGRADER_ZIP for w, f in built_folders.items()}
    built = {w: z for w, z in built.items() if z.is_file()}
    if week is None:
        if len(built) == 1:
            return next(iter(built.values()))
        if not built:
            raise CourseError(f"no autograder under {dist}; run `make assignments` first")
        raise CourseError(f"{dist} holds several weeks ({', '.join(built)}); choose one with --week")
    known = dict(_known_sources(assignments_dir))
    known.update(built_folders)
    week = check_choice("week", week.strip().zfill(2), sorted(known))
    if week not in built:
        expected = dist / known[week].name / "autograder" / AUTOGRADER_ZIP
        raise CourseError(f"no autograder for week {week} at {expected}; run `make assignments` first")
    return built[week]


def _known_sources(assignments_dir: Path) -> dict[str, Path]:
    """Week id → assignment folder, or nothing when there are no sources (grading a dist from elsewhere)."""
    try:
        return {w: nb.parent for w, nb in sources(assignments_dir).items()}
    except CourseError:
        return {}


# ---- running otter ----------------------------------------------------------------------------------------


def _otter(args: Sequence[str], *, timeout: float) -> tuple[int | None, str]:
    """Run ``python -m otter ARGS``: (exit code or ``None`` on timeout, stdout and stderr together).

    It runs in its own process group, so a timeout also ends the kernel otter started.
    """
    # one OpenMP thread per run: several kernels on few cores otherwise slow each other down many times over
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "otter", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            proc.kill()
        output, _ = proc.communicate()
        return None, output
    return proc.returncode, output


def _error_line(output: str) -> str:
    """The line of otter's output that names the error (the last ``SomethingError: …``), shortened."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if ERROR_LINE.match(line)]
    line = (errors or lines or ["no output"])[-1]
    return line if len(line) <= 200 else line[:197] + "..."


# ---- assign -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """One week's otter assign output."""

    week: str
    student: Path
    autograder: Path
    seconds: float


def assign(source: Path, *, week: str, out: Path) -> Built:
    """``otter assign`` one source notebook into ``<out>/<NN>_<slug>/`` (replaced), zip renamed ``autograder.zip``."""
    result = out / source.parent.name
    shutil.rmtree(result, ignore_errors=True)
    start = time.perf_counter()
    code, output = _otter(["assign", "--no-pdfs", str(source), str(result)], timeout=ASSIGN_TIMEOUT_S)
    seconds = time.perf_counter() - start
    if code != 0:
        result.mkdir(parents=True, exist_ok=True)
        log = result / "otter-assign.log"
        log.write_text(output)
        why = f"timed out after {ASSIGN_TIMEOUT_S} s" if code is None else _error_line(output)
        raise CourseError(f"otter assign failed for week {week} ({source.name}): {why} (full log: {log})")
    zips = sorted((result / "autograder").glob(f"{source.stem}-autograder_*.zip"))
    if not zips:
        raise CourseError(f"otter assign wrote no autograder zip for week {week} under {result / 'autograder'}")
    autograder = zips[-1].replace(result / "autograder" / AUTOGRADER_ZIP)
    for notebook in (result / "student" / source.name, result / "autograder" / source.name):
        if notebook.is_file():
            init_after_setup(notebook)
    return Built(week=week, student=result / "student" / source.name, autograder=autograder, seconds=seconds)


def init_after_setup(notebook: Path) -> bool:
    """Move otter's init cell (``import otter``, which otter assign puts first) to just after the notebook's setup
    cell (:mod:`course_utils.course.colab`), so that on Colab the setup cell installs otter-grader before the init
    cell imports it. Returns whether it moved (nothing to move: no setup cell, or no init cell)."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    setups = [i for i, cell in enumerate(nb.cells) if is_setup_cell(cell)]
    inits = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and OTTER_INIT in cell.source]
    if len(setups) != 1 or len(inits) != 1 or inits[0] > setups[0]:
        return False
    init = nb.cells.pop(inits[0])
    nb.cells.insert(setups[0], init)  # the setup cell moved up by one
    nbformat.write(nb, notebook)
    return True


# ---- grade ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grade:
    """One submission's scores per question (zeros when ``error`` says why otter could not grade it)."""

    submission: str
    scores: dict[str, float]
    error: str = ""

    @property
    def total(self) -> float:
        """The points earned."""
        return sum(self.scores.values())


def _natural(name: str) -> list[object]:
    """Sort key putting ``q2`` before ``q10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def read_questions(autograder: Path) -> dict[str, float]:
    """Question → points possible, read from the test files in an autograder zip (``q1``, ``q2``, …)."""
    from otter.test_files import create_test_file  # otter is a dev dependency: import it only to grade

    questions: dict[str, float] = {}
    try:
        with zipfile.ZipFile(autograder) as zf, tempfile.TemporaryDirectory() as tmp:
            for name in zf.namelist():
                if name.startswith("tests/") and name.endswith(".py"):
                    test_file = create_test_file(zf.extract(name, tmp), None)
                    questions[test_file.name] = float(test_file.possible)
    except zipfile.BadZipFile:
        raise CourseError(f"{autograder} is not a zip file; run `make assignments` again") from None
    if not questions:
        raise CourseError(f"{autograder} holds no tests/*.py; run `make assignments` again")
    return dict(sorted(questions.items(), key=lambda item: _natural(item[0])))


def _read_results(results: Path, questions: Sequence[str]) -> dict[str, float] | None:
    """Question → score from otter's ``results.json``; ``None`` when it graded none of ``questions``."""
    tests = {t.get("name"): t.get("score") for t in json.loads(results.read_text()).get("tests", [])}
    if not any(tests.get(q) is not None for q in questions):
        return None
    return {q: float(tests.get(q) or 0.0) for q in questions}


def grade_one(
    notebook: Path, *, name: str, autograder: Path, questions: Sequence[str], workdir: Path, timeout: float
) -> Grade:
    """``otter run`` one submission in ``workdir`` (replaced); its log goes to ``workdir/otter-run.log``."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    args = ["run", "--no-logo", "-a", str(autograder.resolve()), "-o", str(workdir.resolve()), str(notebook.resolve())]
    code, output = _otter(args, timeout=timeout)
    (workdir / "otter-run.log").write_text(output)
    zeros = dict.fromkeys(questions, 0.0)
    if code is None:
        return Grade(name, zeros, f"timed out after {timeout:g} s")
    results = workdir / "results.json"
    scores = _read_results(results, questions) if code == 0 and results.is_file() else None
    if scores is None:
        why = _error_line(output) if code != 0 else "otter graded no question"
        return Grade(name, zeros, f"otter run failed: {why}")
    return Grade(name, scores)


def grade(
    submissions: Sequence[Path], *, root: Path, autograder: Path, out: Path, jobs: int = 1, timeout: float = 600
) -> tuple[dict[str, float], list[Grade]]:
    """Grade ``submissions`` (paths under ``root``) in ``jobs`` parallel otter runs: (questions, grades)."""
    questions = read_questions(autograder)

    def one(notebook: Path) -> Grade:
        name = notebook.relative_to(root).as_posix()
        workdir = out / "runs" / Path(name).with_suffix("")
        return grade_one(
            notebook, name=name, autograder=autograder, questions=list(questions), workdir=workdir, timeout=timeout
        )

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return questions, list(pool.map(one, submissions))


def _number(value: float) -> str:
    """``3.0`` → ``3``, ``2.5`` → ``2.5``: scores as people write them."""
    return f"{round(value, 4):g}"


def _row(g: Grade, questions: dict[str, float]) -> list[str]:
    possible = sum(questions.values())
    percent = 100 * g.total / possible if possible else 0.0
    scores = [_number(g.scores[q]) for q in questions]
    return [g.submission, *scores, _number(g.total), _number(possible), f"{percent:.1f}", g.error]


def write_scores(grades: Sequence[Grade], *, questions: dict[str, float], path: Path) -> list[list[str]]:
    """Write ``scores.csv`` (header: submission, questions…, total, possible, percent, error); return its rows."""
    rows = [["submission", *questions, "total", "possible", "percent", "error"]]
    rows += [_row(g, questions) for g in grades]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return rows


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    """Rows as aligned columns, the error note last and unpadded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:-1], widths[1:], strict=True)]
        print("  ".join([*cells, row[-1]]).rstrip())


# ---- command line -----------------------------------------------------------------------------------------


def _week_list(text: str) -> list[str]:
    weeks = [w.strip() for w in text.split(",") if w.strip()]
    if not weeks:
        raise argparse.ArgumentTypeError(f"expected comma-separated week ids such as 01,02, got {text!r}")
    return weeks


def _positive(text: str) -> int:
    if not (text.isdigit() and int(text) > 0):
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def build_parser(prog: str | None = None) -> ArgumentParser:
    """The ``assign`` and ``grade`` subcommands."""
    parser = ArgumentParser(prog=prog or "python -m course_utils.course.grade", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{assign,grade}")
    build = commands.add_parser("assign", help="otter assign the source notebooks into student and autograder")
    build.add_argument("--weeks", type=_week_list, help="comma-separated week ids, e.g. 01,02 (default: all)")
    build.add_argument("--out", type=Path, default=DEFAULT_DIST, help=f"output folder (default: {DEFAULT_DIST})")
    build.add_argument("--assignments-dir", type=Path, default=ASSIGNMENTS_DIR, help="folder of the week folders")
    run = commands.add_parser("grade", help="otter run every submission locally and write scores.csv")
    run.add_argument("submissions", type=Path, metavar="SUBMISSIONS", help="a folder of *.ipynb (or one notebook)")
    run.add_argument("--week", help="week id, e.g. 01 (default: the only week under --dist)")
    run.add_argument("--dist", type=Path, default=DEFAULT_DIST, help=f"assign's output (default: {DEFAULT_DIST})")
    run.add_argument("--out", type=Path, default=DEFAULT_GRADES, help=f"output folder (default: {DEFAULT_GRADES})")
    run.add_argument("--jobs", type=_positive, default=DEFAULT_JOBS, help=f"parallel runs (default: {DEFAULT_JOBS})")
    run.add_argument(
        "--timeout", type=_positive, default=600, metavar="S", help="limit per submission (default: 600 s)"
    )
    run.add_argument("--assignments-dir", type=Path, default=ASSIGNMENTS_DIR, help="folder of the week folders")
    return parser


def _assign_command(weeks: Sequence[str] | None, *, out: Path, assignments_dir: Path) -> int:
    from course_utils.course.exercises import exercise_weeks, write_answer_key

    found = sources(assignments_dir)
    keyed = exercise_weeks()
    chosen = select_weeks(weeks, sorted(set(found) | set(keyed)))
    for week in chosen:
        if week in found:
            print(f"week {week}: otter assign {found[week]} ...", flush=True)
            built = assign(found[week], week=week, out=out)
            print(f"  student notebook: {built.student}")
            print(f"  autograder:       {built.autograder}  ({built.seconds:.1f} s, solution passed every test)")
        if week in keyed:  # the instructor's key to the week notebooks' "Your turn" (never in a student folder)
            print(f"week {week}: answer key to the notebooks' exercises: {write_answer_key(week, out)}")
    return 0


def _grade_command(args: argparse.Namespace) -> int:
    submissions = find_submissions(args.submissions)
    autograder = find_autograder(args.dist, week=args.week, assignments_dir=args.assignments_dir)
    root = args.submissions if args.submissions.is_dir() else args.submissions.parent
    print(f"grading {len(submissions)} submission(s) with {autograder} ...", flush=True)
    start = time.perf_counter()
    questions, grades = grade(
        submissions, root=root, autograder=autograder, out=args.out, jobs=args.jobs, timeout=args.timeout
    )
    path = args.out / "scores.csv"
    _print_table(write_scores(grades, questions=questions, path=path))
    failed = sum(1 for g in grades if g.error)
    print(f"{len(grades)} graded ({failed} with errors) in {time.perf_counter() - start:.1f} s → {path}")
    print(f"otter logs and results.json per submission: {args.out / 'runs'}")
    return 0


@main_guard
def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``python -m course_utils.course.grade {assign,grade} …``; see the module docstring."""
    args = build_parser(prog).parse_args(argv)
    if args.command == "assign":
        return _assign_command(args.weeks, out=args.out, assignments_dir=args.assignments_dir)
    return _grade_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
