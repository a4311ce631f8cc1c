"""The first code cell of every notebook, and what it calls: on Colab, fetch the course, install only what Colab
lacks and import the course in the running kernel; locally (``make setup`` did all of this) the cell does nothing.

Every notebook carries the same cell, written from one template (:data:`SETUP_TEMPLATE`, by :func:`setup_cell`)
right after the notebook's title; ``tests/test_setup_cell.py`` checks it, and ``make setup-cells``
(:func:`sync_setup_cells`) rewrites the cells after a change here.

Why not ``%pip install -e``: an editable install registers the package through a ``.pth`` file that Python reads
only at start-up, so ``import course_utils`` fails in the kernel that ran the install until the runtime restarts.
Instead the cell puts the clone on ``sys.path`` (its ``course_utils`` finds ``data/models`` beside itself) and
:func:`prepare` pip-installs the course's runtime requirements (``pyproject.toml``'s ``[project] dependencies``)
that are missing or too old. It never installs or replaces :data:`KEEP` (Colab's CUDA torch, and the ipywidgets
7.x its front end speaks): pip runs with those pinned to the versions installed, so a requirement that would need
another one fails instead of replacing them. A distribution pip upgrades whose module this kernel had already
imported keeps running the old code until a restart: :func:`prepare` names it.

This module imports only the standard library at the top: it runs before anything else is installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "COLAB_ROOT",
    "KEEP",
    "NOTEBOOK_GLOBS",
    "REPOSITORY",
    "SETUP_TEMPLATE",
    "Prepared",
    "is_setup_cell",
    "missing_requirements",
    "prepare",
    "requirements",
    "setup_cell",
    "stale_distributions",
    "sync_setup_cells",
]

REPOSITORY = "https://github.com/diffusion-course/diffusion-course"
COLAB_ROOT = "/content/diffusion-course"
KEEP = ("torch", "ipywidgets")
"""What Colab brings and the course never installs or replaces: its CUDA torch, and the ipywidgets its front end
speaks (7.x)."""
ASSIGNMENT_EXTRA = ("otter-grader",)
"""Installed as well for a notebook under ``assignments/``: its otter init cell imports ``otter``."""
NOTEBOOK_GLOBS = ("weeks/*/*.ipynb", "assignments/*/*.ipynb")
"""The notebooks that carry the setup cell, relative to the repository."""

SETUP_TEMPLATE = """\
# Setup (the same in every notebook): on Colab, fetch the course and install what Colab lacks, in this kernel;
# locally `make setup` did it all and this cell does nothing.
import os
import subprocess
import sys

if "google.colab" in sys.modules:
    COURSE = os.environ.get("COURSE_ROOT", "{colab_root}")
    if not os.path.isdir(COURSE):
        git_clone = ["git", "clone", "-q", "--depth", "1"]
        subprocess.run([*git_clone, "{repository}", COURSE], check=True)
    if COURSE not in sys.path:
        sys.path.insert(0, COURSE)
    from course_utils.course.colab import prepare

    prepare(COURSE, "{folder}")"""
SETUP_FIRST_LINE = SETUP_TEMPLATE.splitlines()[0]


def setup_cell(folder: str) -> str:
    """The setup cell of the notebooks in ``folder`` (relative to the repository, e.g. ``weeks/01_sampling_loops``)."""
    if folder.startswith("/") or "\\" in folder or '"' in folder:
        raise ValueError(f"folder must be a relative POSIX path inside the repository, got {folder!r}")
    return SETUP_TEMPLATE.format(colab_root=COLAB_ROOT, repository=REPOSITORY, folder=folder)


def is_setup_cell(cell: Mapping) -> bool:
    """A code cell written from the template (or the older one-off setup cells, which began with ``# Setup``)."""
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else source
    return cell.get("cell_type") == "code" and source.lstrip().startswith("# Setup")


# ---- what to install ---------------------------------------------------------------------------------------


def _packaging():
    """``packaging``'s ``Requirement`` and ``Version``: every Jupyter kernel has it (ipykernel depends on it), and
    pip vendors a copy."""
    try:
        from packaging.requirements import Requirement
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover - a kernel without packaging
        from pip._vendor.packaging.requirements import Requirement
        from pip._vendor.packaging.version import InvalidVersion, Version
    return Requirement, Version, InvalidVersion


def _toml(text: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        from pip._vendor import tomli as tomllib
    return tomllib.loads(text)


def requirements(root: str | Path) -> list[str]:
    """The course's runtime requirements, as written in ``root/pyproject.toml`` (``[project] dependencies``)."""
    return list(_toml((Path(root) / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"])


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _satisfied(requirement, version: str | None) -> bool:
    if version is None:
        return False
    _, Version, InvalidVersion = _packaging()
    try:
        return requirement.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return True  # a version pip cannot read either: leave it alone


def _applies(requirement) -> bool:
    """Whether a requirement's environment marker (``; python_version < "3.11"``) holds here."""
    return requirement.marker is None or requirement.marker.evaluate()


def missing_requirements(
    wanted: Iterable[str], *, installed=_installed_version, keep: Iterable[str] = KEEP
) -> tuple[list[str], list[str]]:
    """``(to install, kept)``: the requirements of ``wanted`` not installed at a version they accept, split into
    those pip should install and those of ``keep`` (left alone, for the caller to report). Requirements whose
    environment marker does not hold here are skipped. ``installed(name)`` gives a distribution's version or
    ``None`` (default: this interpreter's)."""
    Requirement, _, _ = _packaging()
    keep = {_canonical(k) for k in keep}
    missing, kept = [], []
    for text in wanted:
        requirement = Requirement(text)
        if not _applies(requirement):
            continue
        if _satisfied(requirement, installed(requirement.name)):
            continue
        (kept if _canonical(requirement.name) in keep else missing).append(text)
    return missing, kept


# ---- what pip changed under the running kernel ---------------------------------------------------------


def _imported_distributions(modules: Iterable[str]) -> dict[str, str]:
    """Distribution → version, for the installed distributions providing a top-level module in ``modules``."""
    providers = importlib.metadata.packages_distributions()
    names = {d for m in modules if "." not in m for d in providers.get(m, ())}
    return {_canonical(n): v for n in names if (v := _installed_version(n)) is not None}


def stale_distributions(before: Mapping[str, str], after: Mapping[str, str | None]) -> list[str]:
    """``"name old → new"`` for each distribution of ``before`` (imported, with its version then) whose version
    is now another (``after``; ``None``: removed): the kernel still runs its old code."""
    return [
        f"{name} {old} → {after.get(name) or 'removed'}"
        for name, old in sorted(before.items())
        if after.get(name) != old
    ]


# ---- prepare -------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """What :func:`prepare` did: requirements installed, :data:`KEEP` ones left unsatisfied, stale imports."""

    installed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _pins(keep: Iterable[str] = KEEP) -> dict[str, str]:
    """pip constraints that hold :data:`KEEP` where it is: ``==`` the installed version, or ``<0`` (no release)
    where it is not installed, so that a requirement needing it fails rather than bringing in a build."""
    return {name: f"=={v}" if (v := _installed_version(name)) is not None else "<0" for name in keep}


def _pip_install(specs: list[str], *, pins: Mapping[str, str]) -> None:
    """``pip install specs`` into this interpreter with ``pins`` (name → specifier) as constraints; quiet unless
    it fails, then its output's tail goes into the error."""
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "keep.txt"
        constraints.write_text("".join(f"{name}{spec}\n" for name, spec in pins.items()), encoding="utf-8")
        command = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        done = subprocess.run([*command, "-c", str(constraints), *specs], capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        kept = ", ".join(f"{name}{spec}" for name, spec in pins.items())
        raise RuntimeError(f"pip could not install {' '.join(specs)} with {kept} kept:\n{tail}")


def prepare(root: str | Path, folder: str) -> Prepared:
    """Make the course at ``root`` (a clone) work in this kernel, then change into ``root/folder``.

    When a runtime requirement of the course (plus otter-grader for a folder under ``assignments/``) is missing or
    too old, pip installs them all in one resolve (so that, say, an upgraded ``diffusers`` and the ``transformers``
    already there agree on ``huggingface-hub``), quietly, into this interpreter, with :data:`KEEP` pinned where it
    is (:func:`_pins`). Prints what was missing, any :data:`KEEP` requirement left unsatisfied, and each
    distribution whose module this kernel had imported before pip changed it (advice: restart the runtime once,
    then run the notebook again); prints nothing when there is nothing to do. Puts ``root`` on ``PYTHONPATH``
    too, so that commands started from the notebook (``!python -m course_utils.course.cli --help``) import it.
    """
    started = time.perf_counter()
    root = Path(root).resolve()
    extra = ASSIGNMENT_EXTRA if folder.split("/", 1)[0] == "assignments" else ()
    wanted = [*requirements(root), *extra]
    missing, kept = missing_requirements(wanted)
    result = Prepared(kept=kept)
    Requirement, _, _ = _packaging()
    for text in kept:
        name = Requirement(text).name
        have = f"{name} {v}" if (v := _installed_version(name)) else f"no {name}"
        print(f"the course asks for {text} and this runtime has {have}: the course leaves {name} as it is")
    if missing:
        print(f"installing {', '.join(missing)} …", flush=True)
        before = _imported_distributions(list(sys.modules))
        keep = {_canonical(k) for k in KEEP}
        request = [t for t in wanted if _canonical(Requirement(t).name) not in keep and _applies(Requirement(t))]
        _pip_install(request, pins=_pins())
        importlib.invalidate_caches()  # so this kernel's imports see the new files
        result.installed = missing
        result.stale = stale_distributions(before, {name: _installed_version(name) for name in before})
        print(f"installed in {time.perf_counter() - started:.0f} s")
    if result.stale:
        print(
            f"this kernel had already imported {', '.join(result.stale)}: Runtime → Restart session, then run"
            " the notebook again (once)"
        )
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(root) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(root), *paths])
    os.chdir(root / folder)
    result.seconds = time.perf_counter() - started
    return result


# ---- the notebooks' setup cells ------------------------------------------------------------------------


def _title_index(cells: list) -> int:
    for i, cell in enumerate(cells):
        if cell.get("cell_type") == "markdown":
            return i
    raise ValueError("a notebook without a markdown title cell")


def sync_setup_cells(root: str | Path | None = None) -> list[Path]:
    """Write :func:`setup_cell` into every notebook of :data:`NOTEBOOK_GLOBS`, as the code cell right after the
    title (the first markdown cell), with no output: an older setup cell is rewritten (and moved there), a
    notebook without one gets one. Every other cell stays as it is. Returns the notebooks that changed
    (``make setup-cells``)."""
    import nbformat

    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    changed = []
    for path in sorted(p for pattern in NOTEBOOK_GLOBS for p in root.glob(pattern)):
        nb = nbformat.read(path, as_version=4)
        source = setup_cell(path.parent.relative_to(root).as_posix())
        found = [i for i, cell in enumerate(nb.cells) if is_setup_cell(cell)]
        if len(found) > 1:
            raise ValueError(f"{path}: {len(found)} setup cells (cells {found}); keep one")
        cell = nb.cells.pop(found[0]) if found else nbformat.v4.new_code_cell()
        before = (found[0] if found else None, cell.source, list(cell.get("outputs", [])))
        cell.source, cell.outputs = source, []
        at = _title_index(nb.cells) + 1
        nb.cells.insert(at, cell)
        if before != (at, source, []):
            nbformat.write(nb, path)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> None:
    """``python -m course_utils.course.colab``: :func:`sync_setup_cells` on this repository."""
    from course_utils.errors import ArgumentParser

    ArgumentParser(
        prog="python -m course_utils.course.colab",
        description="Write the template's setup cell into every week and assignment notebook that lacks it.",
    ).parse_args(argv)
    changed = sync_setup_cells()
    for path in changed:
        print(f"wrote the setup cell of {path}")
    if not changed:
        print("every notebook's setup cell is the template's")


if __name__ == "__main__":
    main()
