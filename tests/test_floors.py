"""The floors of the house (``course_utils/__init__.py``, ``../shared/DESIGN.md``), read from every import with ``ast``.

- ``sampling`` is pure algorithms: it imports none of ``sd``, ``models``, ``course``, ``training``, ``denoisers``,
  ``studies``, ``metrics`` or ``plotting``;
- the things (``models``, ``data``) import no choosing or face module of ``sd`` or ``course`` (``course.paths``,
  where the files live, is allowed);
- nothing imports a face (the command-line modules) but the ``diffusion-course`` dispatcher, which loads them by
  name;
- every wing's ``__init__`` says what it holds.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "course_utils"
FACES = {
    "course_utils.course.run",
    "course_utils.course.grade",
    "course_utils.course.cli",
    "course_utils.sd.generate",
    "course_utils.sd.sweep",
    "course_utils.models.build",
    "course_utils.training.train",
    "course_utils.training.finetune",
}
WINGS = ("sampling", "sd", "models", "data", "training", "course", "synthetic")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every ``course_utils`` module ``path`` imports (at the top or inside a function): for ``from a import b``
    both ``a`` and ``a.b`` when ``a.b`` is a module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    modules = set(MODULES) | {m.rsplit(".", 1)[0] for m in MODULES}
    return {n for n in names if n.startswith("course_utils") and n in modules}


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
IMPORTS = {name: imported(path) for name, path in MODULES.items()}


def in_wing(module: str, *wings: str) -> bool:
    return any(module == f"course_utils.{w}" or module.startswith(f"course_utils.{w}.") for w in wings)


def test_the_imports_are_read():
    """The reader sees real imports (a test that cannot fail is no test)."""
    assert "course_utils.sampling.diffusion" in IMPORTS["course_utils.sampling.editing"]
    assert "course_utils.sd.pipeline" in IMPORTS["course_utils.sd.sweep_study"]
    assert "course_utils.sd.sweep_study" in IMPORTS["course_utils.sd.sweep"]  # from a function body too


@pytest.mark.parametrize("module", sorted(m for m in MODULES if in_wing(m, "sampling")))
def test_sampling_is_pure_algorithms(module):
    above = {
        m
        for m in IMPORTS[module]
        if in_wing(m, "sd", "models", "course", "training")
        or m in {"course_utils.denoisers", "course_utils.studies", "course_utils.metrics", "course_utils.plotting"}
    }
    assert not above, f"{module} imports {sorted(above)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if in_wing(m, "models", "data") and m not in FACES))
def test_things_import_no_choosing_or_face(module):
    above = {m for m in IMPORTS[module] if in_wing(m, "sd", "course") and m != "course_utils.course.paths"}
    assert not above, f"{module} imports {sorted(above)}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_nothing_imports_a_face(module):
    faces = IMPORTS[module] & FACES
    assert not faces, f"{module} imports the command-line module(s) {sorted(faces)}: move the core it needs out"


@pytest.mark.parametrize("wing", WINGS)
def test_every_wing_says_what_it_holds(wing):
    doc = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text(encoding="utf-8")))
    assert doc and "import" in doc, f"course_utils/{wing}/__init__.py needs a docstring saying what it may import"
    for module in (PACKAGE / wing).glob("*.py"):
        if module.stem != "__init__":
            assert f"``{module.stem}``" in doc, f"course_utils/{wing}/__init__.py does not mention {module.stem}"


def test_the_top_level_stays_small():
    top = sorted(p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file())
    # the __init__, eight shared modules at most, and DESIGN.md's seven wings
    assert len(top) <= 15, f"{len(top)} entries at the top of course_utils: {top}"
