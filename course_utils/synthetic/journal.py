"""The run's durable record: a SQLite journal (one committed transaction per item) and a settings manifest.

Tables, each keyed by an id, so an item is recorded once or not at all:

- ``titles``  (title_id PK, title, status ``planned`` | ``captioned`` | ``failed``, reason): the plan and stage 1;
- ``captions`` (caption_id PK, title_id, k, caption, seed): written with their title's status in one transaction;
- ``images``  (caption_id PK, file, sha256, clip_score, seconds): stage 2, one transaction per image, written
  only after the PNG is in place (:func:`write_png`: a temporary file, fsync, rename).

SQLite commits atomically and survives a killed process (rollback journal, ``synchronous=FULL``), so a run killed
with SIGKILL at any moment leaves every item either recorded with its file or not recorded at all; an image file
without its row (killed between rename and commit) is rendered again, to the same bytes, on resume.

The manifest (``manifest.json``, written by rename) holds the settings that decide what is drawn and their
fingerprint (:func:`fingerprint`); a folder is resumed only with the same fingerprint.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from course_utils.errors import CourseError

__all__ = [
    "FORMAT",
    "JOURNAL",
    "MANIFEST",
    "CaptionRow",
    "ImageRow",
    "Journal",
    "fingerprint",
    "png_bytes",
    "read_manifest",
    "recorded_images",
    "write_atomic",
    "write_manifest",
    "write_png",
]

FORMAT = "diffusion-course synthetic 1"
JOURNAL = "journal.sqlite"
MANIFEST = "manifest.json"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS titles (
    title_id TEXT PRIMARY KEY, title TEXT NOT NULL, status TEXT NOT NULL, reason TEXT, attempts INTEGER
);
CREATE TABLE IF NOT EXISTS captions (
    caption_id TEXT PRIMARY KEY, title_id TEXT NOT NULL REFERENCES titles(title_id), k INTEGER NOT NULL,
    caption TEXT NOT NULL, seed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    caption_id TEXT PRIMARY KEY REFERENCES captions(caption_id), file TEXT NOT NULL UNIQUE, sha256 TEXT NOT NULL,
    clip_score REAL, seconds REAL
);
"""


# ---------------------------------------------------------------------------------------------- files


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: a temporary sibling, fsync, rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def png_bytes(image: Image.Image) -> bytes:
    """The PNG encoding of ``image`` (deterministic for the same pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: Path, image: Image.Image | bytes) -> str:
    """Write ``image`` atomically as PNG at ``path``; return the sha256 of its bytes."""
    data = image if isinstance(image, bytes) else png_bytes(image)
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def fingerprint(settings: Mapping[str, Any]) -> str:
    """sha256 (16 hex digits) of the settings as canonical JSON."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    write_atomic(folder / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an output folder; :class:`CourseError` when ``folder`` is not one."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise CourseError(f"{folder} is not a synthetic-data output folder: it has no {MANIFEST}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CourseError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CourseError(f"{path} is not a manifest of this pipeline (format {FORMAT!r})")
    return manifest


# ---------------------------------------------------------------------------------------------- the journal


@dataclass(frozen=True)
class CaptionRow:
    caption_id: str
    title_id: str
    k: int
    caption: str
    seed: int
    title: str


@dataclass(frozen=True)
class ImageRow:
    caption_id: str
    file: str
    sha256: str
    clip_score: float | None
    seconds: float | None


class Journal:
    """The SQLite journal of one output folder (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)  # explicit transactions below
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self, statements: Iterable[tuple[str, tuple]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                self.db.execute(sql, args)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # the plan
    def plan(self, titles: Iterable[tuple[str, str]]) -> None:
        """Record planned titles ``(title_id, title)``; titles already recorded are left as they are."""
        self._transaction(
            ("INSERT OR IGNORE INTO titles (title_id, title, status) VALUES (?, ?, 'planned')", (tid, title))
            for tid, title in titles
        )

    def titles(self) -> dict[str, tuple[str, str, str | None]]:
        """``title_id → (title, status, reason)``."""
        rows = self.db.execute("SELECT title_id, title, status, reason FROM titles ORDER BY title_id")
        return {tid: (title, status, reason) for tid, title, status, reason in rows}

    # stage 1
    def record_captions(self, tid: str, captions: Iterable[tuple[str, int, str, int]], *, attempts: int) -> None:
        """Title ``tid``'s captions ``(caption_id, k, caption, seed)`` and its status, in one transaction."""
        statements = [
            ("INSERT INTO captions (caption_id, title_id, k, caption, seed) VALUES (?, ?, ?, ?, ?)", (c, tid, k, t, s))
            for c, k, t, s in captions
        ]
        statements.append(("UPDATE titles SET status='captioned', attempts=? WHERE title_id=?", (attempts, tid)))
        self._transaction(statements)

    def record_failure(self, tid: str, reason: str, *, attempts: int) -> None:
        self._transaction(
            [("UPDATE titles SET status='failed', reason=?, attempts=? WHERE title_id=?", (reason, attempts, tid))]
        )

    def captions(self) -> list[CaptionRow]:
        rows = self.db.execute(
            "SELECT c.caption_id, c.title_id, c.k, c.caption, c.seed, t.title FROM captions c"
            " JOIN titles t USING (title_id) ORDER BY c.title_id, c.k"
        )
        return [CaptionRow(*row) for row in rows]

    # stage 2
    def record_image(self, row: ImageRow) -> None:
        self._transaction(
            [
                (
                    "INSERT INTO images (caption_id, file, sha256, clip_score, seconds) VALUES (?, ?, ?, ?, ?)",
                    (row.caption_id, row.file, row.sha256, row.clip_score, row.seconds),
                )
            ]
        )

    def images(self) -> dict[str, ImageRow]:
        rows = self.db.execute("SELECT caption_id, file, sha256, clip_score, seconds FROM images")
        return {row[0]: ImageRow(*row) for row in rows}

    def counts(self) -> dict[str, int]:
        one = self.db.execute
        return {
            "titles": one("SELECT COUNT(*) FROM titles").fetchone()[0],
            "failed": one("SELECT COUNT(*) FROM titles WHERE status='failed'").fetchone()[0],
            "captions": one("SELECT COUNT(*) FROM captions").fetchone()[0],
            "images": one("SELECT COUNT(*) FROM images").fetchone()[0],
        }

    def duplicates(self) -> Iterator[str]:
        """Problems SQLite's keys should make impossible (a hand-edited journal): one file for two captions."""
        for file, n in self.db.execute("SELECT file, COUNT(*) FROM images GROUP BY file HAVING COUNT(*) > 1"):
            yield f"{file} is recorded for {n} captions"


def recorded_images(folder: str | Path) -> int:
    """How many images ``folder``'s journal holds, read without writing (0 before the journal exists): what another
    process may watch while a run works."""
    try:
        with sqlite3.connect(f"file:{Path(folder) / JOURNAL}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    except sqlite3.Error:  # no journal yet
        return 0
