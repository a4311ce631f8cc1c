"""Model cards' measured numbers: ``metrics.json`` beside a model, written by every ``make models`` stage."""

from __future__ import annotations

import json
import os
from pathlib import Path

from course_utils.stats import Estimate

__all__ = ["write_metrics"]


TRAINING_RECORDS = ("train_seconds", "train_steps")
"""What only a training run knows, kept in ``metrics.json`` across ``--eval-only`` runs."""


def write_metrics(path: Path, metrics: dict) -> dict:
    """Write ``path/metrics.json`` (estimates as their records); without a fresh ``train_seconds`` or
    ``train_steps`` keep those the last training run recorded, so ``--eval-only`` neither loses them nor claims
    what it did not run. Returns ``metrics`` as written."""
    file = path / "metrics.json"
    previous = json.loads(file.read_text()) if file.is_file() else {}
    for key in TRAINING_RECORDS:
        if key not in metrics and previous.get(key) is not None:
            metrics[key] = previous[key]
    tmp = file.with_name(f".{file.name}.tmp")  # whole or not at all: a killed stage leaves the last card's numbers
    tmp.write_text(json.dumps(metrics, indent=2, default=Estimate.record) + "\n")
    os.replace(tmp, file)
    return metrics
