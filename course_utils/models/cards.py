"""Model cards' measured numbers: ``metrics.json`` beside a model, written by every ``make models`` stage."""

from __future__ import annotations

import json
import os
from pathlib import Path

from course_utils.stats import Estimate

__all__ = ["write_metrics"]


def write_metrics(path: Path, metrics: dict) -> dict:
    """Write ``path/metrics.json`` (estimates as their records); without a fresh ``train_seconds`` keep the one the
    last training run measured, so ``--eval-only`` does not lose it. Returns ``metrics`` as written."""
    file = path / "metrics.json"
    if "train_seconds" not in metrics and file.is_file():
        previous = json.loads(file.read_text()).get("train_seconds")
        if previous is not None:
            metrics["train_seconds"] = previous
    tmp = file.with_name(f".{file.name}.tmp")  # whole or not at all: a killed stage leaves the last card's numbers
    tmp.write_text(json.dumps(metrics, indent=2, default=Estimate.record) + "\n")
    os.replace(tmp, file)
    return metrics
