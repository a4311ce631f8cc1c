"""Tests for ``python -m course_utils.course.run``: tiny notebooks built here, run on real kernels.

Kernel start-ups are the cost, so each execution is a module-scoped fixture shared by several tests.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
import torch
import zmq

from course_utils.course import run
from course_utils.errors import CourseError

pytestmark = pytest.mark.slow  # starts kernels

ROOT = Path(__file__).resolve().parents[1]
PARAMETERS = 'profile = "offline"\nx = 1  # [0, 100] a small number\ndevice = None'
PROBE = "import json, os, sys\nprint(json.dumps([sys.executable, os.getcwd(), os.environ.get('MPLBACKEND')]))"


def write_notebook(path: Path, *cells: str, parameters: str | None = PARAMETERS) -> Path:
    """A notebook whose first cell (tagged ``parameters``) is ``parameters``, then ``cells``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if parameters is not None:
        nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def runner(*args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "course_utils.course.run", *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def stream_text(nb: nbformat.NotebookNode) -> str:
    return "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []))


@pytest.fixture(scope="module")
def weeks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Week 01 passes, week 02 raises in its 3rd cell, week 03 (after it, no `profile`) passes; decoys never run."""
    weeks = tmp_path_factory.mktemp("course") / "weeks"
    write_notebook(weeks / "01_basics" / "ok.ipynb", "print(f'x={x!r}')", PROBE)
    write_notebook(weeks / "01_basics" / ".ipynb_checkpoints" / "ok-checkpoint.ipynb", "raise SystemExit(3)")
    write_notebook(weeks / "02_broken" / "fail.ipynb", "print(f'x={x!r}')", "raise ValueError('boom')", "print(1)")
    write_notebook(weeks / "03_after" / "after.ipynb", "print(f'x={x!r}')", parameters="x = 1\ndevice = None")
    write_notebook(weeks / "notes" / "scratch.ipynb", "raise SystemExit(3)")
    return weeks


@pytest.fixture(scope="module")
def full_run(weeks: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """All weeks through the command line with ``-p x=42``."""
    out = tmp_path_factory.mktemp("full") / "out"
    proc = runner("--weeks-dir", weeks, "--out", out, "-p", "x=42")
    return {"proc": proc, "out": out, "report": json.loads((out / "report.json").read_text())}


def test_report_lists_every_week_notebook_in_order(full_run: dict[str, Any]) -> None:
    report = full_run["report"]
    assert [(e["path"], e["week"], e["status"]) for e in report["notebooks"]] == [
        ("weeks/01_basics/ok.ipynb", "01", "ok"),
        ("weeks/02_broken/fail.ipynb", "02", "failed"),
        ("weeks/03_after/after.ipynb", "03", "ok"),
    ], (report, full_run["proc"].stderr[-3000:])
    assert (report["profile"], report["parameters"], report["ok"], report["failed"]) == ("offline", {"x": 42}, 2, 1)
    assert all(isinstance(e["seconds"], float) and e["seconds"] > 0 for e in report["notebooks"])


def test_failure_is_recorded_with_its_cell_and_one_line_error(full_run: dict[str, Any]) -> None:
    ok, failed, after = full_run["report"]["notebooks"]
    assert (ok["failed_cell"], ok["error"]) == (None, None)
    assert (after["failed_cell"], after["error"]) == (None, None)
    assert (failed["failed_cell"], failed["error"]) == (3, "ValueError: boom")
    executed = nbformat.read(full_run["out"] / "02_broken" / "fail.ipynb", as_version=4)
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert code[3].source == "raise ValueError('boom')"  # papermill's index: parameters, injected, print, raise
    assert code[4].execution_count is None


def test_failing_notebook_does_not_stop_the_next(full_run: dict[str, Any]) -> None:
    executed = nbformat.read(full_run["out"] / "03_after" / "after.ipynb", as_version=4)
    assert "x=42\n" in stream_text(executed)


def test_override_and_profile_reach_the_executed_notebook(full_run: dict[str, Any]) -> None:
    executed = nbformat.read(full_run["out"] / "01_basics" / "ok.ipynb", as_version=4)
    injected = [cell for cell in executed.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert len(injected) == 1 and 'profile = "offline"' in injected[0].source and "x = 42" in injected[0].source
    assert "x=42\n" in stream_text(executed)


def test_kernel_is_this_interpreter_in_the_notebook_folder_with_agg(full_run: dict[str, Any], weeks: Path) -> None:
    executed = nbformat.read(full_run["out"] / "01_basics" / "ok.ipynb", as_version=4)
    executable, cwd, backend = json.loads(executed.cells[-1].outputs[0].text)
    assert executable == sys.executable
    assert Path(cwd) == weeks.resolve() / "01_basics"
    assert backend == "Agg"


def test_cli_exit_code_1_summary_and_outputs(full_run: dict[str, Any]) -> None:
    proc = full_run["proc"]
    assert proc.returncode == 1, proc.stderr
    table = proc.stdout.splitlines()
    assert table[0].split() == ["notebook", "status", "seconds", "error"]
    assert table[2].split()[:2] == ["weeks/02_broken/fail.ipynb", "failed"] and table[2].endswith("ValueError: boom")
    assert table[-1].startswith("2 ok, 1 failed")
    assert "Traceback" not in proc.stderr
    if zmq.has("curve"):  # encrypted kernel sockets: no plain-TCP warning from every kernel
        assert "without encryption" not in proc.stderr
    executed = sorted(p.relative_to(full_run["out"]).as_posix() for p in full_run["out"].rglob("*.ipynb"))
    assert executed == ["01_basics/ok.ipynb", "02_broken/fail.ipynb", "03_after/after.ipynb"]


def test_cli_exit_code_0_when_all_pass(weeks: Path, tmp_path: Path) -> None:
    proc = runner("--weeks-dir", weeks, "--out", tmp_path, "--weeks", "3", "--profile", "gpu", "-p", "device='cpu'")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert [e["path"] for e in report["notebooks"]] == ["weeks/03_after/after.ipynb"]
    assert (report["ok"], report["failed"], report["profile"], report["parameters"]) == (1, 0, "gpu", {"device": "cpu"})
    executed = nbformat.read(tmp_path / "03_after" / "after.ipynb", as_version=4)
    assert "x=1\n" in stream_text(executed)
    injected = [cell for cell in executed.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert 'device = "cpu"' in injected[0].source and "profile" not in injected[0].source  # not declared there


def test_run_notebooks_returns_the_report_it_writes(weeks: Path, tmp_path: Path) -> None:
    report = run.run_notebooks(
        weeks_dir=weeks, weeks=["02"], profile="offline", parameters={"x": 7}, out=tmp_path, timeout=60
    )
    assert report == json.loads((tmp_path / "report.json").read_text())
    assert [e["status"] for e in report["notebooks"]] == ["failed"]
    assert "x=7\n" in stream_text(nbformat.read(tmp_path / "02_broken" / "fail.ipynb", as_version=4))


def test_cell_timeout_fails_the_notebook_without_a_cell_index(tmp_path: Path) -> None:
    weeks = tmp_path / "weeks"
    write_notebook(weeks / "04_slow" / "slow.ipynb", "import time\ntime.sleep(60)", parameters=None)
    report = run.run_notebooks(
        weeks_dir=weeks, weeks=None, profile="offline", parameters={}, out=tmp_path / "o", timeout=1
    )
    (entry,) = report["notebooks"]
    assert entry["status"] == "failed" and entry["failed_cell"] is None
    assert entry["error"].startswith("CellTimeoutError: ") and "\n" not in entry["error"]
    assert 1 <= entry["seconds"] < 30


def test_report_is_written_after_every_notebook(weeks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_execute(nb: run.WeekNotebook, **_: Any) -> dict[str, Any]:
        report = tmp_path / "report.json"
        seen.append([e["path"] for e in json.loads(report.read_text())["notebooks"]] if report.exists() else [])
        return {"status": "ok", "seconds": 0.1, "failed_cell": None, "error": None}

    monkeypatch.setattr(run, "_execute", fake_execute)
    run.run_notebooks(weeks_dir=weeks, weeks=None, profile="offline", parameters={}, out=tmp_path)
    assert seen == [[], ["weeks/01_basics/ok.ipynb"], ["weeks/01_basics/ok.ipynb", "weeks/02_broken/fail.ipynb"]]


def test_list_shows_week_notebooks_and_parameters_only(weeks: Path, tmp_path: Path) -> None:
    proc = runner("--weeks-dir", weeks, "--list", "--weeks", "01,02", "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "01  weeks/01_basics/ok.ipynb",
        '      profile = "offline"',
        "      x = 1  # [0, 100] a small number",
        "      device = None",
        "02  weeks/02_broken/fail.ipynb",
        '      profile = "offline"',
        "      x = 1  # [0, 100] a small number",
        "      device = None",
    ]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x=42", ("x", 42)),
        ("x=hello", ("x", "hello")),
        ("x='42'", ("x", "42")),
        ("x=[1, 2.5, None]", ("x", [1, 2.5, None])),
        ("x={'a': True}", ("x", {"a": True})),
        ("x=a photo of a cat", ("x", "a photo of a cat")),
        (" x =", ("x", "")),
    ],
)
def test_parse_parameter(text: str, expected: tuple[str, Any]) -> None:
    assert run.parse_parameter(text) == expected


@pytest.mark.parametrize("text", ["x", "=1", "2x=1", "a.b=1"])
def test_parse_parameter_refuses_a_bad_key(text: str) -> None:
    with pytest.raises(CourseError, match="key=value"):
        run.parse_parameter(text)


BAD_INPUTS = {
    "unknown profile": (["--profile", "nope"], "unknown profile 'nope'; valid profiles: offline, gpu"),
    "unknown week": (["--weeks", "01,07"], "unknown week '07'; valid weeks: 01, 02, 03"),
    "unknown -p key": (
        ["-p", "x=2", "-p", "seed=1"],
        "unknown parameter 'seed' for weeks/01_basics/ok.ipynb; valid parameters: profile, x, device",
    ),
    "tuple value": (["-p", "x=(1, 2)"], "-p x=(1, 2): papermill injects"),
    "-p profile": (["-p", "profile='gpu'"], "choose the profile with --profile"),
    "bad timeout": (["--timeout", "soon"], "argument --timeout"),
    "unknown device": (["-p", "device=gpu"], "-p device: unknown device 'gpu'; valid devices: auto, cpu, cuda, mps"),
    "a string for a number": (
        ["-p", "x=abc"],
        "-p x='abc': weeks/01_basics/ok.ipynb expects a whole number, like its default 1 (a small number)",
    ),
    "a number out of its range": (
        ["-p", "x=200"],
        "-p x=200: 200 lies outside [0, 100], the range weeks/01_basics/ok.ipynb allows (a small number)",
    ),
}


@pytest.mark.parametrize("args, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_one_line_and_exit_2(weeks: Path, tmp_path: Path, args: list[str], message: str) -> None:
    proc = runner("--weeks-dir", weeks, "--out", tmp_path / "o", *args)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert message in proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "o").exists()  # refused before anything ran


NO_CUDA = "device 'cuda' is not available on this machine (no CUDA GPU); use 'cpu' or 'auto'"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has the CUDA GPU asked for")
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--profile", "gpu"], f"error: profile 'gpu': {NO_CUDA}"),
        (["--profile", "gpu", "-p", "device=None"], f"error: profile 'gpu': {NO_CUDA}"),  # None: the profile's
        (["-p", "device=cuda"], f"error: -p device: {NO_CUDA}"),
    ],
    ids=["gpu profile", "gpu profile, device=None", "device=cuda"],
)
def test_missing_cuda_is_one_line_and_exit_2(weeks: Path, tmp_path: Path, args: list[str], line: str) -> None:
    proc = runner("--weeks-dir", weeks, "--out", tmp_path / "o", *args)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [line]
    assert not (tmp_path / "o").exists()


def test_missing_model_files_are_one_line_and_exit_2(weeks: Path, tmp_path: Path) -> None:
    """A course model that was never built is refused before any kernel starts, with the command that builds it."""
    empty = tmp_path / "empty-root"
    cmd = [sys.executable, "-m", "course_utils.course.run", "--weeks-dir", str(weeks), "--out", str(tmp_path / "o")]
    env = {**os.environ, "COURSE_ROOT": str(empty)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    missing = empty / "data" / "models" / "shapes-if"
    assert proc.stderr.splitlines() == [
        f"error: profile 'offline': model files for course/shapes-if are missing at {missing}; run `make models`"
    ]
    assert not (tmp_path / "o").exists()


@pytest.mark.long
def test_a_sigkilled_run_resumes_with_only_the_notebooks_it_did_not_finish(tmp_path: Path) -> None:
    """Killed with SIGKILL at a seeded random moment after its first notebook, ``--resume`` runs the rest: the
    finished notebook is not run again, every notebook ends executed, no partial file is left."""
    weeks, log, out = tmp_path / "weeks", tmp_path / "ran.log", tmp_path / "out"
    for name in ("01_a", "02_b", "03_c"):
        record = f"open({str(log)!r}, 'a').write('{name}\\n')"
        write_notebook(weeks / name / "n.ipynb", record, "import time\ntime.sleep(1)")
    cmd = [sys.executable, "-m", "course_utils.course.run", "--weeks-dir", str(weeks), "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report = out / "report.json"
    while not (report.is_file() and json.loads(report.read_text())["notebooks"]):
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    time.sleep(random.Random(7).uniform(0.1, 1.0))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not (out / "02_b" / "n.ipynb").exists(), "a notebook cut off is not in the output folder"
    refused = runner("--weeks-dir", weeks, "--out", out, "--resume", "-p", "x=3")
    assert refused.returncode == 2 and "--resume: the last run into" in refused.stderr, refused.stderr

    resumed = runner("--weeks-dir", weeks, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads(report.read_text())
    assert [(e["path"], e["status"], e.get("resumed", False)) for e in final["notebooks"]] == [
        ("weeks/01_a/n.ipynb", "ok", True),
        ("weeks/02_b/n.ipynb", "ok", False),
        ("weeks/03_c/n.ipynb", "ok", False),
    ]
    ran = log.read_text().split()
    assert ran.count("01_a") == 1 and ran.count("03_c") == 1 and ran[-1] == "03_c", ran  # nothing twice but the cut
    assert all((out / name / "n.ipynb").is_file() for name in ("01_a", "02_b", "03_c"))
    assert not list(out.rglob("*.part*")), list(out.rglob("*.part*"))
    assert "(kept)" in resumed.stdout
