"""Stable ids, seeds and shards: what makes a resumed or sharded run draw exactly what an uninterrupted one draws.

A title's id is its row in the input (``"000012"``), a caption's id is ``"<title id>-<k>"`` (``"000012-2"``: the
title's third variation). Every random draw is seeded by a hash of the run's seed and an id, never by a running
counter, and a title belongs to shard ``sha256(title id) mod N``: so whichever items a process happens to work on,
in whatever order, after whatever interruption, each item gets the same seed and the same batch companions.
"""

from __future__ import annotations

import hashlib

from course_utils.errors import CourseError

__all__ = ["caption_id", "parse_caption_id", "parse_shard", "shard_of", "sort_key", "stable_seed", "title_id"]

_SEED_SPACE = 2**32  # seeds stay below 2³²: exact in a CSV, in numpy and in torch.Generator.manual_seed


def title_id(row: int) -> str:
    """The id of the input's row ``row`` (0-based): six digits, zero-padded, so ids sort as rows do."""
    if row < 0:
        raise CourseError(f"a row number is ≥ 0, got {row}")
    return f"{row:06d}"


def caption_id(title: str, k: int) -> str:
    """The id of title ``title``'s ``k``-th variation (0-based)."""
    return f"{title}-{k}"


def parse_caption_id(cid: str) -> tuple[str, int]:
    """``"000012-2"`` → ``("000012", 2)``."""
    title, _, k = cid.rpartition("-")
    if not title or not k.isdigit():
        raise CourseError(f"{cid!r} is not a caption id (title id, '-', variation number)")
    return title, int(k)


def sort_key(cid: str) -> tuple[int, int]:
    """Caption ids in the order of their rows and variations (``"000100-0"`` after ``"000099-9"``)."""
    title, k = parse_caption_id(cid)
    return int(title), k


def stable_seed(seed: int, *parts: object) -> int:
    """A seed in ``[0, 2³²)`` from the run's ``seed`` and the item's ``parts`` (a stage name, an id, an attempt):
    the first 8 bytes of ``sha256("seed|part|part…")``."""
    text = "|".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % _SEED_SPACE


def shard_of(tid: str, n_shards: int) -> int:
    """The shard (``0 … n_shards − 1``) that title ``tid`` and all its captions belong to."""
    return int.from_bytes(hashlib.sha256(tid.encode()).digest()[:8], "big") % n_shards


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` (I counts from 0) → ``(I, N)``; ``None`` stays ``None`` (no sharding)."""
    if text is None:
        return None
    index, slash, count = str(text).partition("/")
    if not slash or not index.strip().isdigit() or not count.strip().isdigit():
        raise CourseError(f"--shard takes I/N with whole numbers, I counting from 0 (e.g. 0/4), got {text!r}")
    i, n = int(index), int(count)
    if n < 1 or i >= n:
        raise CourseError(f"--shard {text}: N must be ≥ 1 and I one of 0 … N−1")
    return i, n
