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

``grade`` grades a whole class: every ``*.ipynb`` under SUBMISSIONS, whichever weeks they mix. It tells each
submission's assignment from the notebook itself (:func:`identify`: otter's metadata, else a file name ending in
the assignment's name, as a learning platform's download ``alice_1234_sampling_loops_1.ipynb``), runs ``otter run``
on it (no Docker: submissions execute on a kernel of *this* interpreter, which must import ``course_utils``),
keeps each run's ``results.json``, ``details.json`` and log under ``<out>/runs/``, and writes
(:mod:`course_utils.course.gradebook`) ``<out>/scores.csv`` (submission, week, assignment, total, possible,
percent, error), ``<out>/scores-NN.csv`` per week with a column per question, and ``<out>/feedback/<name>.txt``
per submission to hand back. A file that is not an assignment notebook, corrupt JSON, a run over the time limit or
one otter cannot grade gets 0 points and its reason in ``error``; the others are graded all the same.
``--week NN`` grades only that week's submissions (and those that name no assignment, with that week's).
Exit code 0 on success, 2 (one line on stderr) for a mistake in the input or a solution failing its tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from course_utils.course.colab import is_setup_cell
from course_utils.course.gradebook import Grade, class_rows, print_table, week_rows, write_csv, write_feedback
from course_utils.course.otter_run import DETAILS
from course_utils.course.paths import ROOT, select_weeks, week_folders
from course_utils.errors import ArgumentParser, CourseError, check_choice, main_guard

__all__ = [
    "AUTOGRADER_ZIP",
    "Assignment",
    "Built",
    "Grade",
    "Graded",
    "assign",
    "built_assignments",
    "find_submissions",
    "grade",
    "grade_one",
    "identify",
    "init_after_setup",
    "main",
    "read_questions",
    "select_assignments",
    "sources",
]

ASSIGNMENTS_DIR = ROOT / "assignments"
DEFAULT_DIST = Path("dist")
DEFAULT_GRADES = Path("build/grades")
FEEDBACK = "feedback"
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


@dataclass(frozen=True)
class Assignment:
    """One built assignment: its week, otter's name for it (``sampling_loops_1``) and its autograder zip."""

    week: str
    name: str
    autograder: Path


def _assignment_name(autograder: Path) -> str:
    """The ``assignment_name`` otter assign wrote into the zip's ``otter_config.json``."""
    try:
        with zipfile.ZipFile(autograder) as zf:
            config = json.loads(zf.read("otter_config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError):
        raise CourseError(f"{autograder} is not an otter autograder zip; run `make assignments` again") from None
    name = config.get("assignment_name") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name:
        raise CourseError(f"{autograder} names no assignment in its otter_config.json; run `make assignments` again")
    return name


def built_assignments(dist: Path) -> dict[str, Assignment]:
    """Week id → :class:`Assignment`, for every ``<dist>/<NN>_<slug>/autograder/autograder.zip``."""
    found = {}
    for week, folder in week_folders(dist).items():
        autograder = folder / "autograder" / AUTOGRADER_ZIP
        if autograder.is_file():
            found[week] = Assignment(week=week, name=_assignment_name(autograder), autograder=autograder)
    return found


def select_assignments(
    dist: Path, *, week: str | None, assignments_dir: Path = ASSIGNMENTS_DIR
) -> tuple[dict[str, Assignment], str | None]:
    """Every assignment built under ``dist``, and the week ``--week`` asks for (checked; ``None``: every week)."""
    built = built_assignments(dist)
    if week is None:
        if not built:
            raise CourseError(f"no autograder under {dist}; run `make assignments` first")
        return built, None
    known = dict(_known_sources(assignments_dir))
    known.update(week_folders(dist))
    week = check_choice("week", week.strip().zfill(2), sorted(known))
    if week not in built:
        expected = dist / known[week].name / "autograder" / AUTOGRADER_ZIP
        raise CourseError(f"no autograder for week {week} at {expected}; run `make assignments` first")
    return built, week


def _known_sources(assignments_dir: Path) -> dict[str, Path]:
    """Week id → assignment folder, or nothing when there are no sources (grading a dist from elsewhere)."""
    try:
        return {w: nb.parent for w, nb in sources(assignments_dir).items()}
    except CourseError:
        return {}


RESUBMITTED = re.compile(r"(-\d+| \(\d+\))$")
"""What a platform or a browser appends to a file downloaded twice: ``name-2``, ``name (2)``."""


def identify(
    notebook: Path, assignments: Sequence[Assignment], *, fallback: Assignment | None = None
) -> tuple[Assignment | None, str]:
    """Which of ``assignments`` the submission ``notebook`` is: ``(assignment, "")``, or ``(None, why not)``.

    In this order: the ``assignment_name`` otter assign writes into the student notebook's metadata; the file
    name, which ends in the assignment's name (a learning platform's download prefixes the student's:
    ``alice_1234_sampling_loops_1.ipynb``; a ``-2`` or `` (2)`` after it is ignored; the longest name wins);
    ``fallback`` (the week ``--week`` asks for, or the only week built) for a notebook that says neither.
    A file that is not a notebook is refused whatever its name.
    """
    by_file_name = _by_file_name(notebook, assignments) or fallback
    try:
        nb = json.loads(notebook.read_bytes())
    except UnicodeDecodeError:
        return by_file_name, "not a notebook: its bytes are not UTF-8 text"
    except json.JSONDecodeError as err:
        return by_file_name, f"not a notebook: corrupt JSON ({err.msg} at line {err.lineno}, column {err.colno})"
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return by_file_name, "not a notebook: its JSON holds no list of cells"
    names = ", ".join(f"{a.name} ({a.week})" for a in assignments)
    name = _metadata_name(nb)
    if name is not None:
        found = next((a for a in assignments if a.name == name), None)
        return (found, "") if found else (None, f"an assignment named {name!r} in its metadata; built: {names}")
    if by_file_name is not None:
        return by_file_name, ""
    return None, f"not an assignment notebook: no assignment name in its metadata, none of {names} ending its name"


def _metadata_name(nb: dict[str, Any]) -> str | None:
    """The ``assignment_name`` otter assign wrote into a notebook's metadata, if it is there."""
    metadata = nb.get("metadata")
    otter = metadata.get("otter") if isinstance(metadata, dict) else None
    name = otter.get("assignment_name") if isinstance(otter, dict) else None
    return name if isinstance(name, str) and name else None


def _by_file_name(notebook: Path, assignments: Sequence[Assignment]) -> Assignment | None:
    """The assignment whose name ends the file's (``alice_1234_sampling_loops_1``), the longest if several."""
    stem = RESUBMITTED.sub("", notebook.stem)
    matches = [a for a in assignments if stem == a.name or stem.endswith(tuple(c + a.name for c in "_- "))]
    return max(matches, key=lambda a: len(a.name)) if matches else None


# ---- running otter ----------------------------------------------------------------------------------------


PORT_CLASH = "Address already in use"
"""What a kernel prints when another run's kernel took the port it was given: kernels started side by side race
for free ports, and nbclient would then wait for the dead kernel until the time limit."""
ATTEMPTS = 3


def _otter(args: Sequence[str], *, timeout: float, module: str = "otter") -> tuple[int | None, str]:
    """Run ``python -m MODULE ARGS`` (otter's own command line by default): (exit code or ``None`` on timeout,
    stdout and stderr together).

    It runs in its own process group, so a timeout also ends the kernel otter started. A run whose kernel could not
    bind its port (:data:`PORT_CLASH`) is ended at once and started again, up to :data:`ATTEMPTS` times.
    """
    # one OpenMP thread per run: several kernels on few cores otherwise slow each other down many times over
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for attempt in range(1, ATTEMPTS + 1):
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            deadline, clashed = time.monotonic() + timeout, False
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
                log.seek(0)
                if PORT_CLASH in log.read():
                    clashed = True
                    break
            finished = proc.poll() is not None
            if not finished:
                _kill_group(proc)
            log.seek(0)
            output = log.read()
        if finished:
            return proc.returncode, output
        if not clashed or attempt == ATTEMPTS:
            return None, output
        time.sleep(random.uniform(0.5, 2.0))  # start again, out of step with the run it clashed with
    raise AssertionError("unreachable")  # pragma: no cover


def _kill_group(proc: subprocess.Popen) -> None:
    """End ``proc`` and every process it started (the kernel)."""
    if hasattr(os, "killpg"):
        os.killpg(proc.pid, signal.SIGKILL)
    else:  # pragma: no cover - Windows
        proc.kill()
    proc.wait()


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


INIT_CELL = re.compile(r"""otter\.Notebook\(\s*(?:nb_path\s*=\s*)?["']([^"'/\\]+\.ipynb)["']""")
"""The notebook file name in otter's init cell, ``grader = otter.Notebook("sampling_loops_1.ipynb")``."""


def _init_notebook(nb: dict[str, Any]) -> str | None:
    """The file name otter's init cell opens, if the notebook has that cell."""
    for cell in nb.get("cells", []):
        source = cell.get("source", "") if isinstance(cell, dict) else ""
        found = INIT_CELL.search("".join(source) if isinstance(source, list) else str(source))
        if found:
            return found.group(1)
    return None


def grade_one(
    notebook: Path, *, name: str, assignment: Assignment, questions: dict[str, float], workdir: Path, timeout: float
) -> Grade:
    """``otter run`` one submission in ``workdir`` (replaced); its log goes to ``workdir/otter-run.log``.

    otter runs a copy, ``workdir/submission/<the name otter's init cell opens>.ipynb``: a learning platform renames
    the file (``alice_1234_sampling_loops_1.ipynb``) and the init cell, ``otter.Notebook("sampling_loops_1.ipynb")``,
    would then fail (and with it every ``grader.check`` cell). A copy told by its file name also gets the
    ``assignment_name`` otter grades by written into its metadata.
    """
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    nb = json.loads(notebook.read_bytes())
    if _metadata_name(nb) is None:
        metadata = nb["metadata"] = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
        otter = metadata["otter"] = metadata.get("otter") if isinstance(metadata.get("otter"), dict) else {}
        otter["assignment_name"] = assignment.name
    notebook = workdir / "submission" / (_init_notebook(nb) or f"{assignment.name}.ipynb")
    notebook.parent.mkdir()
    notebook.write_text(json.dumps(nb))
    args = [str(assignment.autograder.resolve()), str(workdir.resolve()), str(notebook.resolve())]
    code, output = _otter(args, timeout=timeout, module="course_utils.course.otter_run")
    (workdir / "otter-run.log").write_text(output)
    failed = Grade.zeros(name, assignment.week, assignment.name, questions)
    if code is None:
        return replace(failed, error=f"timed out after {timeout:g} s")
    results, details = workdir / "results.json", workdir / DETAILS
    scores = _read_results(results, list(questions)) if code == 0 and results.is_file() else None
    if scores is None:
        why = _error_line(output) if code != 0 else "otter graded no question"
        return replace(failed, error=f"otter run failed: {why}")
    found = json.loads(details.read_text()) if details.is_file() else {}
    return replace(
        failed, scores=scores, details=found.get("questions", {}), cell_errors=tuple(found.get("cell_errors", ()))
    )


@dataclass(frozen=True)
class Graded:
    """What :func:`grade` found: each week's questions (→ points), a grade per submission, and the submissions
    left out because ``--week`` asked for another week."""

    questions: dict[str, dict[str, float]]
    grades: list[Grade]
    skipped: list[str]


def grade(
    submissions: Sequence[Path],
    *,
    root: Path,
    assignments: dict[str, Assignment],
    week: str | None = None,
    out: Path,
    jobs: int = 1,
    timeout: float = 600,
    progress: Callable[[Grade], None] | None = None,
) -> Graded:
    """Grade ``submissions`` (paths under ``root``), each with the assignment :func:`identify` tells from it, in
    ``jobs`` parallel otter runs. ``week`` keeps only that week's submissions (and grades with it those that name
    no assignment); with one assignment built, that one grades them."""
    fallback = assignments[week] if week else next(iter(assignments.values())) if len(assignments) == 1 else None
    todo: list[tuple[Path, str, Assignment | None, str]] = []
    skipped = []
    for notebook in submissions:
        name = notebook.relative_to(root).as_posix()
        assignment, problem = identify(notebook, list(assignments.values()), fallback=fallback)
        if week and assignment is not None and assignment.week != week:
            skipped.append(name)
        else:
            todo.append((notebook, name, assignment, problem))
    questions = {a.week: read_questions(a.autograder) for _, _, a, _ in todo if a is not None}
    questions = dict(sorted(questions.items()))

    def one(item: tuple[Path, str, Assignment | None, str]) -> Grade:
        notebook, name, assignment, problem = item
        if assignment is None:
            return Grade(name, error=problem)
        points = questions[assignment.week]
        if problem:
            return Grade.zeros(name, assignment.week, assignment.name, points, problem)
        workdir = out / "runs" / Path(name).with_suffix("")
        return grade_one(notebook, name=name, assignment=assignment, questions=points, workdir=workdir, timeout=timeout)

    def reported(item: tuple[Path, str, Assignment | None, str]) -> Grade:
        g = one(item)
        if progress is not None:
            progress(g)
        return g

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        grades = list(pool.map(reported, todo))
    return Graded(questions=questions, grades=grades, skipped=skipped)


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
    run = commands.add_parser("grade", help="grade a folder of submissions (any weeks): scores and feedback")
    run.add_argument("submissions", type=Path, metavar="SUBMISSIONS", help="a folder of *.ipynb (or one notebook)")
    run.add_argument("--week", help="grade only this week's submissions, e.g. 01 (default: every week)")
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
    assignments, week = select_assignments(args.dist, week=args.week, assignments_dir=args.assignments_dir)
    root = args.submissions if args.submissions.is_dir() else args.submissions.parent
    built = ", ".join(f"{a.week} {a.name}" for a in assignments.values())
    only = f", week {week} only" if week else ""
    print(f"grading {len(submissions)} submission(s) with the assignments under {args.dist} ({built}){only} ...")
    start, done = time.perf_counter(), []

    def progress(g: Grade) -> None:
        done.append(g)
        what = g.error or f"{g.total:g} of {g.possible:g}"
        print(f"  [{len(done)}/{len(submissions)}] {g.submission} ({g.week or '?'}): {what}", flush=True)

    graded = grade(
        submissions,
        root=root,
        assignments=assignments,
        week=week,
        out=args.out,
        jobs=args.jobs,
        timeout=args.timeout,
        progress=progress,
    )
    rows = class_rows(graded.grades)
    print_table(rows)
    written = [write_csv(args.out / "scores.csv", rows)]
    for w, questions in graded.questions.items():
        written.append(write_csv(args.out / f"scores-{w}.csv", week_rows(graded.grades, week=w, questions=questions)))
    feedback = write_feedback(graded.grades, questions=graded.questions, folder=args.out / FEEDBACK)
    failed = sum(1 for g in graded.grades if g.error)
    seconds = time.perf_counter() - start
    print(f"{len(graded.grades)} graded ({failed} not gradable) in {seconds:.1f} s → {', '.join(map(str, written))}")
    if graded.skipped:
        print(f"left out, as submissions of other weeks than {week}: {', '.join(graded.skipped)}")
    print(f"feedback to hand back: {len(feedback)} files under {args.out / FEEDBACK}")
    print(f"otter logs, results.json and details.json per submission: {args.out / 'runs'}")
    return 0


@main_guard
def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``python -m course_utils.course.grade {assign,grade} …``; see the module docstring."""
    args = build_parser(prog).parse_strict(argv)
    if args.command == "assign":
        return _assign_command(args.weeks, out=args.out, assignments_dir=args.assignments_dir)
    return _grade_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
