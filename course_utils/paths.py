"""Where the course keeps its files. ``COURSE_ROOT`` overrides the repository root."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_DIR", "MODELS_DIR", "ROOT", "WEEKS_DIR"]

ROOT = Path(os.environ.get("COURSE_ROOT", Path(__file__).resolve().parents[1]))
DATA_DIR = ROOT / "data"
MODELS_DIR = DATA_DIR / "models"
WEEKS_DIR = ROOT / "weeks"
