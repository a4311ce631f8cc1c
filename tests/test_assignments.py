"""Tests for ``diffusion-course assign`` / ``grade`` (``course_utils.course.grade``): otter assign the weeks'
assignments, then grade notebooks with them.

otter runs cost kernel start-ups, so one ``assign`` of every week and one ``grade`` per week (several
submissions each, the weeks' runs at the same time) are module-scoped fixtures shared by most tests.
Week 1 is tested in depth (partial answers, broken and slow submissions, refused solutions); the other weeks
share the checks every assignment must pass (student notebook, autograder zip, full and less than full marks).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

from course_utils.course.colab import setup_cell

pytestmark = pytest.mark.slow  # starts kernels

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Week:
    """What the tests know of one week's assignment source."""

    folder: str
    notebook: str
    questions: dict[str, int]  # question → points
    answers: dict[str, str]  # question → the signature in its answer cell
    public: tuple[str, ...]  # test functions the student notebook carries
    hidden: tuple[str, ...]  # test functions only the autograder has

    @property
    def possible(self) -> int:
        return sum(self.questions.values())

    @property
    def header(self) -> list[str]:
        return ["submission", *self.questions, "total", "possible", "percent", "error"]


WEEKS = {
    "01": Week(
        folder="01_sampling_loops",
        notebook="sampling_loops_1.ipynb",
        questions={"q1": 3, "q2": 4, "q3": 2, "q4": 1},
        answers={"q1": "def v_to_eps_x0(", "q2": "def ddim_step(", "q3": "def ddim_loop(", "q4": "def psnr("},
        public=(
            "test_q1_recovers_the_noise_and_the_image",
            "test_q1_matches_diffusers_v_prediction",
            "test_q2_matches_package",
            "test_q3_the_digits_model_draws_the_digits_asked_for",
            "test_q4_matches_package",
        ),
        hidden=(
            "test_q1_per_image_t_and_the_velocity_round_trip",
            "test_q2_last_step_returns_x0_hat",
            "test_q2_sampling_loop",
            "test_q3_matches_the_package_sampler",
            "test_q4_one_reference_identical_images_and_half_precision",
        ),
    ),
    "02": Week(
        folder="02_sampling_loops_2",
        notebook="sampling_loops_2.ipynb",
        questions={"q1": 2, "q2": 3, "q3": 4, "q4": 3, "q5": 3},
        answers={
            "q1": "def rescale_cfg(",
            "q2": "def sdedit_start(",
            "q3": "def keep_known(",
            "q4": "def multi_view_eps(",
            "q5": "def inpaint_loop(",
        },
        public=(
            "test_q1_matches_diffusers",
            "test_q2_matches_package",
            "test_q3_matches_package",
            "test_q4_two_views_match_the_package",
            "test_q5_a_three_completed_keeps_its_top_and_reads_as_three",
        ),
        hidden=(
            "test_q1_per_image_spread",
            "test_q2_rejects_i_start_out_of_range",
            "test_q2_sdedit_loop",
            "test_q3_clean_end_and_per_image_masks",
            "test_q3_repaint_loop",
            "test_q4_three_views_and_a_consistent_estimate",
            "test_q5_draw_by_draw_the_packages_inpainting",
        ),
    ),
    "03": Week(
        folder="03_stable_diffusion",
        notebook="stable_diffusion.ipynb",
        questions={"q1": 3, "q2": 3, "q3": 2, "q4": 2},
        answers={
            "q1": "def encode_prompt_by_hand(",
            "q2": "def swap_scheduler(",
            "q3": "def img2img_start(",
            "q4": "def sample_with_embeddings(",
        },
        public=(
            "test_q1_matches_the_pipeline",
            "test_q2_matches_package",
            "test_q3_matches_the_image_to_image_pipeline",
            "test_q4_the_trained_model_draws_what_the_captions_name",
        ),
        hidden=(
            "test_q1_a_batch_the_empty_prompt_and_truncation",
            "test_q2_every_valid_scheduler",
            "test_q2_rejects_what_the_family_cannot_use",
            "test_q3_the_edges_of_strength",
            "test_q4_your_embeddings_give_the_pipelines_own_pictures",
        ),
    ),
    "04": Week(
        folder="04_unet_from_scratch",
        notebook="unet_from_scratch.ipynb",
        questions={"q1": 2, "q2": 3, "q3": 3, "q4": 2},
        answers={
            "q1": "def sinusoidal_embedding(",
            "q2": "class TimeResBlock(",
            "q3": "def eps_loss(",
            "q4": "def train(",
        },
        public=(
            "test_q1_matches_package",
            "test_q2_matches_package",
            "test_q3_matches_package",
            "test_q4_learns_the_digits",
        ),
        hidden=(
            "test_q1_matches_diffusers_at_any_t",
            "test_q1_stays_on_the_device_of_t",
            "test_q2_matches_diffusers_when_the_channels_change",
            "test_q2_the_embedding_shifts_each_channel_and_no_shortcut_is_needed",
            "test_q3_the_model_sees_x_t_and_t",
            "test_q3_draws_only_from_its_generator_and_gradients_flow",
            "test_q4_is_reproducible_and_draws_its_batches_from_the_generator",
        ),
    ),
    "05": Week(
        folder="05_finetuning",
        notebook="finetuning.ipynb",
        questions={"q1": 3, "q2": 3, "q3": 2, "q4": 2, "q5": 3},
        answers={
            "q1": "def caption_rows(",
            "q2": "def add_lora(",
            "q3": "def dreambooth_loss(",
            "q4": "def merge_lora(",
            "q5": "def train_lora(",
        },
        public=(
            "test_q1_clean_annotations",
            "test_q2_counts_what_it_trains",
            "test_q3_two_halves",
            "test_q4_one_layer",
            "test_q5_the_adapter_learns_the_held_out_hearts",
        ),
        hidden=(
            "test_q1_planted_bad_annotations_match_the_package",
            "test_q1_rows_load_as_an_imagefolder",
            "test_q2_other_ranks_and_targets_freeze_everything_else",
            "test_q2_starts_exactly_at_the_base_network_and_the_adapter_is_live",
            "test_q3_random_tensors_against_the_formula",
            "test_q3_an_odd_batch_is_refused",
            "test_q4_agrees_with_peft_and_leaves_the_layer_alone",
            "test_q4_the_merged_unet_computes_what_the_adapted_one_does",
            "test_q5_the_objective_and_the_draws_as_specified",
            "test_q5_trains_what_requires_gradients_and_nothing_else",
        ),
    ),
    "06": Week(
        folder="06_synthetic_data",
        notebook="synthetic_data.ipynb",
        questions={"q1": 3, "q2": 3, "q3": 2, "q4": 2},
        answers={
            "q1": "def validate(",
            "q2": "def pending(",
            "q3": "def layout(",
            "q4": "def image_seed(",
        },
        public=(
            "test_q1_keeps_the_first_n_valid",
            "test_q2_one_missing_image",
            "test_q3_two_blocks_top_left",
            "test_q4_matches_package",
        ),
        hidden=(
            "test_q1_planted_lists_match_the_package",
            "test_q1_seeded_proposals_match_the_package",
            "test_q2_a_killed_folder_matches_the_package",
            "test_q2_resuming_with_your_functions_ends_where_the_uninterrupted_run_does",
            "test_q3_sizes_and_seeds_match_the_package",
            "test_q3_every_block_one_prompt_tile_and_the_packages_grid",
            "test_q4_many_ids_and_seeds_match_the_package",
            "test_q4_shards_split_300_ids_as_a_sharded_run_plans",
        ),
    ),
}
VALID_WEEKS = ", ".join(WEEKS)
# week 1, which the in-depth tests use
WEEK = WEEKS["01"].folder
NOTEBOOK = WEEKS["01"].notebook
QUESTIONS = WEEKS["01"].questions
HEADER = WEEKS["01"].header


# One thread per kernel: the tensors are tiny, and otter runs several kernels on few cores, where torch's
# default thread pool spins (a 8×8 blur takes 70 ms instead of 0.1 ms on a busy 2-core machine).
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "course_utils.course.grade", *map(str, args)]


def grade_cli(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cli(*args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def grade_clis(runs: dict[str, list[str | Path]], timeout: float = 600) -> dict[str, tuple[int, str]]:
    """Several CLI runs at the same time: name → (exit code, stdout + stderr)."""
    procs = {
        name: subprocess.Popen(
            _cli(*args), cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for name, args in runs.items()
    }
    results = {}
    try:
        for name, proc in procs.items():
            output, _ = proc.communicate(timeout=timeout)
            results[name] = (proc.returncode, output)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def read_scores(path: Path) -> dict[str, Any]:
    with path.open(newline="") as f:
        header, *rows = list(csv.reader(f))
    return {"header": header, "rows": {row[0]: dict(zip(header, row, strict=True)) for row in rows}}


def answer_cell(nb: nbformat.NotebookNode, signature: str) -> nbformat.NotebookNode:
    """The code cell defining ``signature`` (e.g. ``def ddim_step(``)."""
    return next(c for c in nb.cells if c.cell_type == "code" and signature in c.source)


@pytest.fixture(scope="module")
def assigned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every week built into one dist folder, by one ``assign`` run per week at the same time."""
    out = tmp_path_factory.mktemp("dist")
    results = grade_clis({w: ["assign", "--weeks", w, "--out", out] for w in WEEKS})
    for code, output in results.values():
        assert code == 0, output
    weeks = {w: out / spec.folder for w, spec in WEEKS.items()}
    stdout = "".join(output for _, output in results.values())
    return {"dist": out, "week": weeks["01"], "weeks": weeks, "stdout": stdout}


def _week1_submissions(assigned: dict[str, Any], subs: Path) -> None:
    """The solution, the untouched student notebook, one with only q1 answered, a non-notebook."""
    solution = assigned["week"] / "autograder" / NOTEBOOK
    student = assigned["week"] / "student" / NOTEBOOK
    shutil.copy(solution, subs / "solution.ipynb")
    (subs / "bob").mkdir()
    shutil.copy(student, subs / "bob" / "untouched.ipynb")
    partial = nbformat.read(student, as_version=4)
    signature = WEEKS["01"].answers["q1"]
    answer_cell(partial, signature).source = answer_cell(nbformat.read(solution, 4), signature).source
    nbformat.write(partial, subs / "q1_only.ipynb")
    (subs / "broken.ipynb").write_text("not a notebook")
    (subs / ".ipynb_checkpoints").mkdir()
    shutil.copy(solution, subs / ".ipynb_checkpoints" / "solution-checkpoint.ipynb")


def _class_submissions(assigned: dict[str, Any], folder: Path) -> None:
    """A class's folder as a learning platform hands it over: weeks mixed, names prefixed, one of each failure."""
    w1, w2 = assigned["weeks"]["01"], assigned["weeks"]["02"]
    solution = nbformat.read(w1 / "autograder" / NOTEBOOK, as_version=4)
    del solution.metadata["otter"]  # as in a notebook copied cell by cell: only the file name tells the assignment
    nbformat.write(solution, folder / "alice_1234_sampling_loops_1.ipynb")
    shutil.copy(w2 / "student" / WEEKS["02"].notebook, folder / "bob_5678_sampling_loops_2-1.ipynb")
    carol = nbformat.read(w1 / "student" / NOTEBOOK, as_version=4)  # q1 answered, then a cell that raises
    q1 = WEEKS["01"].answers["q1"]
    answer_cell(carol, q1).source = answer_cell(solution, q1).source
    raising = nbformat.v4.new_code_cell("raise RuntimeError('oops')")
    carol.cells.insert(carol.cells.index(answer_cell(carol, q1)) + 1, raising)
    (folder / "carol").mkdir()
    nbformat.write(carol, folder / "carol" / "submission.ipynb")  # the metadata tells the assignment
    dave = nbformat.read(w1 / "student" / NOTEBOOK, as_version=4)  # a cell that kills the kernel
    dave.cells.insert(2, nbformat.v4.new_code_cell("import os\nos._exit(1)"))
    nbformat.write(dave, folder / "dave_42_sampling_loops_1.ipynb")
    (folder / "eve_7_sampling_loops_1.ipynb").write_bytes(b"\x89PNG\r\n\x1a\n")  # an image, renamed
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), folder / "notes.ipynb")


@pytest.fixture(scope="module")
def graded_weeks(assigned: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Grade every week at once: week 1's submissions from a dist holding only week 1 (so no ``--week``), each
    other week's solution and untouched student notebook from the shared dist with ``--week NN``, and a class's
    folder mixing weeks ("class"), once whole and once with ``--week 2`` ("class-02")."""
    subs1 = tmp_path_factory.mktemp("submissions")
    _week1_submissions(assigned, subs1)
    dist1 = tmp_path_factory.mktemp("dist1")
    shutil.copytree(assigned["week"], dist1 / WEEK)

    outs = {"01": tmp_path_factory.mktemp("grades")}
    runs: dict[str, list[str | Path]] = {
        "01": ["grade", subs1, "--dist", dist1, "--out", outs["01"], "--jobs", "4"],  # no --week: the only one
    }
    for week_id, spec in WEEKS.items():
        if week_id == "01":
            continue
        subs = tmp_path_factory.mktemp(f"submissions{week_id}")
        shutil.copy(assigned["weeks"][week_id] / "autograder" / spec.notebook, subs / "solution.ipynb")
        (subs / "bob").mkdir()
        shutil.copy(assigned["weeks"][week_id] / "student" / spec.notebook, subs / "bob" / "untouched.ipynb")
        outs[week_id] = tmp_path_factory.mktemp(f"grades{week_id}")
        runs[week_id] = ["grade", subs, "--dist", assigned["dist"], "--week", week_id, "--out", outs[week_id]]
        runs[week_id] += ["--jobs", "2"]
    folder = tmp_path_factory.mktemp("class")
    _class_submissions(assigned, folder)
    for name, only in (("class", []), ("class-02", ["--week", "2"])):
        outs[name] = tmp_path_factory.mktemp(name)
        runs[name] = ["grade", folder, "--dist", assigned["dist"], "--out", outs[name], "--jobs", "3", *only]
    results = grade_clis(runs)
    graded = {}
    for name, (code, output) in results.items():
        assert code == 0, output
        graded[name] = {"out": outs[name], "stdout": output, "class": read_scores(outs[name] / "scores.csv")}
        if name in WEEKS:
            graded[name].update(read_scores(outs[name] / f"scores-{name}.csv"))
    return graded


@pytest.fixture(scope="module")
def graded(graded_weeks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Week 1's grades."""
    return graded_weeks["01"]


# ---- assign ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("week_id", list(WEEKS))
def test_assign_writes_the_exercises_answer_key_beside_the_student_folder(
    week_id: str, assigned: dict[str, Any]
) -> None:
    from course_utils.course.exercises import answer_key

    key = assigned["dist"] / "answer_keys" / f"{WEEKS[week_id].folder}.md"
    assert key.read_text(encoding="utf-8") == answer_key(week_id) + "\n"
    assert f"answer key to the notebooks' exercises: {key}" in assigned["stdout"]
    assert [p.name for p in (assigned["weeks"][week_id] / "student").iterdir()] == [WEEKS[week_id].notebook]


@pytest.mark.parametrize("week_id", list(WEEKS))
def test_assign_writes_student_notebook_and_autograder_zip(week_id: str, assigned: dict[str, Any]) -> None:
    week, notebook = assigned["weeks"][week_id], WEEKS[week_id].notebook
    assert (week / "student" / notebook).is_file()
    assert (week / "autograder" / notebook).is_file()
    assert (week / "autograder" / "autograder.zip").is_file()
    assert not list((week / "autograder").glob("*-autograder_*.zip")), "the timestamped zip should be renamed"
    assert str(week / "student" / notebook) in assigned["stdout"]
    assert str(week / "autograder" / "autograder.zip") in assigned["stdout"]


@pytest.mark.parametrize("week_id", list(WEEKS))
def test_student_notebook_has_placeholders_and_only_public_tests(week_id: str, assigned: dict[str, Any]) -> None:
    spec = WEEKS[week_id]
    text = (assigned["weeks"][week_id] / "student" / spec.notebook).read_text()
    nb = nbformat.reads(text, as_version=4)
    for question, signature in spec.answers.items():
        source = answer_cell(nb, signature).source
        assert f'raise NotImplementedError("{question}' in source
        assert "SOLUTION" not in source and "return" not in source, source
        assert any(c.source.strip() == f'grader.check("{question}")' for c in nb.cells)
    for public in spec.public:  # public tests travel with the student notebook
        assert public in text
    for hidden in spec.hidden:
        assert hidden not in text


@pytest.mark.parametrize("week_id", list(WEEKS))
def test_student_notebook_sets_up_before_otter_is_imported(week_id: str, assigned: dict[str, Any]) -> None:
    """On Colab the setup cell installs otter-grader: otter's init cell (which otter puts first) must follow it."""
    spec = WEEKS[week_id]
    for built in ("student", "autograder"):
        cells = nbformat.read(assigned["weeks"][week_id] / built / spec.notebook, as_version=4).cells
        assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# Week"), built
        assert cells[1].source == setup_cell(f"assignments/{spec.folder}"), built
        assert cells[2].source.startswith("# Initialize Otter\nimport otter\n"), built
        assert sum("import otter" in c.source for c in cells if c.cell_type == "code") == 1, built


@pytest.mark.parametrize("week_id", list(WEEKS))
def test_autograder_zip_holds_every_test_hidden_ones_included(week_id: str, assigned: dict[str, Any]) -> None:
    spec = WEEKS[week_id]
    with zipfile.ZipFile(assigned["weeks"][week_id] / "autograder" / "autograder.zip") as zf:
        assert {f"tests/{q}.py" for q in spec.questions} <= set(zf.namelist())
        tests = {q: zf.read(f"tests/{q}.py").decode() for q in spec.questions}
    for question, points in spec.questions.items():
        assert f"points = {points}" in tests[question], tests[question]
    for name in (*spec.public, *spec.hidden):
        assert f"def {name}(" in tests[name.split("_")[1]], name
    assert all("hidden=True" in tests[name.split("_")[1]] for name in spec.hidden)


def test_assign_refuses_a_solution_that_fails_its_tests(tmp_path: Path) -> None:
    """run_tests: the solution notebook is graded at assign time; a wrong solution stops the build."""
    source = tmp_path / "assignments" / WEEK / NOTEBOOK
    source.parent.mkdir(parents=True)
    nb = nbformat.read(ROOT / "assignments" / WEEK / NOTEBOOK, as_version=4)
    cell = answer_cell(nb, "def v_to_eps_x0(")
    cell.source = cell.source.replace("sin * x_t + cos * v_hat", "cos * v_hat")  # ε̂ loses its x_t term
    assert "sin * x_t +" not in cell.source.split("END SOLUTION")[0]
    nbformat.write(nb, source)
    proc = grade_cli("assign", "--assignments-dir", tmp_path / "assignments", "--out", tmp_path / "dist")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "otter assign failed for week 01" in proc.stderr, proc.stderr
    assert (tmp_path / "dist" / WEEK / "otter-assign.log").is_file()


# ---- grade -----------------------------------------------------------------------------------------------


def test_scores_files_have_one_row_per_submission_and_the_weeks_one_a_column_per_question(
    graded: dict[str, Any],
) -> None:
    assert graded["header"] == HEADER
    assert set(graded["rows"]) == {"solution.ipynb", "bob/untouched.ipynb", "q1_only.ipynb", "broken.ipynb"}
    assert graded["class"]["header"] == CLASS_HEADER
    assert set(graded["class"]["rows"]) == set(graded["rows"])
    assert {row["week"] for row in graded["class"]["rows"].values()} == {"01"}


@pytest.mark.parametrize("week_id", list(WEEKS))
def test_solution_gets_full_marks(week_id: str, graded_weeks: dict[str, dict[str, Any]]) -> None:
    spec, graded = WEEKS[week_id], graded_weeks[week_id]
    assert graded["header"] == spec.header
    row = graded["rows"]["solution.ipynb"]
    assert {q: float(row[q]) for q in spec.questions} == spec.questions
    assert (float(row["total"]), float(row["possible"]), float(row["percent"])) == (spec.possible, spec.possible, 100)
    assert row["error"] == ""


@pytest.mark.parametrize("week_id", list(WEEKS))
def test_untouched_student_notebook_scores_less_than_full_marks(
    week_id: str, graded_weeks: dict[str, dict[str, Any]]
) -> None:
    spec = WEEKS[week_id]
    row = graded_weeks[week_id]["rows"]["bob/untouched.ipynb"]
    assert float(row["total"]) < float(row["possible"]) == spec.possible
    assert [float(row[q]) for q in spec.questions] == [0] * len(spec.questions)
    assert row["error"] == "", "the untouched notebook must still execute"


def test_each_question_is_scored_in_its_own_column(graded: dict[str, Any]) -> None:
    row = graded["rows"]["q1_only.ipynb"]
    assert [float(row[q]) for q in QUESTIONS] == [3, 0, 0, 0]
    assert (float(row["total"]), float(row["percent"])) == (3, 30)


def test_a_file_that_is_not_a_notebook_gets_zeros_and_its_reason(graded: dict[str, Any]) -> None:
    row = graded["rows"]["broken.ipynb"]
    assert [float(row[k]) for k in [*QUESTIONS, "total", "percent"]] == [0] * (len(QUESTIONS) + 2)
    assert row["possible"] == "10"  # the only week built grades what names no assignment
    assert row["error"] == "not a notebook: corrupt JSON (Expecting value at line 1, column 1)"


def test_grade_prints_a_table_and_keeps_otter_results(graded: dict[str, Any]) -> None:
    lines = graded["stdout"].splitlines()
    assert any(line.split() == CLASS_HEADER for line in lines), graded["stdout"]
    assert any(line.split() == ["solution.ipynb", "01", "sampling_loops_1", "10", "10", "100.0"] for line in lines)
    assert str(graded["out"] / "scores.csv") in graded["stdout"]
    assert str(graded["out"] / "scores-01.csv") in graded["stdout"]
    assert (graded["out"] / "runs" / "bob" / "untouched" / "results.json").is_file()
    assert "[4/4]" in graded["stdout"], "a line per submission as it is graded"


# ---- a class's folder: weeks mixed, failures of every kind ---------------------------------------------------

CLASS_HEADER = ["submission", "week", "assignment", "total", "possible", "percent", "error"]


def test_a_class_folder_is_graded_submission_by_submission_with_the_assignment_each_one_is(
    graded_weeks: dict[str, dict[str, Any]],
) -> None:
    scores = graded_weeks["class"]["class"]
    assert scores["header"] == CLASS_HEADER
    rows = {name: [row[k] for k in CLASS_HEADER[1:6]] for name, row in scores["rows"].items()}
    assert rows == {
        "alice_1234_sampling_loops_1.ipynb": ["01", "sampling_loops_1", "10", "10", "100.0"],  # by its name
        "bob_5678_sampling_loops_2-1.ipynb": ["02", "sampling_loops_2", "0", "15", "0.0"],  # a platform's "-1"
        "carol/submission.ipynb": ["01", "sampling_loops_1", "3", "10", "30.0"],  # by otter's metadata
        "dave_42_sampling_loops_1.ipynb": ["01", "sampling_loops_1", "0", "10", "0.0"],
        "eve_7_sampling_loops_1.ipynb": ["01", "sampling_loops_1", "0", "10", "0.0"],
        "notes.ipynb": ["", "", "0", "0", "0.0"],
    }
    errors = {name: row["error"] for name, row in scores["rows"].items()}
    assert errors["alice_1234_sampling_loops_1.ipynb"] == errors["bob_5678_sampling_loops_2-1.ipynb"] == ""
    assert errors["carol/submission.ipynb"] == (
        "graded, but a cell raised RuntimeError: oops (in the cell starting `raise RuntimeError('oops')`)"
    )
    assert errors["dave_42_sampling_loops_1.ipynb"].startswith("otter run failed: "), errors
    assert "Kernel died" in errors["dave_42_sampling_loops_1.ipynb"], errors
    assert errors["eve_7_sampling_loops_1.ipynb"] == "not a notebook: its bytes are not UTF-8 text"
    assert errors["notes.ipynb"].startswith("not an assignment notebook: "), errors
    assert "sampling_loops_1 (01)" in errors["notes.ipynb"], "the message names the assignments it knows"


def test_a_class_folder_gets_a_scores_file_per_week_with_its_questions(
    graded_weeks: dict[str, dict[str, Any]],
) -> None:
    out = graded_weeks["class"]["out"]
    assert sorted(p.name for p in out.glob("scores*.csv")) == ["scores-01.csv", "scores-02.csv", "scores.csv"]
    week1, week2 = read_scores(out / "scores-01.csv"), read_scores(out / "scores-02.csv")
    assert week1["header"] == HEADER and week2["header"] == WEEKS["02"].header
    assert set(week1["rows"]) == {
        "alice_1234_sampling_loops_1.ipynb",
        "carol/submission.ipynb",
        "dave_42_sampling_loops_1.ipynb",
        "eve_7_sampling_loops_1.ipynb",
    }
    assert [week1["rows"]["carol/submission.ipynb"][q] for q in QUESTIONS] == ["3", "0", "0", "0"]
    assert list(week2["rows"]) == ["bob_5678_sampling_loops_2-1.ipynb"]


def test_feedback_names_failed_tests_and_keeps_hidden_messages_back(graded_weeks: dict[str, dict[str, Any]]) -> None:
    out = graded_weeks["class"]["out"]
    alice = (out / "feedback" / "alice_1234_sampling_loops_1.txt").read_text()
    assert "Score: 10 of 10 points (100.0 %)" in alice and "failed" not in alice
    carol = (out / "feedback" / "carol" / "submission.txt").read_text()
    assert "Score: 3 of 10 points (30.0 %)" in carol
    details = json.loads((out / "runs" / "carol" / "submission" / "details.json").read_text())["questions"]
    failed = [c for q in ("q2", "q3", "q4") for c in details[q]["cases"] if not c["passed"]]
    assert any(c["hidden"] for c in failed) and any(not c["hidden"] for c in failed), failed
    for case in failed:
        if case["hidden"]:
            assert f"failed {case['name']} (a hidden test: its message is not shown)" in carol
            assert case["message"] and case["message"] not in carol
        else:
            assert f"failed {case['name']}:" in carol
            assert case["message"].splitlines()[-1] in carol
    assert "RuntimeError: oops" in carol
    eve = (out / "feedback" / "eve_7_sampling_loops_1.txt").read_text()
    assert "Not graded: not a notebook: its bytes are not UTF-8 text." in eve


def test_week_keeps_only_that_weeks_submissions(graded_weeks: dict[str, dict[str, Any]]) -> None:
    run = graded_weeks["class-02"]
    rows = run["class"]["rows"]
    assert set(rows) == {"bob_5678_sampling_loops_2-1.ipynb", "notes.ipynb"}
    assert rows["notes.ipynb"]["week"] == "02", "with --week, a notebook naming no assignment is graded as that week"
    assert rows["notes.ipynb"]["possible"] == "15" and rows["notes.ipynb"]["error"] == ""
    left_out = next(line for line in run["stdout"].splitlines() if line.startswith("left out"))
    for name in ("alice_1234_sampling_loops_1.ipynb", "carol/submission.ipynb", "eve_7_sampling_loops_1.ipynb"):
        assert name in left_out
    assert not (run["out"] / "scores-01.csv").exists()


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


def _bad_autograder(tmp_path: Path) -> Path:
    (tmp_path / "dist" / "01_x" / "autograder").mkdir(parents=True)
    (tmp_path / "dist" / "01_x" / "autograder" / "autograder.zip").write_text("not a zip")
    return tmp_path / "dist"


BAD_INPUTS: dict[str, tuple[Callable[[Path, Path], list[str | Path]], str]] = {
    "unknown week to assign": (
        lambda tmp, dist: ["assign", "--weeks", "99"],
        f"unknown week '99'; valid weeks: 00, {VALID_WEEKS}",  # 00: week 0's answer key, no assignment
    ),
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
        f"unknown week '99'; valid weeks: {VALID_WEEKS}",
    ),
    "an autograder that is not a zip": (
        lambda tmp, dist: ["grade", _with_notebook(tmp), "--dist", _bad_autograder(tmp)],
        "autograder.zip is not an otter autograder zip; run `make assignments` again",
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


# --- the week notebook does not hand out the answers ----------------------------------------------------------

LONG_LINE = 25  # characters: shorter lines (``return h``, ``super().__init__()``) are shared vocabulary


def _solution_lines(notebook: Path) -> set[str]:
    """The solution lines of ``notebook`` (between ``# BEGIN SOLUTION`` and ``# END SOLUTION``, or ending in
    ``# SOLUTION``) inside its code cells, stripped, of at least :data:`LONG_LINE` characters."""
    lines, inside = set(), False
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            text = line.strip()
            if text.startswith("# BEGIN SOLUTION"):
                inside = True
            elif text.startswith("# END SOLUTION"):
                inside = False
            elif (inside or text.endswith("# SOLUTION")) and len(text) >= LONG_LINE:
                if not text.startswith(("import ", "from ")):  # imports are shared vocabulary too
                    lines.add(text)
    return lines


@pytest.mark.parametrize("folder", sorted(p.name for p in (ROOT / "assignments").glob("[0-9][0-9]_*")))
def test_no_solution_line_appears_verbatim_in_the_week_notebooks(folder: str) -> None:
    (source,) = (ROOT / "assignments" / folder).glob("*.ipynb")
    solutions = _solution_lines(source)
    assert solutions, f"{source.name} marks no solution lines"  # the markers this test reads are there
    notebooks = sorted((ROOT / "weeks").glob("[0-9][0-9]_*/*.ipynb"))  # every week's, not only its own
    assert len(notebooks) >= 9, notebooks
    for notebook in notebooks:
        text = "\n".join(cell.source for cell in nbformat.read(notebook, as_version=4).cells)  # code and prose
        shown = sorted(line for line in solutions if line in text)
        assert not shown, f"{notebook.name} shows solution lines of {source.name}: {shown}"
