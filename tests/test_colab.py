"""The Colab start (``course_utils.course.colab``): what :func:`prepare` installs, keeps and reports, and, marked
slow, the whole start as Colab runs it.

The slow test builds a fresh virtual environment holding only what Colab brings that matters here (torch, ipywidgets
7.x, ipykernel), fakes Colab in a kernel of it (``google.colab`` in ``sys.modules``), serves this checkout through a
stand-in ``git`` and runs week 1's setup cell and the cells after it in that one kernel: the model must load, with
torch and ipywidgets as they were. pip's cache (its default one) makes reruns quicker.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from packaging.requirements import Requirement

from course_utils.course import colab

ROOT = Path(__file__).resolve().parents[1]
WEEK = "weeks/01_sampling_loops"
NOTEBOOK = ROOT / WEEK / "01_sampling_loops.ipynb"
TORCH = "torch==2.13.0"  # the CPU build here (requirements.txt's comment); Colab brings its CUDA one
WIDGETS = "ipywidgets==7.7.*"  # what Colab's front end speaks


def _root_with(tmp_path: Path, *dependencies: str) -> Path:
    """A course root whose pyproject.toml asks for ``dependencies``, with a ``weeks/01_x`` folder."""
    root = tmp_path / "course"
    (root / "weeks" / "01_x").mkdir(parents=True)
    listed = ", ".join(json.dumps(d) for d in dependencies)
    (root / "pyproject.toml").write_text(f'[project]\nname = "x"\ndependencies = [{listed}]\n')
    return root


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare() changes the working directory and PYTHONPATH: give them back."""
    monkeypatch.chdir(Path.cwd())
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))


# ---- what prepare installs, keeps and reports ---------------------------------------------------------


def test_the_requirements_are_pyprojects_and_ipywidgets_admits_colabs_7x_and_the_local_pin():
    wanted = {Requirement(r).name: Requirement(r) for r in colab.requirements(ROOT)}
    assert {"torch", "diffusers", "transformers", "ipywidgets"} <= set(wanted)
    pins = dict(
        line.split("==")
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and line[0] != "#"
    )
    for version in ("7.7.1", pins["ipywidgets"]):  # Colab's, and the local runs' exact pin
        assert wanted["ipywidgets"].specifier.contains(version), version
    assert not wanted["ipywidgets"].specifier.contains("7.5.1")  # the widgets' layout options need 7.6


def test_missing_requirements_splits_off_what_colab_keeps():
    installed = {"torch": "2.0.1+cu118", "diffusers": "0.30.0", "numpy": "2.0.2", "ipywidgets": "7.7.1"}.get
    wanted = [
        "torch>=2.1",
        "diffusers>=0.42",
        "numpy>=1.24",
        "ipywidgets>=7.6",
        "tqdm>=4.60",
        'tomli; python_version < "3"',
    ]
    missing, kept = colab.missing_requirements(wanted, installed=installed)
    assert missing == ["diffusers>=0.42", "tqdm>=4.60"]  # too old, absent; numpy and ipywidgets are fine
    assert kept == ["torch>=2.1"]  # too old, but Colab's own build: reported, never installed


def test_stale_names_each_imported_distribution_pip_changed():
    before = {"numpy": "1.26.4", "tqdm": "4.59.0", "pillow": "11.0.0"}
    after = {"numpy": "1.26.4", "tqdm": "4.70.1", "pillow": None}
    assert colab.stale_distributions(before, after) == ["pillow 11.0.0 → removed", "tqdm 4.59.0 → 4.70.1"]
    assert colab.stale_distributions(before, dict(before)) == []


def test_pins_hold_keep_where_it_is():
    pins = colab._pins(("pytest", "surely-not-installed-xyz"))
    assert pins == {"pytest": f"=={importlib.metadata.version('pytest')}", "surely-not-installed-xyz": "<0"}


def test_prepare_with_nothing_missing_is_silent_and_changes_into_the_folder(tmp_path, restored, capsys):
    root = _root_with(tmp_path, "pytest>=1", "nbformat")
    done = colab.prepare(root, "weeks/01_x")
    assert capsys.readouterr().out == ""
    assert Path.cwd() == (root / "weeks" / "01_x").resolve()
    assert str(root.resolve()) in os.environ["PYTHONPATH"].split(os.pathsep)
    assert (done.installed, done.kept, done.stale) == ([], [], [])


def test_prepare_installs_in_one_resolve_with_keep_pinned(tmp_path, restored, capsys, monkeypatch):
    root = _root_with(tmp_path, "torch>=999", "pytest>=1", "surely-not-installed-xyz>=1")
    (root / "assignments" / "01_x").mkdir(parents=True)
    calls: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(colab, "_pip_install", lambda specs, *, pins: calls.append((specs, dict(pins))))
    done = colab.prepare(root, "assignments/01_x")
    out = capsys.readouterr().out
    [(specs, pins)] = calls
    # everything but torch, in one resolve; otter-grader for an assignment; torch and ipywidgets pinned as they are
    assert specs == ["pytest>=1", "surely-not-installed-xyz>=1", "otter-grader"]
    assert pins == {name: f"=={importlib.metadata.version(name)}" for name in ("torch", "ipywidgets")}
    assert done.installed == ["surely-not-installed-xyz>=1"] + ([] if _has("otter-grader") else ["otter-grader"])
    assert done.kept == ["torch>=999"] and done.stale == []
    assert "the course asks for torch>=999 and this runtime has torch" in out
    assert "installing surely-not-installed-xyz>=1" in out
    assert Path.cwd() == (root / "assignments" / "01_x").resolve()


def _has(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_a_failing_pip_is_an_error_with_its_output(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(RuntimeError, match="pip could not install x>=1 with torch==1 kept"):
        colab._pip_install(["x>=1"], pins={"torch": "==1"})


# ---- the whole start, as on Colab -----------------------------------------------------------------------

STAND_IN_GIT = '''\
#!{python}
"""git, for the test: `git clone ... DEST` copies the checkout under test to DEST; anything else fails."""
import json
import shutil
import sys
from pathlib import Path

SOURCE = Path({source!r})
TOP_LEVEL = {{".git", ".venv", "build", "dist"}}
CACHES = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints", "*.egg-info")


def ignore(folder, names):
    skipped = set(CACHES(folder, names))
    return skipped | (TOP_LEVEL & set(names) if Path(folder) == SOURCE else set())


args = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(json.dumps(args) + "\\n")
if not args or args[0] != "clone":
    sys.exit(f"stand-in git: clone only, not {{args}}")
shutil.copytree(SOURCE, args[-1], ignore=ignore)
'''


def _pip(python: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "pip", *args, "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _versions(python: Path) -> dict[str, str]:
    code = "import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in ('torch', 'ipywidgets')}))"
    return json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout)


class Kernel:
    """An IPython kernel of another interpreter, run cell by cell."""

    def __init__(self, python: Path, *, env: dict[str, str], cwd: Path) -> None:
        import zmq
        from jupyter_client.kernelspec import KernelSpec
        from jupyter_client.manager import KernelManager
        from traitlets import default

        spec = KernelSpec(
            argv=[str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="fresh venv",
            language="python",
            metadata={"supported_encryption": ["curve"]},  # the venv's ipykernel, as the outer one
        )

        class Manager(KernelManager):
            @property
            def kernel_spec(self) -> KernelSpec:
                return spec

            @default("transport_encryption")
            def _encrypt_when_possible(self) -> str:  # as the runner's kernels: no plain-TCP warning
                return "auto" if zmq.has("curve") else "disabled"

        self.manager = Manager()
        self.manager.start_kernel(env=env, cwd=str(cwd))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def run(self, code: str, *, timeout: float = 300) -> str:
        """Run one cell; its stdout and stderr. A cell that raises fails the test with everything it printed."""
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                out.append("\n".join(content["traceback"]))

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=hook)
        text = "".join(out)
        assert reply["content"]["status"] == "ok", f"cell failed:\n{code}\n---\n{text}"
        return text

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def _cells(path: Path) -> tuple[str, str, str]:
    """The setup cell, the parameters cell and the cell after it (week 1: imports, loads the model)."""
    cells = nbformat.read(path, as_version=4).cells
    setup = next(c for c in cells if colab.is_setup_cell(c))
    i = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    after = next(c for c in cells[i + 1 :] if c.cell_type == "code")
    return setup.source, cells[i].source, after.source


FAKE_COLAB = textwrap.dedent(
    """\
    import importlib.machinery
    import sys
    import types

    colab = types.ModuleType("google.colab")  # what the notebook and the libraries look for
    colab.__spec__ = importlib.machinery.ModuleSpec("google.colab", None, is_package=True)
    colab.__path__ = []
    sys.modules["google.colab"] = colab
    """
)
WIDGETS_CELL = textwrap.dedent(
    """\
    import ipywidgets
    from course_utils.plotting import DrawingPad
    from course_utils.sd.panels import GenerationPanel
    from course_utils.sd.pipeline import load_pipeline
    from course_utils.sd.support import check_request

    pad = DrawingPad(8, scale=10)
    pad.paint(15, 15)
    settings, _ = check_request("course/shapes-sd", steps=2)
    panel = GenerationPanel(load_pipeline(settings, device="cpu"), settings, prompt="a red circle", seed=0)
    panel.steps.value = 3
    drawn = int((pad.image() > 0).sum())
    print("widgets", ipywidgets.__version__, type(pad.widget).__name__, drawn, panel.steps.value, panel.render().size)
    """
)


@pytest.mark.slow
def test_the_setup_cell_starts_week_1_on_a_colab_like_runtime(tmp_path: Path) -> None:
    started = time.perf_counter()
    venv, course = tmp_path / "venv", tmp_path / "content" / "diffusion-course"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    try:
        probe = _pip(python, "download", "--no-deps", "-q", "-d", str(tmp_path / "probe"), "ipykernel", timeout=300)
        if probe.returncode != 0:
            lines = (probe.stdout + probe.stderr).strip().splitlines() or ["no output"]
            pytest.skip(f"the package registry cannot be reached: {lines[-1]}")
        made = _pip(python, "install", "-q", TORCH, WIDGETS, "ipykernel")
        assert made.returncode == 0, made.stdout + made.stderr
        colab_brought = _versions(python)
        assert colab_brought["ipywidgets"].startswith("7.7."), colab_brought

        bin_dir, log = tmp_path / "bin", tmp_path / "git.log"
        bin_dir.mkdir()
        (bin_dir / "git").write_text(STAND_IN_GIT.format(python=sys.executable, source=str(ROOT), log=str(log)))
        (bin_dir / "git").chmod(0o755)
        outer_bin = str(Path(sys.executable).parent)
        path = [str(bin_dir), str(python.parent), *(p for p in os.environ["PATH"].split(os.pathsep) if p != outer_bin)]
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
        env |= {"PATH": os.pathsep.join(path), "COURSE_ROOT": str(course)}

        setup, parameters, imports = _cells(NOTEBOOK)
        assert setup == colab.setup_cell(WEEK)
        kernel = Kernel(python, env=env, cwd=tmp_path)
        try:
            kernel.run(FAKE_COLAB)
            first = kernel.run(setup, timeout=1200)
            again = kernel.run(setup)
            kernel.run(parameters)
            loaded = kernel.run(imports)
            where = kernel.run("import os, course_utils\nprint(os.getcwd())\nprint(course_utils.__file__)")
            command = kernel.run("!python -m course_utils.course.cli --help")  # a command started from the notebook
            widgets = kernel.run(WIDGETS_CELL)
        finally:
            kernel.close()

        assert [json.loads(line) for line in log.read_text().splitlines()] == [
            ["clone", "-q", "--depth", "1", colab.REPOSITORY, str(course)]
        ]
        assert "installing diffusers>=0.42" in first and "this kernel had already imported" not in first, first
        assert again == "", "a second run of the setup cell has nothing to do"
        assert "profile offline: course/shapes-if denoises images of shape (3, 32, 32), T = 1000" in loaded, loaded
        cwd, package = where.split()
        assert Path(cwd) == course / WEEK and Path(package) == course / "course_utils" / "__init__.py"
        assert all(name in command for name in ("run", "generate", "assign")), command
        assert f"widgets {colab_brought['ipywidgets']} VBox 1 3 (32, 32)" in widgets, widgets
        assert _versions(python) == colab_brought, "the setup cell must leave Colab's torch and ipywidgets alone"
        print(f"Colab-like start: {time.perf_counter() - started:.0f} s; the setup cell printed:\n{first}")
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # about 1.5 GB
