"""``diffusion-course``: one command, a subcommand per face, each the parser of its ``python -m`` form."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from course_utils.course import cli

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_console_script_is_declared_and_installed():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"diffusion-course": "course_utils.course.cli:main"}
    exe = shutil.which("diffusion-course", path=str(Path(sys.executable).parent))
    assert exe, "diffusion-course is not installed beside this Python (run make setup)"
    done = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert all(name in done.stdout for name in cli.COMMANDS)


def test_help_lists_every_command_with_one_line(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    commands = {"run", "generate", "sweep", "models", "train", "finetune", "synthetic", "assign", "grade", "bench"}
    assert set(lines) == set(cli.COMMANDS) == commands
    assert all(len(line.split()) > 3 for line in lines.values())  # a summary, not just a name


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_subcommand_has_help(capsys, name):
    code, out, err = run_cli(capsys, name, "--help")
    assert code == 0, err
    assert out.startswith(f"usage: diffusion-course {name}"), out[:200]


@pytest.mark.parametrize(
    ("name", "module", "prefix"),
    [(name, c.module, c.prefix) for name, c in cli.COMMANDS.items() if not c.module.startswith("benchmarks")],
)
def test_a_subcommand_is_the_parser_of_its_module(capsys, name, module, prefix):
    """The same options as ``python -m <module>`` (only the program name differs)."""
    import importlib

    _, ours, _ = run_cli(capsys, name, "--help")
    try:
        importlib.import_module(module).main([*prefix, "--help"])
    except SystemExit:
        pass
    theirs = capsys.readouterr().out
    assert theirs.split("\n", 1)[1] == ours.split("\n", 1)[1] or _options(theirs) == _options(ours)
    assert _options(ours), ours


def _options(text: str) -> list[str]:
    return sorted(word for word in text.split() if word.startswith("--"))


@pytest.mark.parametrize("argv", [["trian"], ["gnerate", "--prompt", "x"], ["--weeks", "01"]])
def test_an_unknown_command_is_one_line_naming_the_valid_ones(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert f"unknown command {argv[0]!r}" in err
    assert "run, generate, sweep, models, train, finetune, synthetic, assign, grade, bench" in err


def test_no_command_prints_the_usage_and_exits_2(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 2 and "commands:" in out


def test_an_unknown_option_of_a_subcommand_is_one_line(capsys):
    code, _, err = run_cli(capsys, "generate", "--promt", "a red circle")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "diffusion-course generate" in err


def test_the_course_root_is_the_repository():
    from course_utils.course.paths import MODELS_DIR, ROOT, WEEKS_DIR

    assert ROOT == Path(__file__).resolve().parents[1]
    assert (ROOT / "pyproject.toml").is_file() and WEEKS_DIR.is_dir() and MODELS_DIR.is_dir()
