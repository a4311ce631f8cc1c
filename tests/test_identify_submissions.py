"""Telling a submission's assignment from the notebook itself (``course_utils.course.grade.identify``): otter's
metadata first, then the file name a learning platform or a browser gave it, then the week asked for."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from course_utils.course.grade import Assignment, identify

ASSIGNMENTS = [
    Assignment(week="01", name="sampling_loops_1", autograder=Path("a1.zip")),
    Assignment(week="02", name="sampling_loops_2", autograder=Path("a2.zip")),
    Assignment(week="06", name="data", autograder=Path("a6.zip")),
    Assignment(week="07", name="synthetic_data", autograder=Path("a7.zip")),
]


def _notebook(assignment_name: str | None = None) -> bytes:
    metadata = {"otter": {"assignment_name": assignment_name}} if assignment_name else {"kernelspec": {}}
    return json.dumps({"cells": [], "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}).encode()


# file name, its bytes, the fallback week → the week told (or None) and the start of the reason (or "")
CASES = {
    "a platform's download": ("alice_1234_sampling_loops_1.ipynb", _notebook(), None, ("01", "")),
    "a resubmission's -2": ("bob_9_sampling_loops_2-2.ipynb", _notebook(), None, ("02", "")),
    "a browser's (1)": ("sampling_loops_1 (1).ipynb", _notebook(), None, ("01", "")),
    "the bare name": ("sampling_loops_2.ipynb", _notebook(), None, ("02", "")),
    "the longest name wins": ("carol_synthetic_data.ipynb", _notebook(), None, ("07", "")),
    "a shorter one still matches": ("carol_data.ipynb", _notebook(), None, ("06", "")),
    "metadata beats the name": ("dave_sampling_loops_2.ipynb", _notebook("sampling_loops_1"), None, ("01", "")),
    "a name inside, not at the end": ("sampling_loops_10.ipynb", _notebook(), None, (None, "not an assignment")),
    "nothing to go by, a fallback": ("notes.ipynb", _notebook(), "02", ("02", "")),
    "nothing to go by": ("notes.ipynb", _notebook(), None, (None, "not an assignment notebook")),
    "metadata naming no built one": ("x.ipynb", _notebook("unet_from_scratch"), None, (None, "an assignment named")),
    "corrupt JSON, named": ("eve_sampling_loops_1.ipynb", b'{"cells": [', None, ("01", "not a notebook: corrupt")),
    "corrupt JSON, unnamed": ("eve.ipynb", b"{", None, (None, "not a notebook: corrupt JSON")),
    "not UTF-8": ("frank_sampling_loops_2.ipynb", b"\x89PNG\r\n\x1a\n", None, ("02", "not a notebook: its bytes")),
    "JSON but no cells": ("grace_sampling_loops_1.ipynb", b"[1, 2]", None, ("01", "not a notebook: its JSON")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_identify(case: str, tmp_path: Path) -> None:
    name, data, fallback_week, (week, reason) = CASES[case]
    (tmp_path / name).write_bytes(data)
    fallback = next((a for a in ASSIGNMENTS if a.week == fallback_week), None)
    assignment, problem = identify(tmp_path / name, ASSIGNMENTS, fallback=fallback)
    assert (assignment.week if assignment else None) == week
    assert problem.startswith(reason) and bool(problem) == bool(reason), problem


def test_the_reason_names_the_assignments_it_knows(tmp_path: Path) -> None:
    (tmp_path / "notes.ipynb").write_bytes(_notebook())
    _, problem = identify(tmp_path / "notes.ipynb", ASSIGNMENTS)
    assert "sampling_loops_1 (01), sampling_loops_2 (02), data (06), synthetic_data (07)" in problem


def test_a_kernel_that_cannot_bind_its_port_is_started_again_not_waited_for(tmp_path, monkeypatch):
    from course_utils.course import grade

    # the first run prints what a kernel prints when another took its port, then hangs (as nbclient would wait)
    (tmp_path / "clashing.py").write_text(
        "import pathlib, sys, time\n"
        f"marker = pathlib.Path({str(tmp_path / 'tried')!r})\n"
        "if not marker.exists():\n"
        "    marker.touch()\n"
        f"    print({grade.PORT_CLASH!r}, flush=True)\n"
        "    time.sleep(600)\n"
        "print('graded', sys.argv[1:])\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    start = time.monotonic()
    code, output = grade._otter(["x"], timeout=60, module="clashing")
    assert (code, output.strip()) == (0, "graded ['x']") and time.monotonic() - start < 30
