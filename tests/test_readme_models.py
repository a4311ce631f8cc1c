"""The README's table of what each ``make models`` stage costs to train agrees with what the model cards record."""

import json
import re
from pathlib import Path

from course_utils.course.paths import MODELS_DIR, ROOT
from course_utils.models.build import ALL_STAGES

ROW = re.compile(r"^\| `([a-z-]+)` \| `([a-z/*-]+)`[^|]* \| (\d+) s \|$")


def _recorded(record: Path) -> float:
    """Every ``train_seconds`` in one record, summed (a stage of several runs records one per run)."""

    def walk(node) -> float:
        if isinstance(node, dict):
            return sum(v if k == "train_seconds" else walk(v) for k, v in node.items())
        return sum(walk(v) for v in node) if isinstance(node, list) else 0.0

    return walk(json.loads(record.read_text()))


def _stage_seconds(folder: str) -> float:
    """A folder's training time: its ``training.json`` where it has one (the card repeats it), else its
    ``metrics.json``; ``name/*`` sums the subfolders."""
    folders = sorted(MODELS_DIR.glob(folder)) if "*" in folder else [MODELS_DIR / folder]
    assert folders, f"no model folder {folder}"
    total = 0.0
    for path in folders:
        record = path / "training.json" if (path / "training.json").is_file() else path / "metrics.json"
        total += _recorded(record)
    return total


def test_the_readme_gives_each_stage_the_training_time_its_cards_record():
    text = (ROOT / "README.md").read_text()
    rows = {m[1]: (m[2], int(m[3])) for m in map(ROW.match, text.splitlines()) if m}
    assert set(rows) == set(ALL_STAGES), f"stages without a row: {set(ALL_STAGES) - set(rows)}"
    for stage, (folder, seconds) in rows.items():
        assert round(_stage_seconds(folder)) == seconds, f"{stage}: the cards record {_stage_seconds(folder):.0f} s"
    total = sum(seconds for _, seconds in rows.values())
    hours, minutes = divmod(round(total / 600) * 10, 60)  # to the nearest ten minutes
    assert f"adds up to about {hours} h {minutes} min" in " ".join(text.split())
