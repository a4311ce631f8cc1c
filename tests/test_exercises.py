"""The week notebooks' "Your turn" exercises, their answer key, and assignments that the notebooks do not answer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from course_utils.course.exercises import (
    KINDS,
    answer_key,
    exercise_weeks,
    load_exercises,
    sync_your_turn,
    write_answer_key,
    your_turn,
)
from course_utils.course.paths import week_folders
from course_utils.errors import CourseError

ROOT = Path(__file__).resolve().parents[1]
WEEK_NOTEBOOKS = sorted((ROOT / "weeks").glob("*/*.ipynb"))
ASSIGNMENTS = sorted((ROOT / "assignments").glob("*/*.ipynb"))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _text(cell: dict) -> str:
    return "".join(cell["source"])


def test_every_week_notebook_has_exercises_and_every_exercise_file_a_week() -> None:
    weeks = week_folders(ROOT / "weeks")
    assert exercise_weeks() == sorted(weeks)
    for week, folder in weeks.items():
        assert set(load_exercises(week)) == {p.stem for p in folder.glob("*.ipynb")}, week


@pytest.mark.parametrize("notebook", WEEK_NOTEBOOKS, ids=lambda p: p.stem)
def test_the_your_turn_cell_is_written_from_the_exercises_and_ends_the_notebook(notebook: Path) -> None:
    exercises = load_exercises(notebook.parent.name[:2])[notebook.stem]
    cells = _cells(notebook)
    turns = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and _text(c).startswith("## Your turn")]
    assert len(turns) == 1, "one Your turn cell"
    assert _text(cells[turns[0]]) == your_turn(exercises), "stale: run `make setup-cells`"
    assert all(c["cell_type"] == "markdown" for c in cells[turns[0] :]), "only pointers may follow it"
    kinds = {e.kind for e in exercises}
    assert "predict" in kinds and "change" in kinds, f"a predict-then-run and a change-and-look exercise: {kinds}"


def test_no_answer_reaches_a_notebook_a_student_opens() -> None:
    students = "\n".join(_text(c) for path in WEEK_NOTEBOOKS + ASSIGNMENTS for c in _cells(path))
    for week in exercise_weeks():
        for stem, exercises in load_exercises(week).items():
            for number, exercise in enumerate(exercises, 1):
                for sentence in re.split(r"(?<=[.:;])\s+", " ".join(exercise.answer.split())):
                    if len(sentence) >= 40:
                        assert sentence not in " ".join(students.split()), f"{stem} exercise {number}: {sentence}"


def test_sync_rewrites_a_stale_cell_and_leaves_a_current_one(tmp_path: Path) -> None:
    folder = tmp_path / "weeks" / "01_sampling_loops"
    folder.mkdir(parents=True)
    source = ROOT / "weeks" / "01_sampling_loops" / "01_sampling_loops.ipynb"
    nb = json.loads(source.read_text(encoding="utf-8"))
    turn = next(c for c in nb["cells"] if _text(c).startswith("## Your turn"))
    turn["source"] = ["## Your turn\n", "\n", "1. an old exercise"]
    (folder / source.name).write_text(json.dumps(nb), encoding="utf-8")
    exercises_dir = tmp_path / "exercises"
    exercises_dir.mkdir()
    (exercises_dir / "01_sampling_loops.yml").write_text((ROOT / "exercises" / "01_sampling_loops.yml").read_text())
    assert sync_your_turn(tmp_path / "weeks", exercises_dir=exercises_dir) == [folder / source.name]
    assert sync_your_turn(tmp_path / "weeks", exercises_dir=exercises_dir) == []
    rewritten = next(c for c in _cells(folder / source.name) if _text(c).startswith("## Your turn"))
    assert _text(rewritten) == your_turn(load_exercises("01")["01_sampling_loops"])


def test_the_answer_key_holds_every_exercise_with_its_answer(tmp_path: Path) -> None:
    path = write_answer_key("03", tmp_path)
    assert path == tmp_path / "answer_keys" / "03_stable_diffusion.md"
    text = path.read_text(encoding="utf-8")
    assert text == answer_key("03") + "\n" and not list(path.parent.glob("*.part"))
    for stem, exercises in load_exercises("03").items():
        assert f"## {stem}" in text
        for exercise in exercises:
            assert " ".join(exercise.answer.split()) in " ".join(text.split())
            assert KINDS[exercise.kind] in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "nb:\n  - {kind: guess, exercise: a, answer: b}\n  - {kind: predict, exercise: a, answer: b}\n"
            "  - {kind: predict, exercise: a, answer: b}\n",
            "valid kind",
        ),
        ("nb:\n  - {kind: predict, exercise: a, answer: b}\n", "needs 3–5 exercises, found 1"),
        (
            "nb:\n  - {kind: predict, exercise: a}\n  - {kind: predict, exercise: a, answer: b}\n"
            "  - {kind: predict, exercise: a, answer: b}\n",
            "exactly the keys",
        ),
        (
            "nb:\n  - {kind: predict, exercise: a, answer: ''}\n  - {kind: predict, exercise: a, answer: b}\n"
            "  - {kind: predict, exercise: a, answer: b}\n",
            "non-empty text",
        ),
        ("nb: [unclosed\n", "not valid YAML"),
        ("- just a list\n", "expected notebook stems"),
    ],
)
def test_a_malformed_exercises_file_is_refused_in_one_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "07_topic.yml").write_text(content)
    with pytest.raises(CourseError, match=message):
        load_exercises("07", exercises_dir=tmp_path)
    with pytest.raises(CourseError, match="exactly one"):
        load_exercises("08", exercises_dir=tmp_path)
