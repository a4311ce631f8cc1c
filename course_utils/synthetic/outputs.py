"""What an output folder shows, rebuilt from its journal; the check that it holds; shards merged into one.

    DIR/images/<caption id>.png    one per caption
    DIR/synthetic_captions.csv     file_name, caption, title, caption_id, seed, model, scheduler, clip_score
    DIR/metadata.jsonl             the rows at or above --min_clip_score: datasets.load_dataset("imagefolder",
                                   data_dir=DIR) reads the folder, and week 5's fine-tuning trains on it
    DIR/failed_titles.csv          title_id, title, reason: the titles no valid captions came for
    DIR/manifest.json, DIR/journal.sqlite

The three tables are written whole to a temporary file and renamed (:func:`.journal.write_atomic`), never appended
in place, so a reader never sees half of one. :func:`verify` checks everything the pipeline promises; :func:`merge`
combines the folders of ``--shard I/N`` runs into the folder one unsharded run would have written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course_utils.errors import CourseError
from course_utils.synthetic.ids import caption_id, sort_key, stable_seed
from course_utils.synthetic.journal import (
    JOURNAL,
    ImageRow,
    Journal,
    read_manifest,
    write_atomic,
    write_manifest,
)

__all__ = [
    "CSV",
    "COLUMNS",
    "FAILED",
    "METADATA",
    "OUTPUT_FILES",
    "Verification",
    "merge",
    "publish",
    "read_images",
    "read_rows",
    "verify",
]

CSV = "synthetic_captions.csv"
METADATA = "metadata.jsonl"
FAILED = "failed_titles.csv"
OUTPUT_FILES = (CSV, METADATA, FAILED)
COLUMNS = ("file_name", "caption", "title", "caption_id", "seed", "model", "scheduler", "clip_score")
_IMAGES = "images"


def _rows(journal: Journal, settings: dict[str, Any]) -> list[dict[str, Any]]:
    images = journal.images()
    rows = []
    for c in journal.captions():
        image = images.get(c.caption_id)
        if image is None:
            continue
        score = None if image.clip_score is None else round(image.clip_score, 4)
        rows.append(
            {
                "file_name": image.file,
                "caption": c.caption,
                "title": c.title,
                "caption_id": c.caption_id,
                "seed": c.seed,
                "model": settings["model_id"],
                "scheduler": settings["scheduler"],
                "clip_score": score,
            }
        )
    return sorted(rows, key=lambda r: sort_key(r["caption_id"]))


def _csv_bytes(columns, rows) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else row[k] for k in columns})
    return buffer.getvalue().encode()


def _kept(rows, threshold: float | None) -> list[dict[str, Any]]:
    if threshold is None:
        return list(rows)
    return [r for r in rows if r["clip_score"] is not None and r["clip_score"] >= threshold]


def _metadata_line(row: dict[str, Any]) -> str:
    record = {"file_name": row["file_name"], "text": row["caption"], "title": row["title"]}
    record |= {"caption_id": row["caption_id"], "seed": row["seed"], "clip_score": row["clip_score"]}
    return json.dumps(record, ensure_ascii=False)


def publish(folder: str | Path, journal: Journal) -> list[dict[str, Any]]:
    """Rebuild the CSV, ``metadata.jsonl`` and the failed titles from ``journal``; return the CSV's rows."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    rows = _rows(journal, manifest["settings"])
    write_atomic(folder / CSV, _csv_bytes(COLUMNS, rows))
    kept = _kept(rows, manifest.get("min_clip_score"))
    write_atomic(folder / METADATA, "".join(_metadata_line(r) + "\n" for r in kept).encode())
    failed = [
        {"title_id": tid, "title": title, "reason": reason}
        for tid, (title, status, reason) in journal.titles().items()
        if status == "failed"
    ]
    write_atomic(folder / FAILED, _csv_bytes(("title_id", "title", "reason"), failed))
    return rows


def read_rows(folder: str | Path) -> list[dict[str, Any]]:
    """The rows of ``folder``'s ``synthetic_captions.csv`` (seeds as ``int``, CLIP scores as ``float`` or ``None``)."""
    problems: list[str] = []
    rows = _read_csv(Path(folder) / CSV, problems)
    if problems:
        raise CourseError(f"{folder}: {problems[0]}")
    for row in rows:
        row["seed"] = int(row["seed"])
        row["clip_score"] = float(row["clip_score"]) if row["clip_score"] else None
    return rows


def read_images(folder: str | Path, rows: list[dict[str, Any]]):
    """The images of ``rows`` (from :func:`read_rows`) as a ``uint8`` array ``(N, H, W, 3)``."""
    import numpy as np
    from PIL import Image

    return np.stack([np.asarray(Image.open(Path(folder) / r["file_name"]).convert("RGB")) for r in rows])


# ---------------------------------------------------------------------------------------------- verify


@dataclass
class Verification:
    """What :func:`verify` found: ``problems`` (empty when the folder holds) and its counts."""

    folder: Path
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _read_csv(path: Path, problems: list[str]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                problems.append(f"{path.name} has columns {reader.fieldnames}, expected {list(COLUMNS)}")
                return []
            return list(reader)
    except FileNotFoundError:
        problems.append(f"{path.name} is missing (rerun the same command to rebuild it)")
    except (UnicodeDecodeError, csv.Error) as err:
        problems.append(f"{path.name} is unreadable: {err}")
    return []


def _check_journal(folder: Path, journal: Journal, manifest: dict, problems: list[str]) -> None:
    settings = manifest["settings"]
    n, seed = settings["variations"], settings["seed"]
    titles = journal.titles()
    by_title: dict[str, list] = {}
    for c in journal.captions():
        by_title.setdefault(c.title_id, []).append(c)
        if c.seed != stable_seed(seed, "image", c.caption_id):
            problems.append(f"caption {c.caption_id}: seed {c.seed} is not the seed of its id")
    unfinished = [tid for tid, (_, status, _) in titles.items() if status == "planned"]
    if unfinished:
        problems.append(f"{len(unfinished)} titles are not captioned yet (first: row {int(unfinished[0])}); rerun")
    for tid, (_, status, _) in titles.items():
        got = sorted(c.caption_id for c in by_title.get(tid, []))
        want = sorted(caption_id(tid, k) for k in range(n)) if status == "captioned" else []
        if got != want:
            problems.append(f"title {tid} ({status}) has captions {got}, expected {want}")
    images = journal.images()
    captions = {c.caption_id for rows in by_title.values() for c in rows}
    missing = sorted(captions - set(images), key=sort_key)
    if missing:
        problems.append(f"{len(missing)} captions have no image yet (first: {missing[0]}); rerun")
    problems.extend(journal.duplicates())
    on_disk = {f"{_IMAGES}/{p.name}" for p in (folder / _IMAGES).glob("*")} if (folder / _IMAGES).is_dir() else set()
    for row in images.values():
        path = folder / row.file
        if row.file not in on_disk:
            problems.append(f"{row.file} is recorded but missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != row.sha256:
            problems.append(f"{row.file} differs from the image that was recorded")
    for orphan in sorted(on_disk - {row.file for row in images.values()}):
        problems.append(f"{orphan} has no row in the journal (an orphan)")


def _check_tables(folder: Path, journal: Journal, manifest: dict, problems: list[str]) -> None:
    expected = [{k: "" if v is None else str(v) for k, v in r.items()} for r in _rows(journal, manifest["settings"])]
    found = _read_csv(folder / CSV, problems)
    ids = [r["caption_id"] for r in found]
    for cid in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"{CSV}: caption {cid} has {ids.count(cid)} rows (a duplicate)")
    want = {r["caption_id"]: r for r in expected}
    for row in found:
        if row["caption_id"] not in want:
            problems.append(f"{CSV}: row {row['caption_id']} has no image in the journal")
        elif row != want[row["caption_id"]]:
            problems.append(f"{CSV}: row {row['caption_id']} differs from the journal")
        elif not (folder / row["file_name"]).is_file():
            problems.append(f"{CSV}: {row['file_name']} is missing")
    for cid in sorted(set(want) - set(ids), key=sort_key):
        problems.append(f"{CSV}: image {want[cid]['file_name']} has no row (rerun to rebuild the CSV)")
    if not found and not expected:
        return
    kept = [_metadata_line(r) for r in _kept(_rows(journal, manifest["settings"]), manifest.get("min_clip_score"))]
    try:
        lines = (folder / METADATA).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        problems.append(f"{METADATA} is missing (rerun the same command to rebuild it)")
        return
    for i, line in enumerate(lines, 1):
        try:
            json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"{METADATA} line {i} is not JSON")
    if lines != kept and not any(p.startswith(METADATA) for p in problems):
        problems.append(f"{METADATA} differs from the journal's rows ({len(lines)} lines, expected {len(kept)})")


def verify(folder: str | Path) -> Verification:
    """Check an output folder: every planned title captioned or failed with a reason, each captioned one with
    exactly its ``n`` caption ids, every seed the hash of its id, every caption with its image and every image with
    its caption (recorded bytes unchanged), the CSV and ``metadata.jsonl`` equal to the journal, no row twice.

    Raises:
        CourseError: ``folder`` is not an output folder (no manifest or journal).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CourseError(f"{folder} is not a folder")
    manifest = read_manifest(folder)
    if not (folder / JOURNAL).is_file():
        raise CourseError(f"{folder} is not a synthetic-data output folder: it has no {JOURNAL}")
    report = Verification(folder)
    with Journal(folder / JOURNAL) as journal:
        _check_journal(folder, journal, manifest, report.problems)
        _check_tables(folder, journal, manifest, report.problems)
        report.counts = journal.counts()
    return report


# ---------------------------------------------------------------------------------------------- merge


def merge(out: str | Path, shards: list[str | Path]) -> Verification:
    """Combine shard folders (``--shard I/N`` runs with one fingerprint) into ``out`` (new or empty): the folder one
    unsharded run writes: the same rows, sorted by caption id, the same image bytes.

    Raises:
        CourseError: a shard that does not verify, shards of other settings or of the same ``I``, titles held twice,
            or a non-empty ``out``.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CourseError(f"merge writes into a new or empty folder; {out} is not empty")
    if not shards:
        raise CourseError("merge needs at least one shard folder")
    manifests = []
    for shard in shards:
        report = verify(shard)
        if not report.ok:
            raise CourseError(f"shard {shard} does not verify ({report.problems[0]}); finish or fix it first")
        manifests.append(read_manifest(Path(shard)))
    first = manifests[0]
    for shard, manifest in zip(shards, manifests, strict=True):
        if manifest["fingerprint"] != first["fingerprint"]:
            raise CourseError(f"shard {shard} was made with other settings than {shards[0]}: they cannot be merged")
        if (manifest["plan"]["input_sha256"], manifest["plan"]["limit"]) != (
            first["plan"]["input_sha256"],
            first["plan"]["limit"],
        ):
            raise CourseError(f"shard {shard} read another input or --limit than {shards[0]}")
    parts = [tuple(m["plan"]["shard"] or (0, 1)) for m in manifests]
    if len({p[1] for p in parts}) != 1 or len(set(parts)) != len(parts):
        raise CourseError(
            f"the shards must be distinct parts I/N of one N, got {['/'.join(map(str, p)) for p in parts]}"
        )
    # built beside `out` and renamed into place: a merge killed half-way leaves no half-merged `out`, and the same
    # command starts it again
    building = out.with_name(f".{out.name}.merging")
    shutil.rmtree(building, ignore_errors=True)
    (building / _IMAGES).mkdir(parents=True)
    complete = len(parts) == parts[0][1]
    plan = dict(first["plan"], shard=None if complete else [list(p) for p in sorted(parts)])
    plan["titles"] = sum(m["plan"]["titles"] for m in manifests)
    write_manifest(building, dict(first, plan=plan))
    with Journal(building / JOURNAL) as merged:
        for shard in shards:
            with Journal(Path(shard) / JOURNAL) as journal:
                _copy(Path(shard), journal, building, merged)
        publish(building, merged)
    if out.exists():
        out.rmdir()  # empty, checked above
    building.rename(out)
    return verify(out)


def _copy(folder: Path, journal: Journal, out: Path, merged: Journal) -> None:
    titles = journal.titles()
    held = merged.titles()
    twice = set(titles) & set(held)
    if twice:
        raise CourseError(f"title {min(twice)} is in two shards")
    merged.plan((tid, t[0]) for tid, t in titles.items())
    by_title: dict[str, list] = {}
    for c in journal.captions():
        by_title.setdefault(c.title_id, []).append((c.caption_id, c.k, c.caption, c.seed))
    attempts = dict(journal.db.execute("SELECT title_id, attempts FROM titles"))
    for tid, (_, status, reason) in titles.items():
        if status == "failed":
            merged.record_failure(tid, reason, attempts=attempts[tid])
        elif status == "captioned":
            merged.record_captions(tid, by_title[tid], attempts=attempts[tid])
    for row in journal.images().values():
        write_atomic(out / row.file, (folder / row.file).read_bytes())
        merged.record_image(ImageRow(row.caption_id, row.file, row.sha256, row.clip_score, row.seconds))
