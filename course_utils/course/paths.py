"""Where the course keeps its files. ``COURSE_ROOT`` overrides the repository root."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from course_utils.errors import CourseError, check_choice

__all__ = ["DATA_DIR", "MODELS_DIR", "ROOT", "WEEKS_DIR", "select_weeks", "week_folders"]

ROOT = Path(os.environ.get("COURSE_ROOT", Path(__file__).resolve().parents[2]))
DATA_DIR = ROOT / "data"
MODELS_DIR = DATA_DIR / "models"
WEEKS_DIR = ROOT / "weeks"


WEEK_FOLDER = re.compile(r"(\d{2})_.+")
"""A week's folder, ``<NN>_<slug>`` (``weeks/01_sampling_loops``, ``assignments/01_sampling_loops``)."""


def week_folders(root: Path) -> dict[str, Path]:
    """Week id ``NN`` → folder, for every ``<root>/<NN>_<slug>/``; two folders for one week are an error."""
    folders: dict[str, Path] = {}
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        match = WEEK_FOLDER.fullmatch(folder.name)
        if not (folder.is_dir() and match):
            continue
        if match[1] in folders:
            raise CourseError(f"two folders for week {match[1]}: {folders[match[1]]} and {folder}")
        folders[match[1]] = folder
    return folders


def select_weeks(weeks: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """Week ids ``weeks`` (``"1"`` or ``"01"``) checked against ``available``; ``None`` selects all of them."""
    if weeks is None:
        return list(available)
    return [check_choice("week", w.strip().zfill(2), available) for w in weeks]
