"""What grading a class writes: the class's scores, each week's scores by question, and a feedback file per
submission that an instructor can hand back (:mod:`course_utils.course.grade` does the grading).

    <out>/scores.csv            submission, week, assignment, total, possible, percent, error
    <out>/scores-NN.csv         submission, q1, q2, …, total, possible, percent, error   (one per week graded)
    <out>/feedback/<name>.txt   the points per question, each failed test (a hidden one by name only), the cells
                                that raised

Every file is written whole or not at all (a temporary file renamed into place), so an interrupted run leaves the
last complete version.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import indent
from typing import Any

__all__ = [
    "CLASS_COLUMNS",
    "Grade",
    "class_rows",
    "feedback_text",
    "print_table",
    "week_rows",
    "write_csv",
    "write_feedback",
    "write_text",
]

CLASS_COLUMNS = ["submission", "week", "assignment", "total", "possible", "percent", "error"]
MESSAGE_LINES = 12
"""The last lines of a failed test's message that a feedback file keeps (an assertion's text ends it)."""


@dataclass(frozen=True)
class Grade:
    """One submission's scores per question (zeros when ``error`` says why it could not be graded).

    ``week`` and ``assignment`` are empty for a file no assignment could be told from; ``details`` holds each
    question's test cases as :mod:`course_utils.course.otter_run` wrote them, and ``cell_errors`` the cells that
    raised while the submission ran (it is graded all the same: the tests score what still works).
    """

    submission: str
    week: str = ""
    assignment: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    possible: float = 0.0
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    cell_errors: tuple[str, ...] = ()

    @property
    def total(self) -> float:
        """The points earned."""
        return sum(self.scores.values())

    @classmethod
    def zeros(cls, submission: str, week: str, assignment: str, questions: dict[str, float], error: str = "") -> Grade:
        """No points yet for any of ``questions`` (``error`` says why, once it is known)."""
        return cls(submission, week, assignment, dict.fromkeys(questions, 0.0), sum(questions.values()), error)

    @property
    def percent(self) -> float:
        """The points earned as a percentage of those possible (0 when nothing was possible)."""
        return 100 * self.total / self.possible if self.possible else 0.0


def _number(value: float) -> str:
    """``3.0`` → ``3``, ``2.5`` → ``2.5``: scores as people write them."""
    return f"{round(value, 4):g}"


def _tail(g: Grade) -> list[str]:
    return [_number(g.total), _number(g.possible), f"{g.percent:.1f}", g.error or _cells_note(g)]


def _cells_note(g: Grade) -> str:
    """The error column of a submission graded although cells raised: how many, and the first."""
    if not g.cell_errors:
        return ""
    more = f" (and {len(g.cell_errors) - 1} more cells)" if len(g.cell_errors) > 1 else ""
    return f"graded, but a cell raised {g.cell_errors[0]}{more}"


def class_rows(grades: Sequence[Grade]) -> list[list[str]]:
    """``scores.csv``: a header and one row per submission, every week together."""
    return [CLASS_COLUMNS, *([g.submission, g.week, g.assignment, *_tail(g)] for g in grades)]


def week_rows(grades: Sequence[Grade], *, week: str, questions: dict[str, float]) -> list[list[str]]:
    """``scores-NN.csv``: a header with the week's questions and one row per submission of that week."""
    header = ["submission", *questions, "total", "possible", "percent", "error"]
    of_week = [g for g in grades if g.week == week]
    return [header, *([g.submission, *(_number(g.scores.get(q, 0.0)) for q in questions), *_tail(g)] for g in of_week)]


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all (a temporary file beside it, renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv(path: Path, rows: Sequence[Sequence[str]]) -> Path:
    """Write ``rows`` as a CSV file, whole or not at all."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return write_text(path, buffer.getvalue())


def feedback_text(g: Grade, *, questions: dict[str, float]) -> str:
    """What a student gets back: the points per question, what each failed test said (a hidden test by its name
    only, so the hidden tests stay unknown), and the cells that raised while the notebook ran."""
    what = f"week {g.week}, {g.assignment}" if g.assignment else "no assignment"
    lines = [f"{g.submission} ({what})"]
    if g.error:
        lines += [f"Not graded: {g.error}.", f"Score: {_number(g.total)} of {_number(g.possible)} points."]
        return "\n".join(lines) + "\n"
    lines += [f"Score: {_number(g.total)} of {_number(g.possible)} points ({g.percent:.1f} %).", ""]
    width = max(map(len, questions), default=0)
    for q, possible in questions.items():
        lines.append(f"{q.ljust(width)}  {_number(g.scores.get(q, 0.0))} of {_number(possible)}")
        for case in g.details.get(q, {}).get("cases", []):
            if case["passed"]:
                continue
            if case["hidden"]:
                lines.append(f"    failed {case['name']} (a hidden test: its message is not shown)")
                continue
            lines.append(f"    failed {case['name']}:")
            message = case["message"].splitlines()[-MESSAGE_LINES:] or ["(no message)"]
            lines.append(indent("\n".join(message), " " * 8))
    if g.cell_errors:
        lines += ["", f"While the notebook ran, {len(g.cell_errors)} cell(s) raised:"]
        lines += [f"    {error}" for error in g.cell_errors]
    return "\n".join(lines) + "\n"


def write_feedback(grades: Sequence[Grade], *, questions: dict[str, dict[str, float]], folder: Path) -> list[Path]:
    """One ``<folder>/<submission>.txt`` per grade (the submission's path, ``.ipynb`` replaced)."""
    paths = []
    for g in grades:
        path = folder / Path(g.submission).with_suffix(".txt")
        paths.append(write_text(path, feedback_text(g, questions=questions.get(g.week, {}))))
    return paths


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Rows as aligned columns, the error note last and unpadded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:-1], widths[1:], strict=True)]
        print("  ".join([*cells, row[-1]]).rstrip())
