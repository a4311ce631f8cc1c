"""Tests for ``python -m course_utils.grade``: otter assign week 1's assignment, then grade notebooks with it.

otter runs cost kernel start-ups, so one ``assign`` and one ``grade`` of several submissions (run in
parallel) are module-scoped fixtures shared by most tests.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

pytestmark = pytest.mark.slow  # starts kernels

ROOT = Path(__file__).resolve().parents[1]
WEEK = "01_sampling_loops"
NOTEBOOK = "sampling_loops_1.ipynb"
QUESTIONS = {"q1": 3, "q2": 3, "q3": 4}
HEADER = ["submission", *QUESTIONS, "total", "possible", "percent", "error"]


def grade_cli(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "course_utils.grade", *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def answer_cell(nb: nbformat.NotebookNode, signature: str) -> nbformat.NotebookNode:
    """The code cell defining ``signature`` (e.g. ``def q_sample(``)."""
    return next(c for c in nb.cells if c.cell_type == "code" and signature in c.source)


@pytest.fixture(scope="module")
def assigned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("dist")
    proc = grade_cli("assign", "--weeks", "1", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"dist": out, "week": out / WEEK, "stdout": proc.stdout}


@pytest.fixture(scope="module")
def graded(assigned: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Grade: the solution, the untouched student notebook, one with only q1 answered, a non-notebook."""
    solution = assigned["week"] / "autograder" / NOTEBOOK
    student = assigned["week"] / "student" / NOTEBOOK
    subs = tmp_path_factory.mktemp("submissions")
    shutil.copy(solution, subs / "solution.ipynb")
    (subs / "bob").mkdir()
    shutil.copy(student, subs / "bob" / "untouched.ipynb")
    partial = nbformat.read(student, as_version=4)
    answer_cell(partial, "def q_sample(").source = answer_cell(nbformat.read(solution, 4), "def q_sample(").source
    nbformat.write(partial, subs / "q1_only.ipynb")
    (subs / "broken.ipynb").write_text("not a notebook")
    (subs / ".ipynb_checkpoints").mkdir()
    shutil.copy(solution, subs / ".ipynb_checkpoints" / "solution-checkpoint.ipynb")

    out = tmp_path_factory.mktemp("grades")
    proc = grade_cli("grade", subs, "--dist", assigned["dist"], "--out", out, "--jobs", "4")  # no --week: the only one
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (out / "scores.csv").open(newline="") as f:
        header, *rows = list(csv.reader(f))
    return {
        "header": header,
        "rows": {row[0]: dict(zip(header, row, strict=True)) for row in rows},
        "out": out,
        "stdout": proc.stdout,
    }


# ---- assign ----------------------------------------------------------------------------------------------


def test_assign_writes_student_notebook_and_autograder_zip(assigned: dict[str, Any]) -> None:
    week = assigned["week"]
    assert (week / "student" / NOTEBOOK).is_file()
    assert (week / "autograder" / NOTEBOOK).is_file()
    assert (week / "autograder" / "autograder.zip").is_file()
    assert not list((week / "autograder").glob("*-autograder_*.zip")), "the timestamped zip should be renamed"
    assert str(week / "student" / NOTEBOOK) in assigned["stdout"]
    assert str(week / "autograder" / "autograder.zip") in assigned["stdout"]


def test_student_notebook_has_placeholders_and_only_public_tests(assigned: dict[str, Any]) -> None:
    text = (assigned["week"] / "student" / NOTEBOOK).read_text()
    nb = nbformat.reads(text, as_version=4)
    for signature, question in [("def q_sample(", "q1"), ("def one_step_denoise(", "q2"), ("def ddim_step(", "q3")]:
        source = answer_cell(nb, signature).source
        assert f'raise NotImplementedError("{question}' in source
        assert "SOLUTION" not in source and "return" not in source, source
        assert any(c.source.strip() == f'grader.check("{question}")' for c in nb.cells)
    assert "test_q1_matches_package" in text  # public tests travel with the student notebook
    for hidden in ["test_q1_per_sample_t", "test_q2_per_sample_t", "test_q3_sampling_loop"]:
        assert hidden not in text


def test_autograder_zip_holds_every_test_hidden_ones_included(assigned: dict[str, Any]) -> None:
    with zipfile.ZipFile(assigned["week"] / "autograder" / "autograder.zip") as zf:
        assert {f"tests/{q}.py" for q in QUESTIONS} <= set(zf.namelist())
        q3 = zf.read("tests/q3.py").decode()
    assert "def test_q3_sampling_loop" in q3 and "hidden=True" in q3
    assert "points = 4" in q3


def test_assign_refuses_a_solution_that_fails_its_tests(tmp_path: Path) -> None:
    """run_tests: the solution notebook is graded at assign time; a wrong solution stops the build."""
    source = tmp_path / "assignments" / WEEK / NOTEBOOK
    source.parent.mkdir(parents=True)
    nb = nbformat.read(ROOT / "assignments" / WEEK / NOTEBOOK, as_version=4)
    cell = answer_cell(nb, "def q_sample(")
    cell.source = cell.source.replace(" + (1 - alpha_bar).sqrt() * eps", "")
    assert "* eps" not in cell.source.split("END SOLUTION")[0]
    nbformat.write(nb, source)
    proc = grade_cli("assign", "--assignments-dir", tmp_path / "assignments", "--out", tmp_path / "dist")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "otter assign failed for week 01" in proc.stderr, proc.stderr
    assert (tmp_path / "dist" / WEEK / "otter-assign.log").is_file()


# ---- grade -----------------------------------------------------------------------------------------------


def test_scores_csv_has_one_row_per_submission_and_question_columns(graded: dict[str, Any]) -> None:
    assert graded["header"] == HEADER
    assert set(graded["rows"]) == {"solution.ipynb", "bob/untouched.ipynb", "q1_only.ipynb", "broken.ipynb"}


def test_solution_gets_full_marks(graded: dict[str, Any]) -> None:
    row = graded["rows"]["solution.ipynb"]
    assert {q: float(row[q]) for q in QUESTIONS} == QUESTIONS
    assert (float(row["total"]), float(row["possible"]), float(row["percent"])) == (10, 10, 100)
    assert row["error"] == ""


def test_untouched_student_notebook_scores_less_than_full_marks(graded: dict[str, Any]) -> None:
    row = graded["rows"]["bob/untouched.ipynb"]
    assert float(row["total"]) < float(row["possible"]) == 10
    assert [float(row[q]) for q in QUESTIONS] == [0, 0, 0]
    assert row["error"] == "", "the untouched notebook must still execute"


def test_each_question_is_scored_in_its_own_column(graded: dict[str, Any]) -> None:
    row = graded["rows"]["q1_only.ipynb"]
    assert [float(row[q]) for q in QUESTIONS] == [3, 0, 0]
    assert (float(row["total"]), float(row["percent"])) == (3, 30)


def test_a_submission_otter_cannot_run_gets_zeros_and_an_error(graded: dict[str, Any]) -> None:
    row = graded["rows"]["broken.ipynb"]
    assert [float(row[k]) for k in [*QUESTIONS, "total", "percent"]] == [0] * 5
    assert row["possible"] == "10"
    assert row["error"].startswith("otter run failed") and "JSON" in row["error"]


def test_grade_prints_a_table_and_keeps_otter_results(graded: dict[str, Any]) -> None:
    lines = graded["stdout"].splitlines()
    assert any(line.split() == HEADER for line in lines), graded["stdout"]
    assert any(line.split()[:5] == ["solution.ipynb", "3", "3", "4", "10"] for line in lines), graded["stdout"]
    assert str(graded["out"] / "scores.csv") in graded["stdout"]
    assert (graded["out"] / "runs" / "bob" / "untouched" / "results.json").is_file()


def test_a_submission_over_the_time_limit_gets_an_error_row(assigned: dict[str, Any], tmp_path: Path) -> None:
    nb = nbformat.read(assigned["week"] / "student" / NOTEBOOK, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_code_cell("import time\ntime.sleep(300)"))
    nbformat.write(nb, tmp_path / "slow.ipynb")
    proc = grade_cli(
        "grade",
        tmp_path / "slow.ipynb",
        "--dist",
        assigned["dist"],
        "--week",
        "01",
        "--out",
        tmp_path / "out",
        "--timeout",
        "3",
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "out" / "scores.csv").open(newline="") as f:
        (row,) = csv.DictReader(f)
    assert row["submission"] == "slow.ipynb" and row["total"] == "0"
    assert row["error"] == "timed out after 3 s"


# ---- mistakes in the input: one line on stderr, exit code 2 -------------------------------------------


def _with_notebook(tmp_path: Path) -> Path:
    (tmp_path / "subs").mkdir(exist_ok=True)
    (tmp_path / "subs" / "a.ipynb").write_text("{}")
    return tmp_path / "subs"


BAD_INPUTS: dict[str, tuple[Callable[[Path, Path], list[str | Path]], str]] = {
    "unknown week to assign": (lambda tmp, dist: ["assign", "--weeks", "99"], "unknown week '99'; valid weeks: 01"),
    "no subcommand": (lambda tmp, dist: [], "required"),
    "submissions missing": (lambda tmp, dist: ["grade", tmp / "nope", "--dist", dist], "no submissions folder"),
    "no notebooks": (lambda tmp, dist: ["grade", tmp, "--dist", dist], "no notebooks"),
    "autograder missing": (
        lambda tmp, dist: ["grade", _with_notebook(tmp), "--dist", tmp / "empty"],
        "run `make assignments` first",
    ),
    "autograder missing for the week": (
        lambda tmp, dist: ["grade", _with_notebook(tmp), "--dist", tmp / "empty", "--week", "01"],
        "run `make assignments` first",
    ),
    "unknown week to grade": (
        lambda tmp, dist: ["grade", _with_notebook(tmp), "--dist", dist, "--week", "99"],
        "unknown week '99'; valid weeks: 01",
    ),
    "bad --jobs": (lambda tmp, dist: ["grade", _with_notebook(tmp), "--jobs", "0"], "positive integer"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_mistakes_are_one_line_and_exit_2(case: str, assigned: dict[str, Any], tmp_path: Path) -> None:
    make_args, expected = BAD_INPUTS[case]
    proc = grade_cli(*make_args(tmp_path, assigned["dist"]), timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert expected in proc.stderr
    assert proc.stdout == ""
