"""COCO captions → a Hugging Face ``imagefolder``: the captioned data set a text-to-image fine-tune reads.

COCO (Lin et al. 2014, "Microsoft COCO: Common Objects in Context", arXiv:1405.0312) ships its captions (Chen et
al. 2015, "Microsoft COCO Captions", arXiv:1504.00325) as ``captions_*.json`` (``images``: ``id``, ``file_name``;
``annotations``: ``id``, ``image_id``, ``caption``; about five per image) and its objects as ``instances_*.json``
(``categories``: ``id``, ``name`` such as ``"dog"``; ``annotations``: ``image_id``, ``category_id``, ``bbox``, …).
Hugging Face's ``imagefolder`` wants the images in one folder beside a ``metadata.jsonl`` with one JSON object a
line (``file_name`` relative to the folder, ``text``), which ``datasets.load_dataset("imagefolder", data_dir=…)``
and diffusers' ``train_text_to_image.py`` read. One function per step:

1. :func:`read_json`: the file, or one :class:`CourseError` line when it is not JSON or not COCO;
2. :func:`clean_captions` / :func:`clean_instances`: keep the well-formed entries, count the others by reason in
   a :class:`Report` (missing keys, wrong types, an empty caption, an annotation of an unknown image, …);
3. :func:`index`: ``pycocotools.coco.COCO``'s index over what is left (``getImgIds``, ``catToImgs``, …);
4. :func:`select`: the images of some categories (needs the instances file) and/or whose captions name a keyword
   (whole words, case-insensitive), in image-id order, with the captions to write;
5. :func:`write_imagefolder`: check each image decodes (a missing or corrupt one is counted and skipped, the next
   one takes its place under ``limit``), copy it (or link it, or resize and centre-crop it to a square), and write
   ``metadata.jsonl`` last.

:func:`coco_to_imagefolder` runs them all; ``python -m course_utils.data.coco`` is the command. It works the same on
the real COCO 2014 files (``annotations/captions_train2014.json``, ``instances_train2014.json``, ``train2014/``) and
offline on the shapes world's export (``shapes.export_coco(dataset, folder, instances=True)``).

**Captions per image.** ``"first"`` (the default) writes one row per image: the caption of its lowest-id
annotation that passes the keyword filter, so the same files always give the same data set. ``"all"`` writes one
row per such caption, every row of an image naming the same file (the image is written once).

**Nothing half-written.** The folder is built as ``<output_dir>.incomplete`` beside the output and renamed to
``output_dir`` only once ``metadata.jsonl`` is complete (the way ``datasets`` builds into ``*.incomplete``); an
error removes it, and a run killed outright leaves only that folder, which the next run clears. An existing
non-empty ``output_dir`` is refused unless ``overwrite=True``, and then replaced whole at the end.

Example::

    python -m course_utils.data.coco --captions annotations/captions_train2014.json \\
        --instances annotations/instances_train2014.json --images train2014 --output_dir dogs \\
        --category dog --limit 500 --image-size 512
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from course_utils.errors import ArgumentParser, CourseError, check_choice, main_guard

__all__ = [
    "CAPTIONS_PER_IMAGE",
    "FILES",
    "REASONS",
    "Choice",
    "Report",
    "SubsetOptions",
    "clean_captions",
    "clean_instances",
    "coco_to_imagefolder",
    "index",
    "main",
    "read_json",
    "select",
    "write_imagefolder",
]

CAPTIONS_PER_IMAGE = ("first", "all")
FILES = ("copy", "symlink")
REASONS = (
    "malformed image entry",
    "duplicate image id",
    "duplicate file name",
    "malformed annotation",
    "duplicate annotation id",
    "missing caption",
    "caption not a string",
    "empty caption",
    "unknown image id",
    "malformed category",
    "malformed instance annotation",
    "unknown category id",
    "missing image file",
    "corrupt image",
)
"""Why an entry or an image is skipped, in the order :class:`Report` lists them."""
EXAMPLES_PER_REASON = 3
INCOMPLETE = ".incomplete"
REPLACED = ".replaced"


@dataclass(frozen=True)
class SubsetOptions:
    """Which images to take and how to write them.

    Attributes:
        categories: COCO category names (``"dog"``); an image showing any of them is taken (needs an instances
            file). Empty: no category filter.
        keywords: words or phrases; a caption naming any of them as whole words, case-insensitive, is taken
            (``"red"`` matches "a Red bus", not "a reddish bus"). Empty: every caption.
        limit: at most this many images are written (a skipped image does not count); ``None``: all.
        image_size: resize and centre-crop every image to ``image_size × image_size`` RGB (re-encoded in its own
            format); ``None`` keeps the original file byte for byte.
        captions_per_image: ``"first"`` (one row per image) or ``"all"`` (one row per matching caption).
        files: ``"copy"`` the images, or ``"symlink"`` them (absolute links to the originals; not with
            ``image_size``).
        overwrite: replace an existing non-empty output folder instead of refusing.
    """

    categories: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    limit: int | None = None
    image_size: int | None = None
    captions_per_image: str = "first"
    files: str = "copy"
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name in ("categories", "keywords"):
            value = getattr(self, name)
            words = (value,) if isinstance(value, str) else tuple(value)
            if not all(isinstance(w, str) and w.strip() for w in words):
                raise CourseError(f"SubsetOptions.{name} must be non-empty strings, got {list(words)!r}")
            object.__setattr__(self, name, tuple(w.strip() for w in words))
        for name in ("limit", "image_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise CourseError(f"SubsetOptions.{name} must be a positive integer or None, got {value!r}")
        check_choice("captions_per_image", self.captions_per_image, CAPTIONS_PER_IMAGE)
        check_choice("files", self.files, FILES)
        if self.image_size is not None and self.files == "symlink":
            raise CourseError("image_size re-encodes every image: it needs files='copy', not 'symlink'")


@dataclass
class Report:
    """What a run wrote and what it skipped, by reason (one of :data:`REASONS`), with a few examples of each."""

    output_dir: Path
    selected: int = 0
    images: int = 0
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, example: str) -> None:
        """Count one skipped entry or image under ``reason``; keep the first few ``example`` lines."""
        check_choice("skip reason", reason, REASONS)
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < EXAMPLES_PER_REASON:
            kept.append(example)

    @property
    def total_skipped(self) -> int:
        """Every entry and image skipped, whatever the reason."""
        return sum(self.skipped.values())

    def skipped_line(self) -> str:
        """``skipped S: n reason, …`` (reasons in :data:`REASONS` order)."""
        counts = [f"{self.skipped[r]} {r}" for r in REASONS if r in self.skipped]
        return f"skipped {self.total_skipped}" + (": " + ", ".join(counts) if counts else "")

    def summary(self) -> str:
        """One line: ``wrote I images (R rows) to DIR; skipped S: n reason, …``."""
        return f"wrote {self.images} images ({self.rows} rows) to {self.output_dir}; {self.skipped_line()}"

    def __str__(self) -> str:
        lines = [f"  {r} ({self.skipped[r]}): " + "; ".join(self.examples[r]) for r in REASONS if r in self.skipped]
        return "\n".join([*lines, self.summary()])


@dataclass(frozen=True)
class Choice:
    """One image to write: its COCO id and ``file_name``, and the ``(annotation id, caption)`` rows it gets."""

    image_id: int
    file_name: str
    captions: tuple[tuple[int, str], ...]


# ---- 1) read ----------------------------------------------------------------------------------------------


def read_json(path: str | Path, *, kind: str = "captions") -> dict[str, Any]:
    """The COCO file at ``path`` as a dict; ``kind`` is ``"captions"`` (needs ``images`` and ``annotations``
    lists) or ``"instances"`` (and ``categories``). Anything else is one :class:`CourseError` line."""
    check_choice("annotation kind", kind, ("captions", "instances"))
    path = Path(path)
    if not path.is_file():
        raise CourseError(f"no {kind} file at {path}")
    try:
        with path.open(encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as err:
        raise CourseError(f"{path} is not JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    except UnicodeDecodeError:
        raise CourseError(f"{path} is not JSON (not UTF-8 text)") from None
    keys = ("images", "annotations") if kind == "captions" else ("images", "annotations", "categories")
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), list) for k in keys):
        lists = " / ".join(f"'{k}'" for k in keys)
        raise CourseError(f"{path} is not COCO {kind} annotations (it needs {lists} lists)")
    return raw


# ---- 2) clean ---------------------------------------------------------------------------------------------


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _safe_relative(name: object) -> bool:
    """A file name that stays inside its folder: relative, no ``..``, not empty."""
    if not isinstance(name, str) or not name.strip() or "\\" in name:
        return False
    parts = PurePosixPath(name).parts
    return not PurePosixPath(name).is_absolute() and ".." not in parts and bool(parts)


def _clean_images(images: Sequence[Any], report: Report) -> list[dict[str, Any]]:
    kept, ids, names = [], set(), set()
    for i, image in enumerate(images):
        where = f"images[{i}]"
        if not isinstance(image, dict) or not _is_id(image.get("id")) or not _safe_relative(image.get("file_name")):
            report.skip("malformed image entry", f"{where} = {_short(image)}")
        elif image["id"] in ids:
            report.skip("duplicate image id", f"{where}: id {image['id']}")
        elif image["file_name"] in names:
            report.skip("duplicate file name", f"{where}: {image['file_name']}")
        else:
            ids.add(image["id"])
            names.add(image["file_name"])
            kept.append(image)
    return kept


def clean_captions(raw: dict[str, Any], report: Report) -> dict[str, Any]:
    """The well-formed part of a COCO captions dict (images, then caption annotations of known images); every
    entry left out is counted in ``report`` by reason. Captions are stripped of surrounding white space."""
    images = _clean_images(raw["images"], report)
    known = {image["id"] for image in images}
    annotations, ids = [], set()
    for i, ann in enumerate(raw["annotations"]):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict) or not _is_id(ann.get("id")) or not _is_id(ann.get("image_id")):
            report.skip("malformed annotation", f"{where} = {_short(ann)}")
            continue
        where = f"annotation {ann['id']}"
        if ann["id"] in ids:
            report.skip("duplicate annotation id", where)
        elif "caption" not in ann:
            report.skip("missing caption", where)
        elif not isinstance(ann["caption"], str):
            report.skip("caption not a string", f"{where}: {_short(ann['caption'])}")
        elif not ann["caption"].strip():
            report.skip("empty caption", where)
        elif ann["image_id"] not in known:
            report.skip("unknown image id", f"{where}: image_id {ann['image_id']}")
        else:
            ids.add(ann["id"])
            annotations.append({**ann, "caption": ann["caption"].strip()})
    return {"images": images, "annotations": annotations}


def clean_instances(raw: dict[str, Any], report: Report) -> dict[str, Any]:
    """The well-formed part of a COCO instances dict: images, categories (``id``, ``name``), and object annotations
    (``id``, ``image_id``, ``category_id`` of a known category); the rest is counted in ``report``."""
    images = _clean_images(raw["images"], report)
    categories, names = [], {}
    for i, cat in enumerate(raw["categories"]):
        ok = isinstance(cat, dict) and _is_id(cat.get("id")) and isinstance(cat.get("name"), str)
        if not ok or cat["id"] in names:
            report.skip("malformed category", f"categories[{i}] = {_short(cat)}")
            continue
        names[cat["id"]] = cat["name"]
        categories.append(cat)
    annotations = []
    for i, ann in enumerate(raw["annotations"]):
        keys = ("id", "image_id", "category_id")
        if not isinstance(ann, dict) or not all(_is_id(ann.get(k)) for k in keys):
            report.skip("malformed instance annotation", f"annotations[{i}] = {_short(ann)}")
        elif ann["category_id"] not in names:
            report.skip("unknown category id", f"instance annotation {ann['id']}: category_id {ann['category_id']}")
        else:
            annotations.append(ann)
    return {"images": images, "categories": categories, "annotations": annotations}


def _short(value: object, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


# ---- 3) index ---------------------------------------------------------------------------------------------


def index(dataset: dict[str, Any]) -> Any:
    """A ``pycocotools.coco.COCO`` over a cleaned dict (its index printing silenced)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


# ---- 4) select --------------------------------------------------------------------------------------------


def _keyword_pattern(keywords: Iterable[str]) -> re.Pattern[str] | None:
    """Any of ``keywords`` as whole words (not inside a longer word), ignoring case; ``None`` for no keywords."""
    words = [re.escape(w) for w in keywords]
    return re.compile(r"(?<!\w)(?:" + "|".join(words) + r")(?!\w)", re.IGNORECASE) if words else None


def select(captions: Any, *, instances: Any | None = None, options: SubsetOptions) -> list[Choice]:
    """The images to write, in image-id order, each with its captions (see :class:`SubsetOptions`).

    ``captions`` and ``instances`` are :func:`index` results. Only images with at least one caption are
    candidates; ``limit`` is applied while writing, so that a skipped image makes room for the next one.
    """
    image_ids = sorted(i for i, anns in captions.imgToAnns.items() if anns)
    # 1) categories: any of them (COCO's getImgIds(catIds=…) would ask for all of them at once)
    if options.categories:
        if instances is None:
            raise CourseError("selecting by category needs an instances file (instances_*.json)")
        by_name = {cat["name"]: cat["id"] for cat in instances.dataset["categories"]}
        wanted = set()
        for name in options.categories:
            if name not in by_name:
                raise CourseError(f"unknown category {name!r}; valid categories: {', '.join(sorted(by_name))}")
            wanted |= set(instances.catToImgs.get(by_name[name], []))
        image_ids = [i for i in image_ids if i in wanted]
    # 2) captions: lowest annotation id first, those naming a keyword
    pattern = _keyword_pattern(options.keywords)
    choices = []
    for image_id in image_ids:
        anns = sorted(captions.imgToAnns[image_id], key=lambda a: a["id"])
        rows = [(a["id"], a["caption"]) for a in anns if pattern is None or pattern.search(a["caption"])]
        if rows:
            rows = rows[:1] if options.captions_per_image == "first" else rows
            choices.append(Choice(image_id, captions.imgs[image_id]["file_name"], tuple(rows)))
    return choices


# ---- 5) write ---------------------------------------------------------------------------------------------


def _decoded(path: Path) -> Any:
    """The image at ``path``, fully decoded (a truncated or corrupt file raises here, not later)."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        loaded = img.copy()
        loaded.format = img.format
    return loaded


def _square(img: Any, size: int) -> Any:
    """Resize the shorter side to ``size`` and crop the centre: an RGB ``size × size`` picture."""
    from PIL import Image, ImageOps

    return ImageOps.fit(img.convert("RGB"), (size, size), method=Image.Resampling.BICUBIC, centering=(0.5, 0.5))


def _write_image(src: Path, dest: Path, img: Any, options: SubsetOptions) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if options.image_size is not None:
        fmt = img.format or "PNG"
        extra = {"quality": 95} if fmt == "JPEG" else {}
        _square(img, options.image_size).save(dest, format=fmt, **extra)
    elif options.files == "symlink":
        dest.symlink_to(src.resolve())
    else:
        shutil.copyfile(src, dest)


def _check_output(output_dir: Path, images_dir: Path, *, overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise CourseError(f"output {output_dir} exists and is not a folder")
    if images_dir.resolve().is_relative_to(output_dir.resolve()):
        raise CourseError(f"output {output_dir} holds the source images {images_dir}; choose another folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise CourseError(f"output {output_dir} is not empty; choose another folder or pass overwrite (--overwrite)")


def write_imagefolder(
    choices: Sequence[Choice],
    *,
    images_dir: str | Path,
    output_dir: str | Path,
    options: SubsetOptions,
    report: Report,
    progress: bool = False,
) -> Report:
    """Write the chosen images and their ``metadata.jsonl`` (``file_name``, ``text``, ``image_id``,
    ``annotation_id``) into ``output_dir``, all at once or not at all (see the module's docstring).

    Images are read from ``images_dir / file_name``; a missing or undecodable one is counted in ``report`` and the
    next choice takes its place until ``options.limit`` images are written. ``progress`` shows a tqdm bar.
    """
    from tqdm.auto import tqdm

    images_dir, output_dir = Path(images_dir), Path(output_dir)
    if not images_dir.is_dir():
        raise CourseError(f"no images folder at {images_dir}")
    _check_output(output_dir, images_dir, overwrite=options.overwrite)
    staging = output_dir.resolve().with_name(output_dir.resolve().name + INCOMPLETE)
    shutil.rmtree(staging, ignore_errors=True)  # what a killed run left
    staging.mkdir(parents=True)
    rows: list[dict[str, Any]] = []
    want = len(choices) if options.limit is None else min(options.limit, len(choices))
    try:
        # 1) the images, each checked by decoding it
        with tqdm(total=want, desc="images", unit="img", disable=not progress, file=sys.stderr) as bar:
            for choice in choices:
                if report.images == want:
                    break
                src = images_dir / choice.file_name
                if not src.is_file():
                    report.skip("missing image file", choice.file_name)
                    continue
                try:
                    img = _decoded(src)
                except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, …
                    report.skip("corrupt image", f"{choice.file_name} ({type(err).__name__}: {err})")
                    continue
                _write_image(src, staging / choice.file_name, img, options)
                rows += [
                    {"file_name": choice.file_name, "text": text, "image_id": choice.image_id, "annotation_id": ann}
                    for ann, text in choice.captions
                ]
                report.images += 1
                bar.update(1)
        if not rows:
            raise CourseError(f"no image could be written ({report.skipped_line()})")
        # 2) the metadata, last
        with (staging / "metadata.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        # 3) swap the finished folder in
        _replace_folder(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.rows = len(rows)
    return report


def _replace_folder(staging: Path, output_dir: Path) -> None:
    """Rename ``staging`` to ``output_dir``, moving an existing ``output_dir`` aside first and deleting it after."""
    old = staging.with_name(output_dir.resolve().name + REPLACED)
    shutil.rmtree(old, ignore_errors=True)
    if output_dir.exists():
        os.replace(output_dir, old)
    os.replace(staging, output_dir)
    shutil.rmtree(old, ignore_errors=True)


# ---- all of it --------------------------------------------------------------------------------------------


def coco_to_imagefolder(
    captions: str | Path,
    *,
    images_dir: str | Path,
    output_dir: str | Path,
    instances: str | Path | None = None,
    options: SubsetOptions | None = None,
    progress: bool = False,
) -> Report:
    """Read, clean, select and write (steps 1–5 of the module's docstring); the :class:`Report` says what happened.

    ``captions`` is a ``captions_*.json`` file, ``instances`` an ``instances_*.json`` (needed to select by
    category), ``images_dir`` the folder their ``file_name`` s are relative to. Raises :class:`CourseError` (one
    line) for a file that is not JSON or not COCO, an unknown category, an output folder it may not write, or when
    nothing matches; every other problem is counted and skipped.
    """
    options = options or SubsetOptions()
    report = Report(Path(output_dir))
    caps = index(clean_captions(read_json(captions), report))
    inst = index(clean_instances(read_json(instances, kind="instances"), report)) if instances is not None else None
    choices = select(caps, instances=inst, options=options)
    if not choices:
        wanted = []
        if options.categories:
            wanted.append(f"categories {', '.join(options.categories)}")
        if options.keywords:
            wanted.append(f"keywords {', '.join(options.keywords)}")
        what = " and ".join(wanted) or "any caption"
        why = ""
        if report.skipped:  # say what was left out: often every entry, for want of a key
            why = f" ({report.skipped_line()}; images need id and file_name, captions id, image_id and caption)"
        raise CourseError(f"no image of {len(caps.imgs)} in {captions} matches {what}{why}")
    report.selected = len(choices)
    return write_imagefolder(
        choices, images_dir=images_dir, output_dir=output_dir, options=options, report=report, progress=progress
    )


# ---- command line -----------------------------------------------------------------------------------------


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m course_utils.data.coco",
        description="A Hugging Face imagefolder (images + metadata.jsonl) from COCO caption annotations.",
    )
    parser.add_argument("--captions", required=True, type=Path, help="captions_*.json")
    parser.add_argument("--instances", type=Path, help="instances_*.json (needed for --category)")
    parser.add_argument("--images", required=True, type=Path, help="the folder the file_names are relative to")
    parser.add_argument("--output_dir", "--output-dir", dest="output_dir", required=True, type=Path)
    parser.add_argument("--category", action="append", default=[], help="a category name; repeat for any of several")
    parser.add_argument("--keyword", action="append", default=[], help="a whole word of the caption; repeatable")
    parser.add_argument("--limit", type=int, help="at most this many images")
    parser.add_argument("--image-size", "--image_size", dest="image_size", type=int, help="resize + centre-crop")
    parser.add_argument("--captions-per-image", choices=CAPTIONS_PER_IMAGE, default="first")
    parser.add_argument("--symlink", action="store_true", help="link to the originals instead of copying them")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    return parser


@main_guard
def main(argv: Sequence[str] | None = None) -> int:
    """The command: one line and exit code 2 for bad input; the report, its summary line last, on success."""
    args = _parser().parse_args(argv)
    options = SubsetOptions(
        categories=tuple(args.category),
        keywords=tuple(args.keyword),
        limit=args.limit,
        image_size=args.image_size,
        captions_per_image=args.captions_per_image,
        files="symlink" if args.symlink else "copy",
        overwrite=args.overwrite,
    )
    report = coco_to_imagefolder(
        args.captions,
        images_dir=args.images,
        output_dir=args.output_dir,
        instances=args.instances,
        options=options,
        progress=True,
    )
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
