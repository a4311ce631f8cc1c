"""Run the week notebooks headlessly with papermill: ``python -m course_utils.course.run`` (``make run``).

    make run ARGS="--weeks 01,03 --profile offline -p seed=1"
    python -m course_utils.course.run --list

A notebook is ``weeks/<NN>_<slug>/<name>.ipynb``; ``NN`` is its week. Each one runs on a fresh kernel of
*this* interpreter, in its own folder, with ``MPLBACKEND=Agg``, and gets ``profile`` (when its parameters
cell declares it) and the ``-p`` overrides injected. The input is checked before anything runs: the weeks,
the profile, every ``-p`` key against every selected notebook, and the device. A failing notebook does
not stop the others. Executed notebooks go to ``<out>/<week folder>/<name>.ipynb`` and ``<out>/report.json``
is rewritten after every notebook. Exit code 0 when all ran, 1 when any failed, 2 for a mistake in the input.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import papermill
import zmq
from ipykernel.kernelspec import get_kernel_dict
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec
from papermill.exceptions import PapermillExecutionError
from tqdm.auto import tqdm
from traitlets import default

from course_utils.course.parameters import Parameter, check_value
from course_utils.course.paths import WEEKS_DIR, select_weeks, week_folders
from course_utils.course.profiles import MODEL_FIELDS, PROFILES, get_profile
from course_utils.errors import ArgumentParser, CourseError, main_guard
from course_utils.runtime import HEADLESS_ENV

__all__ = ["WeekNotebook", "discover", "main", "parse_parameter", "run_notebooks", "select"]

DEFAULT_OUT = Path("build/executed")
KERNEL_ENV = {"MPLBACKEND": "Agg", HEADLESS_ENV: "1"}


class RunnerKernelManager(AsyncKernelManager):
    """An IPython kernel on ``sys.executable`` (whatever kernel specs are installed) with :data:`KERNEL_ENV`.

    Its sockets are CurveZMQ-encrypted where pyzmq supports it, which also keeps each kernel from warning
    about plain-text TCP on the terminal.
    """

    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(**get_kernel_dict(), env=KERNEL_ENV)

    @default("transport_encryption")
    def _encrypt_when_possible(self) -> str:
        return "auto" if zmq.has("curve") else "disabled"


@dataclass(frozen=True)
class WeekNotebook:
    """A notebook of a week: ``week`` is the ``NN`` of its folder, ``parameters`` as papermill infers them."""

    week: str
    path: Path

    @cached_property
    def parameters(self) -> dict[str, dict[str, Any]]:
        """``{name: {name, inferred_type_name, default, help}}`` from the cell tagged ``parameters``."""
        try:
            return papermill.inspect_notebook(str(self.path))
        except Exception as err:  # not valid JSON, or a parameters cell papermill cannot parse
            raise CourseError(
                f"cannot read the parameters of {self.path}: {_one_line(type(err).__name__, str(err))}"
            ) from err

    def display_path(self, weeks_dir: Path) -> str:
        """The path as the report shows it, e.g. ``weeks/01_intro/a.ipynb``."""
        return self.path.relative_to(weeks_dir.parent).as_posix()


def discover(weeks_dir: Path) -> list[WeekNotebook]:
    """Every ``<weeks_dir>/<NN>_<slug>/*.ipynb``, sorted (checkpoint folders are never looked into)."""
    if not weeks_dir.is_dir():
        raise CourseError(f"no weeks folder at {weeks_dir}")
    folders = week_folders(weeks_dir)
    found = [WeekNotebook(week, path) for week, folder in folders.items() for path in sorted(folder.glob("*.ipynb"))]
    if not found:
        raise CourseError(f"no notebooks under {weeks_dir}/<NN>_<slug>/")
    return found


def select(notebooks: Sequence[WeekNotebook], *, weeks: Sequence[str] | None) -> list[WeekNotebook]:
    """The notebooks of ``weeks`` (``None``: all); an unknown week is an error naming the available ones."""
    available = sorted({nb.week for nb in notebooks})
    wanted = select_weeks(weeks, available)
    return [nb for nb in notebooks if nb.week in wanted]


def parse_parameter(text: str) -> tuple[str, Any]:
    """``key=value`` → ``(key, value)``; the value is a Python literal if it parses as one, else the raw string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise CourseError(f"-p expects key=value with a Python name as key, got {text!r}")
    try:
        return key, ast.literal_eval(raw)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return key, raw


def _injectable(value: Any) -> bool:
    if isinstance(value, list):
        return all(map(_injectable, value))
    if isinstance(value, dict):
        return all(isinstance(k, str) and _injectable(v) for k, v in value.items())
    return value is None or isinstance(value, bool | int | float | str)


def _check_parameters(notebooks: Sequence[WeekNotebook], *, weeks_dir: Path, parameters: dict[str, Any]) -> None:
    if "profile" in parameters:
        raise CourseError("choose the profile with --profile, not -p profile=...")
    for key, value in parameters.items():
        if not _injectable(value):
            raise CourseError(f"-p {key}={value!r}: papermill injects None, bool, int, float, str, list and dict only")
    for nb in notebooks:
        unknown = sorted(set(parameters) - set(nb.parameters))
        if unknown:
            valid = ", ".join(nb.parameters) or "none (it has no cell tagged 'parameters')"
            raise CourseError(
                f"unknown parameter {unknown[0]!r} for {nb.display_path(weeks_dir)}; valid parameters: {valid}"
            )
        for key, value in parameters.items():  # the default's type, the range its comment declares
            check_value(Parameter.from_papermill(nb.parameters[key]), value, where=nb.display_path(weeks_dir))


def _check_device(*, profile: str, parameters: dict[str, Any]) -> None:
    """The device the run will ask for must be here: ``-p device`` unless it is ``None``, else the profile's."""
    from course_utils.runtime import resolve_device  # imports torch (a second): keep --list and typos quick

    requested = parameters.get("device")
    source = "-p device" if requested is not None else f"profile {profile!r}"
    try:
        resolve_device(str(requested if requested is not None else get_profile(profile).device))
    except CourseError as err:
        raise CourseError(f"{source}: {err}") from err


def _check_models(*, profile: str, parameters: dict[str, Any]) -> None:
    """Every model the run will load must resolve: a course model's files present, an id the registry knows."""
    from course_utils.course.registry import resolve

    chosen = get_profile(profile)
    for field in MODEL_FIELDS:
        requested = parameters.get(field)
        source = f"-p {field}" if requested is not None else f"profile {profile!r}"
        try:
            resolve(str(requested if requested is not None else getattr(chosen, field)))
        except CourseError as err:
            raise CourseError(f"{source}: {err}") from err


def _one_line(name: str, message: str) -> str:
    message = " ".join(message.split())
    return f"{name}: {message}" if message else name


def _execute(
    nb: WeekNotebook, *, output: Path, profile: str, parameters: dict[str, Any], timeout: int | None
) -> dict[str, Any]:
    """Run one notebook; its failure is returned, not raised.

    ``failed_cell`` is papermill's index of the failing cell: it counts the injected-parameters cell, not the
    error banners papermill adds to the saved notebook. A timeout or a dead kernel leaves it ``None``.
    """
    injected = ({"profile": profile} if "profile" in nb.parameters else {}) | parameters
    failed_cell, error = None, None
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.stem}.part{output.suffix}")  # papermill saves as it goes: keep it aside
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(nb.path),
            str(partial),
            parameters=injected,
            kernel_name="python3",
            language="python",
            cwd=str(nb.path.parent),
            progress_bar=False,
            log_output=False,
            execution_timeout=timeout,
            kernel_manager_class=RunnerKernelManager,
        )
    except PapermillExecutionError as err:
        failed_cell, error = err.cell_index, _one_line(err.ename, err.evalue)
    except Exception as err:  # a cell timeout, a dead kernel: this notebook failed, the others still run
        error = _one_line(type(err).__name__, str(err))
    seconds = time.perf_counter() - started
    if partial.is_file():  # also a failed run's: its error banners show where it stopped
        partial.replace(output)
    status = "ok" if error is None else "failed"
    return {"status": status, "seconds": round(seconds, 3), "failed_cell": failed_cell, "error": error}


def _write_report(report: dict[str, Any], out: Path) -> None:
    statuses = [entry["status"] for entry in report["notebooks"]]
    report["ok"], report["failed"] = statuses.count("ok"), statuses.count("failed")
    partial = out / "report.json.part"
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(out / "report.json")


def run_notebooks(
    *,
    weeks_dir: Path,
    weeks: Sequence[str] | None,
    profile: str,
    parameters: dict[str, Any],
    out: Path,
    timeout: int | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Check the input, then run the selected notebooks one by one; return the report (also in ``out/report.json``).

    Args:
        weeks_dir: the folder holding ``<NN>_<slug>/`` week folders.
        weeks: week ids such as ``["01", "03"]``; ``None`` runs every week.
        profile: a name in :data:`course_utils.course.profiles.PROFILES`, injected as ``profile`` where declared.
        parameters: overrides injected into every notebook; each must be a parameter of each notebook.
        out: where the executed notebooks and ``report.json`` go.
        timeout: seconds allowed per cell; ``None`` for no limit.
        resume: keep what the last run into ``out`` finished (its report's ``ok`` notebooks whose executed copy is
            there) and run only the rest; the last run must have had the same profile and parameters.

    Returns:
        ``{"profile", "parameters", "notebooks": [{"path", "week", "status", "seconds", "failed_cell", "error"}],
        "ok", "failed"}``; ``status`` is ``ok`` or ``failed`` and ``error`` one line such as ``ValueError: boom``.
    """
    weeks_dir, out = Path(weeks_dir).resolve(), Path(out).resolve()
    get_profile(profile)
    notebooks = select(discover(weeks_dir), weeks=weeks)
    _check_parameters(notebooks, weeks_dir=weeks_dir, parameters=parameters)
    _check_device(profile=profile, parameters=parameters)
    _check_models(profile=profile, parameters=parameters)
    out.mkdir(parents=True, exist_ok=True)
    finished = _finished(out, profile=profile, parameters=parameters) if resume else {}
    report: dict[str, Any] = {"profile": profile, "parameters": dict(parameters), "notebooks": []}
    bar = tqdm(notebooks, desc="notebooks", unit="nb")
    for nb in bar:
        bar.set_postfix_str(nb.path.name)
        output = out / nb.path.parent.name / nb.path.name
        path = nb.display_path(weeks_dir)
        if path in finished and output.is_file():
            report["notebooks"].append({**finished[path], "resumed": True})
            continue
        result = _execute(nb, output=output, profile=profile, parameters=parameters, timeout=timeout)
        report["notebooks"].append({"path": path, "week": nb.week, **result})
        _write_report(report, out)
    _write_report(report, out)
    return report


def _finished(out: Path, *, profile: str, parameters: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Path → report entry of each notebook the last run into ``out`` finished without error (nothing when there
    was no last run); a last run with another profile or other parameters is an error, not a silent rerun."""
    file = out / "report.json"
    if not file.is_file():
        return {}
    try:
        last = json.loads(file.read_text())
    except json.JSONDecodeError:
        raise CourseError(f"--resume: {file} is not a report of this runner; remove it or drop --resume") from None
    if last.get("profile") != profile or last.get("parameters") != parameters:
        raise CourseError(
            f"--resume: the last run into {out} had profile {last.get('profile')!r} and parameters"
            f" {last.get('parameters')}, this one {profile!r} and {parameters}; drop --resume or choose another --out"
        )
    return {e["path"]: e for e in last.get("notebooks", []) if e.get("status") == "ok"}


def _print_listing(notebooks: Sequence[WeekNotebook], *, weeks_dir: Path) -> None:
    for nb in notebooks:
        print(f"{nb.week}  {nb.display_path(weeks_dir)}")
        for name, param in nb.parameters.items():
            note = f"  # {param['help']}" if param.get("help") else ""
            print(f"      {name} = {param['default']}{note}")


def _print_summary(report: dict[str, Any], *, out: Path) -> None:
    rows = [("notebook", "status", "seconds", "error")]
    for e in report["notebooks"]:
        status = e["status"] + (" (kept)" if e.get("resumed") else "")
        rows.append((e["path"], status, f"{e['seconds']:.1f}", _clip(e["error"] or "")))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, [*widths, 0], strict=True)).rstrip())
    print(f"{report['ok']} ok, {report['failed']} failed; report in {out / 'report.json'}")


def _clip(text: str, width: int = 100) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _week_list(text: str) -> list[str]:
    weeks = [w.strip() for w in text.split(",") if w.strip()]
    if not weeks or not all(w.isdigit() for w in weeks):
        raise argparse.ArgumentTypeError(f"expected week numbers such as 01,03, got {text!r}")
    return weeks


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds above 0, got {text!r}")
    return int(text)


def build_parser(prog: str | None = None) -> ArgumentParser:
    """The command line of ``python -m course_utils.course.run``."""
    parser = ArgumentParser(
        prog=prog or "python -m course_utils.course.run",
        description="Run the week notebooks headlessly with papermill.",
    )
    parser.add_argument("--weeks", type=_week_list, help="comma-separated week ids, e.g. 01,03 (default: all)")
    parser.add_argument("--profile", default="offline", help=f"one of {', '.join(PROFILES)} (default: offline)")
    parser.add_argument(
        "-p",
        dest="parameters",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a notebook parameter; VALUE is a Python literal or else a string (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--timeout", type=_positive_int, metavar="SECONDS", help="time limit per cell")
    parser.add_argument(
        "--weeks-dir",
        type=Path,
        default=WEEKS_DIR,
        help=f"folder of the <NN>_<slug> week folders (default: {WEEKS_DIR})",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the notebooks the last run into --out finished and run the rest (same profile and parameters)",
    )
    parser.add_argument("--list", action="store_true", help="list the notebooks and their parameters, then exit")
    return parser


@main_guard
def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input comes from :func:`main_guard`)."""
    args = build_parser(prog).parse_args(argv)
    if args.list:
        weeks_dir = args.weeks_dir.resolve()
        _print_listing(select(discover(weeks_dir), weeks=args.weeks), weeks_dir=weeks_dir)
        return 0
    parameters = dict(parse_parameter(text) for text in args.parameters)
    report = run_notebooks(
        weeks_dir=args.weeks_dir,
        weeks=args.weeks,
        profile=args.profile,
        parameters=parameters,
        out=args.out,
        timeout=args.timeout,
        resume=args.resume,
    )
    _print_summary(report, out=args.out)
    return 0 if report["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
