"""``otter run`` one submission and keep what an instructor hands back, which otter's ``results.json`` merges.

    python -m course_utils.course.otter_run AUTOGRADER OUT NOTEBOOK

Writes otter's ``OUT/results.json`` and, beside it, ``OUT/details.json``::

    {"questions": {"q1": {"score": 3.0, "possible": 3.0,
                          "cases": [{"name": "test_q1_…", "hidden": false, "passed": true, "message": ""}, …]}, …},
     "cell_errors": ["NameError: name 'x' is not defined (in the cell starting `y = x + 1`)", …]}

``results.json`` keeps one text per question, hidden test cases' messages included, and nothing about the cells
that raised while the submission ran; the grader (:mod:`course_utils.course.grade`) runs this module in a process
of its own (a timeout kills its process group, the kernel with it).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["DETAILS", "cell_errors", "main", "question_details"]

DETAILS = "details.json"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
"""Terminal colour codes, which tracebacks from a kernel carry."""


def plain(text: str) -> str:
    """``text`` without terminal colour codes."""
    return ANSI.sub("", text)


def question_details(results: Any) -> dict[str, dict[str, Any]]:
    """Question → score, possible and each test case's result, from otter's ``GradingResults``."""
    details = {}
    for name, test_file in results.results.items():
        cases = [
            {
                "name": r.test_case.name,
                "hidden": bool(r.test_case.hidden),
                "passed": bool(r.passed),
                "message": plain(r.message or "").strip(),
            }
            for r in test_file.test_case_results
        ]
        details[name] = {"score": float(test_file.score), "possible": float(test_file.possible), "cases": cases}
    return details


def cell_errors(notebook: Any) -> list[str]:
    """One line per code cell of the executed ``notebook`` that raised: the error and how the cell begins."""
    found = []
    for cell in getattr(notebook, "cells", None) or []:
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                first = next((line.strip() for line in cell.get("source", "").splitlines() if line.strip()), "")
                first = first if len(first) <= 60 else first[:57] + "..."
                error = plain(f"{output.get('ename', 'Error')}: {output.get('evalue', '')}").strip()
                found.append(f"{error} (in the cell starting `{first}`)")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Grade one submission; see the module docstring."""
    from otter.run import main as otter_run  # otter is a dev dependency: import it only to grade

    autograder, out, notebook = argv if argv is not None else sys.argv[1:]
    results = otter_run(notebook, autograder=autograder, output_dir=out, no_logo=True)
    details = {"questions": question_details(results), "cell_errors": cell_errors(results.notebook)}
    (Path(out) / DETAILS).write_text(json.dumps(details, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
