"""The week notebooks' "Your turn" exercises and the instructor's answer key, built from one source per week.

``exercises/<NN>_<slug>.yml`` holds, for each notebook of the week (by file stem), its exercises — each a
``kind``, the ``exercise`` a student reads and the ``answer`` an instructor grades by:

    01_sampling_loops:
      - kind: predict            # one of KINDS
        exercise: Set `i_start = 3` ...
        answer: ...

The notebook's "Your turn" cell is written from it (:func:`your_turn`, :func:`sync_your_turn`; ``make setup-cells``
runs it, and ``tests/test_exercises.py`` checks every notebook's cell equals it), so questions never drift from
their answers. The answers go only into ``dist/answer_keys/<NN>_<slug>.md`` (:func:`write_answer_key`, by
``make assignments``), never into a notebook a student opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from course_utils.course.paths import ROOT, WEEKS_DIR, week_folders
from course_utils.errors import CourseError

__all__ = [
    "EXERCISES_DIR",
    "KINDS",
    "Exercise",
    "answer_key",
    "exercise_weeks",
    "load_exercises",
    "sync_your_turn",
    "write_answer_key",
    "your_turn",
]

EXERCISES_DIR = ROOT / "exercises"
KINDS = {"predict": "*Predict, then run:*", "change": "*Change and look:*", "extend": "*Extension:*"}
"""Each kind of exercise and how its item begins: predict-then-run questions, a parameter to change and what to
look for, a short extension."""
HEADING = "## Your turn"
MIN_EXERCISES, MAX_EXERCISES = 3, 5


@dataclass(frozen=True)
class Exercise:
    """One exercise of a notebook's "Your turn": what the student reads, and the answer key's entry."""

    kind: str
    exercise: str
    answer: str

    def item(self, number: int) -> str:
        """The exercise as item ``number`` of a Markdown list (continuation lines indented under it)."""
        lines = f"{KINDS[self.kind]} {self.exercise.strip()}".splitlines()
        return "\n".join([f"{number}. {lines[0]}", *(f"   {line}" if line else "" for line in lines[1:])])


def exercise_weeks(exercises_dir: Path = EXERCISES_DIR) -> list[str]:
    """The week ids ``NN`` that have an exercises file, sorted."""
    return sorted({path.name[:2] for path in exercises_dir.glob("[0-9][0-9]_*.yml")})


def load_exercises(week: str, *, exercises_dir: Path = EXERCISES_DIR) -> dict[str, list[Exercise]]:
    """Notebook stem → its exercises, from ``<exercises_dir>/<week>_*.yml``, checked: every notebook holds
    ``MIN_EXERCISES``–``MAX_EXERCISES`` exercises, each with a known kind, a text and an answer."""
    import yaml

    matches = sorted(exercises_dir.glob(f"{week}_*.yml"))
    if len(matches) != 1:
        raise CourseError(f"week {week} needs exactly one {exercises_dir}/{week}_<slug>.yml, found {len(matches)}")
    path = matches[0]
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise CourseError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from err
    if not isinstance(raw, dict) or not raw:
        raise CourseError(f"{path}: expected notebook stems mapping to lists of exercises")
    found: dict[str, list[Exercise]] = {}
    for stem, items in raw.items():
        if not isinstance(items, list) or not MIN_EXERCISES <= len(items) <= MAX_EXERCISES:
            count = len(items) if isinstance(items, list) else 0
            raise CourseError(f"{path}: {stem} needs {MIN_EXERCISES}–{MAX_EXERCISES} exercises, found {count}")
        exercises = []
        for number, item in enumerate(items, 1):
            where = f"{path}: {stem} exercise {number}"
            if not isinstance(item, dict) or set(item) != {"kind", "exercise", "answer"}:
                keys = sorted(item) if isinstance(item, dict) else item
                raise CourseError(f"{where} needs exactly the keys answer, exercise, kind; got {keys}")
            if item["kind"] not in KINDS:
                raise CourseError(f"{where}: unknown kind {item['kind']!r}; valid kinds: {', '.join(KINDS)}")
            if not all(isinstance(item[k], str) and item[k].strip() for k in ("exercise", "answer")):
                raise CourseError(f"{where}: the exercise and its answer must be non-empty text")
            exercises.append(Exercise(item["kind"], item["exercise"], item["answer"]))
        found[str(stem)] = exercises
    return found


def your_turn(exercises: list[Exercise]) -> str:
    """The "Your turn" Markdown cell of a notebook: the heading and the numbered exercises, no answers."""
    items = "\n".join(exercise.item(number) for number, exercise in enumerate(exercises, 1))
    return f"{HEADING}\n\n{items}"


def answer_key(week: str, *, exercises_dir: Path = EXERCISES_DIR) -> str:
    """The instructor's answer key of a week (Markdown): every exercise of every notebook, with its answer."""
    sections = [f"# Week {week}: answer key to the notebooks' exercises", ""]
    for stem, exercises in load_exercises(week, exercises_dir=exercises_dir).items():
        sections += [f"## {stem}", ""]
        for number, exercise in enumerate(exercises, 1):
            sections += [exercise.item(number), "", f"   **Answer.** {_indented(exercise.answer)}", ""]
    return "\n".join(sections)


def _indented(text: str) -> str:
    lines = text.strip().splitlines()
    return "\n".join([lines[0], *(f"   {line}" if line else "" for line in lines[1:])])


def write_answer_key(week: str, out: Path, *, exercises_dir: Path = EXERCISES_DIR) -> Path:
    """Write :func:`answer_key` to ``<out>/answer_keys/<NN>_<slug>.md`` (whole, or not at all) and return its path."""
    [source] = sorted(exercises_dir.glob(f"{week}_*.yml")) or [None]
    if source is None:
        raise CourseError(f"no exercises for week {week} under {exercises_dir}")
    path = out / "answer_keys" / f"{source.stem}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".md.part")
    partial.write_text(answer_key(week, exercises_dir=exercises_dir) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def sync_your_turn(weeks_dir: Path = WEEKS_DIR, *, exercises_dir: Path = EXERCISES_DIR) -> list[Path]:
    """Rewrite the "Your turn" cell of every week notebook from its exercises; returns the notebooks changed.
    A notebook without exercises, or without a cell starting with ``## Your turn``, is an error."""
    import nbformat

    changed = []
    for week, folder in week_folders(weeks_dir).items():
        exercises = load_exercises(week, exercises_dir=exercises_dir)
        notebooks = {p.stem: p for p in sorted(folder.glob("*.ipynb"))}
        for stem in notebooks.keys() - exercises.keys():
            raise CourseError(f"{notebooks[stem]} has no exercises in {exercises_dir}/{week}_*.yml")
        for stem, items in exercises.items():
            path = notebooks.get(stem)
            if path is None:
                raise CourseError(f"{exercises_dir}/{week}_*.yml names {stem}, which is not a notebook in {folder}")
            nb = nbformat.read(path, as_version=4)
            cells = [c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith(HEADING)]
            if len(cells) != 1:
                raise CourseError(f"{path}: expected one Markdown cell starting {HEADING!r}, found {len(cells)}")
            text = your_turn(items)
            if cells[0].source != text:
                cells[0].source = text
                nbformat.write(nb, path)
                changed.append(path)
    return changed


if __name__ == "__main__":  # make setup-cells
    for notebook in sync_your_turn():
        print(f"rewrote the Your turn cell of {notebook}")
