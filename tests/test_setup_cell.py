"""Every notebook (weeks and assignments) starts with the one setup cell of ``course_utils.course.colab``, written for
its folder, right after its title; ``make setup-cells`` (``sync_setup_cells``) writes them and touches nothing else."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.course import colab

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for pattern in colab.NOTEBOOK_GLOBS for p in ROOT.glob(pattern))


def test_there_are_notebooks_of_both_kinds():
    folders = {p.relative_to(ROOT).parts[0] for p in NOTEBOOKS}
    assert folders == {"weeks", "assignments"} and len(NOTEBOOKS) >= 7, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_notebook_carries_the_templates_cell_for_its_folder_after_its_title(path: Path):
    cells = nbformat.read(path, as_version=4).cells
    setups = [i for i, cell in enumerate(cells) if colab.is_setup_cell(cell)]
    assert len(setups) == 1, f"{len(setups)} setup cells; run `make setup-cells`"
    title = next(i for i, cell in enumerate(cells) if cell.cell_type == "markdown")
    assert setups == [title + 1], "the setup cell follows the title"
    assert not any(cell.cell_type == "code" for cell in cells[:title]), "no code runs before the setup cell"
    cell = cells[setups[0]]
    assert cell.source == colab.setup_cell(path.parent.relative_to(ROOT).as_posix()), "run `make setup-cells`"
    assert cell.outputs == []


def _copy_notebooks(root: Path) -> list[Path]:
    copies = []
    for path in NOTEBOOKS:
        copy = root / path.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copies.append(Path(shutil.copy(path, copy)))
    return copies


def _without_ids(path: Path) -> list[dict]:
    return [{k: v for k, v in cell.items() if k != "id"} for cell in nbformat.read(path, as_version=4).cells]


def test_sync_rewrites_only_setup_cells_and_leaves_the_rest_byte_for_byte(tmp_path: Path):
    copies = _copy_notebooks(tmp_path)
    assert colab.sync_setup_cells(tmp_path) == []  # the committed notebooks are in sync
    originals = {p: p.read_bytes() for p in copies}
    week, assignment, third = copies[-1], copies[0], copies[1]

    nb = nbformat.read(week, as_version=4)  # an older setup cell, run once on Colab, so with an output
    cell = next(c for c in nb.cells if colab.is_setup_cell(c))
    cell.source = "# Setup: on Colab, fetch the course and install it\n%pip install -q -e /content/diffusion-course"
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="Successfully installed\n")]
    nbformat.write(nb, week)
    nb = nbformat.read(assignment, as_version=4)  # no setup cell at all
    nb.cells = [c for c in nb.cells if not colab.is_setup_cell(c)]
    nbformat.write(nb, assignment)
    nb = nbformat.read(third, as_version=4)  # the setup cell moved below the first code cell
    i = next(i for i, c in enumerate(nb.cells) if colab.is_setup_cell(c))
    nb.cells.insert(i + 1, nb.cells.pop(i))
    nbformat.write(nb, third)

    assert colab.sync_setup_cells(tmp_path) == sorted([week, assignment, third])
    for path in copies:
        if path == assignment:  # the inserted cell has a new id, and nothing else differs
            assert _without_ids(path) == _without_ids(ROOT / path.relative_to(tmp_path))
        else:
            assert path.read_bytes() == originals[path], path
    assert colab.sync_setup_cells(tmp_path) == []


def test_sync_refuses_two_setup_cells(tmp_path: Path):
    [path, *_] = _copy_notebooks(tmp_path)
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("# Setup, once more"))
    nbformat.write(nb, path)
    with pytest.raises(ValueError, match="2 setup cells"):
        colab.sync_setup_cells(tmp_path)


def test_locally_the_cell_does_nothing_and_prints_nothing(monkeypatch, capsys):
    assert "google.colab" not in sys.modules
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail(f"the cell ran {a}"))
    path, cwd = list(sys.path), Path.cwd()
    exec(compile(colab.setup_cell("weeks/01_sampling_loops"), "<setup cell>", "exec"), {})
    assert capsys.readouterr() == ("", "") and sys.path == path and Path.cwd() == cwd


def test_on_colab_the_cell_clones_once_imports_the_clone_and_prepares_its_folder(monkeypatch, tmp_path):
    course = tmp_path / "content" / "diffusion-course"
    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    monkeypatch.setenv("COURSE_ROOT", str(course))
    monkeypatch.setattr(sys, "path", list(sys.path))
    clones, prepared = [], []

    def clone(command, check):
        assert check is True
        clones.append(command)
        Path(command[-1]).mkdir(parents=True)

    monkeypatch.setattr(subprocess, "run", clone)
    monkeypatch.setattr(colab, "prepare", lambda root, folder: prepared.append((root, folder)))
    cell = compile(colab.setup_cell("assignments/01_sampling_loops"), "<setup cell>", "exec")
    exec(cell, {})
    exec(cell, {})  # run again: the clone is there
    assert clones == [["git", "clone", "-q", "--depth", "1", colab.REPOSITORY, str(course)]]
    assert prepared == [(str(course), "assignments/01_sampling_loops")] * 2
    assert sys.path.count(str(course)) == 1 and sys.path[0] == str(course)


def test_the_template_refuses_a_folder_that_is_not_relative():
    for folder in ("/content/x", 'weeks/"x', "weeks\\x"):
        with pytest.raises(ValueError):
            colab.setup_cell(folder)


def test_the_sync_command_answers_help_without_writing(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    calls = []
    monkeypatch.setattr(colab, "sync_setup_cells", lambda: calls.append(1) or [])
    with pytest.raises(SystemExit) as stop:
        colab.main(["--help"])
    assert stop.value.code == 0 and not calls
    assert "setup cell" in capsys.readouterr().out
    colab.main([])
    assert calls == [1]
