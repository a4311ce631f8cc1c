"""Tests for ``course_utils.data.coco``: COCO captions (and instances) → an imagefolder ``datasets`` loads.

The fixture is the shapes world's COCO export with problems planted in it (a truncated PNG, a missing file,
malformed annotations): each must be counted under its reason and skipped, the good rows written.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from course_utils.data import coco
from course_utils.data.coco import Report, SubsetOptions, coco_to_imagefolder, main
from course_utils.data.shapes import SHAPES, ShapesDataset, export_coco, make_dataset, object_masks
from course_utils.errors import CourseError

ROOT = Path(__file__).resolve().parents[1]
N = 12
TRUNCATED, MISSING = 2, 3  # image ids (image i + 1 is dataset item i)
PLANTED = {
    "corrupt image": 1,
    "missing image file": 1,
    "missing caption": 1,
    "unknown image id": 1,
    "caption not a string": 1,
    "empty caption": 1,
    "malformed annotation": 1,
    "malformed image entry": 1,
}


@pytest.fixture(scope="module")
def data() -> ShapesDataset:
    return make_dataset(N, seed=11, size=16)


def _export(data: ShapesDataset, folder: Path) -> tuple[Path, Path]:
    captions = export_coco(data, folder, instances=True)
    return captions, folder / "instances.json"


@pytest.fixture()
def planted(data: ShapesDataset, tmp_path: Path) -> dict[str, Any]:
    """The shapes export with one problem of each planted kind; images TRUNCATED and MISSING cannot be written."""
    captions, instances = _export(data, tmp_path / "src")
    raw = json.loads(captions.read_text())
    names = {img["id"]: img["file_name"] for img in raw["images"]}
    png = tmp_path / "src" / names[TRUNCATED]
    png.write_bytes(png.read_bytes()[:60])  # header and part of the first chunk
    (tmp_path / "src" / names[MISSING]).unlink()
    raw["images"].append({"id": "not a number", "file_name": "x.png"})
    raw["annotations"] += [
        {"id": 100, "image_id": 4},  # no caption
        {"id": 101, "image_id": 999, "caption": "a red circle in the centre on a grey background"},
        {"id": 102, "image_id": 5, "caption": 7},
        {"id": 103, "image_id": 6, "caption": "   "},
        "not an annotation",
    ]
    captions.write_text(json.dumps(raw))
    good = [i for i in range(N) if i + 1 not in (TRUNCATED, MISSING)]
    return {"captions": captions, "instances": instances, "images": tmp_path / "src", "good": good}


def _rows(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name + "."))


def test_planted_problems_are_counted_by_reason_and_the_good_rows_load_with_datasets(planted, data, tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "out"
    report = coco_to_imagefolder(planted["captions"], images_dir=planted["images"], output_dir=out)
    assert report.skipped == PLANTED, str(report)
    assert (report.images, report.rows, report.selected) == (len(planted["good"]), len(planted["good"]), N)
    rows = _rows(out)
    assert [r["text"] for r in rows] == [data.captions[i] for i in planted["good"]]
    assert [r["image_id"] for r in rows] == [i + 1 for i in planted["good"]]
    for row in rows:  # copies, byte for byte
        assert (out / row["file_name"]).read_bytes() == (planted["images"] / row["file_name"]).read_bytes()
    summary = str(report).splitlines()[-1]
    assert summary.startswith(f"wrote {len(planted['good'])} images") and f"skipped {sum(PLANTED.values())}" in summary
    assert f"corrupt image (1): {TRUNCATED - 1:05d}.png (" in str(report)  # the file and PIL's complaint

    ds = datasets.load_dataset("imagefolder", data_dir=str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == len(planted["good"])
    by_text = {row["text"]: i for row, i in zip(rows, planted["good"], strict=True)}
    for example in ds:  # every image arrives with its own caption
        np.testing.assert_array_equal(
            np.asarray(example["image"].convert("RGB")), data.images[by_text[example["text"]]]
        )
    assert _leftovers(out) == []


def test_select_by_category_needs_instances_and_takes_any_of_the_categories(data, tmp_path):
    captions, instances = _export(data, tmp_path / "src")
    options = SubsetOptions(categories=("circle", "plus"))
    report = coco_to_imagefolder(
        captions, images_dir=tmp_path / "src", output_dir=tmp_path / "out", instances=instances, options=options
    )
    expected = [i + 1 for i, s in enumerate(data.scenes) if {o.shape for o in s.objects} & {"circle", "plus"}]
    assert 0 < len(expected) < N, "the fixture should hold images with and without the categories"
    assert [r["image_id"] for r in _rows(tmp_path / "out")] == expected and report.skipped == {}
    with pytest.raises(CourseError, match="needs an instances file"):
        coco_to_imagefolder(captions, images_dir=tmp_path / "src", output_dir=tmp_path / "o2", options=options)
    with pytest.raises(CourseError, match="unknown category 'dog'; valid categories: circle, plus, square, triangle"):
        coco_to_imagefolder(
            captions,
            images_dir=tmp_path / "src",
            output_dir=tmp_path / "o3",
            instances=instances,
            options=SubsetOptions(categories=("dog",)),
        )
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_shapes_instances_have_one_annotation_per_object_with_its_box(data, tmp_path):
    _, instances = _export(data, tmp_path / "src")
    raw = json.loads(instances.read_text())
    assert [c["name"] for c in raw["categories"]] == list(SHAPES)
    names = {c["id"]: c["name"] for c in raw["categories"]}
    assert len(raw["annotations"]) == sum(len(s.objects) for s in data.scenes)
    for ann in raw["annotations"]:
        scene = data.scenes[ann["image_id"] - 1]
        assert names[ann["category_id"]] in {o.shape for o in scene.objects} and ann["iscrowd"] == 0
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 16 and y + h <= 16 and w * h >= ann["area"] > 0
    first = object_masks(data.scenes[0], size=16)[0] > 0  # the first object's box: every pixel it touches
    ys, xs = np.nonzero(first)
    assert raw["annotations"][0]["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    coco_module = pytest.importorskip("pycocotools.coco")
    assert len(coco_module.COCO(str(instances)).getImgIds(catIds=[1])) > 0  # pycocotools reads it


def test_keywords_match_whole_words_ignoring_case_and_all_writes_one_row_per_caption(data, tmp_path):
    captions, _ = _export(data, tmp_path / "src")
    raw = json.loads(captions.read_text())
    raw["annotations"] += [
        {"id": 200, "image_id": 1, "caption": "A RED thing, again"},
        {"id": 201, "image_id": 2, "caption": "a reddish thing"},  # not the word "red"
    ]
    captions.write_text(json.dumps(raw))
    has_red = [i + 1 for i, text in enumerate(data.captions) if "red" in text.split()]
    first = coco_to_imagefolder(
        captions, images_dir=tmp_path / "src", output_dir=tmp_path / "first", options=SubsetOptions(keywords=("Red",))
    )
    expected_first = sorted(set(has_red) | {1})
    assert [r["image_id"] for r in _rows(tmp_path / "first")] == expected_first and first.images == len(expected_first)
    every = coco_to_imagefolder(
        captions,
        images_dir=tmp_path / "src",
        output_dir=tmp_path / "all",
        options=SubsetOptions(keywords=("red",), captions_per_image="all"),
    )
    rows = _rows(tmp_path / "all")
    assert every.rows == len(rows) == len(has_red) + 1 and every.images == len(expected_first)
    assert all(re.search(r"\bred\b", r["text"], re.IGNORECASE) for r in rows)
    assert [r["annotation_id"] for r in rows if r["image_id"] == 1] == ([1] if 1 in has_red else []) + [200]
    assert len(list((tmp_path / "all").glob("*.png"))) == every.images  # an image's rows share its file
    with pytest.raises(CourseError, match="matches keywords zebra"):
        coco_to_imagefolder(
            captions,
            images_dir=tmp_path / "src",
            output_dir=tmp_path / "none",
            options=SubsetOptions(keywords=("zebra",)),
        )


def test_limit_counts_written_images_and_image_size_crops_to_a_square(planted, tmp_path):
    out = tmp_path / "out"
    options = SubsetOptions(limit=3, image_size=8)
    report = coco_to_imagefolder(planted["captions"], images_dir=planted["images"], output_dir=out, options=options)
    assert report.images == 3 and [r["image_id"] for r in _rows(out)] == [i + 1 for i in planted["good"][:3]]
    assert report.skipped["corrupt image"] == report.skipped["missing image file"] == 1  # ids 2 and 3 came first
    for row in _rows(out):
        with Image.open(out / row["file_name"]) as img:
            assert (img.size, img.mode) == ((8, 8), "RGB")
    wide = Image.new("RGB", (30, 10), (0, 0, 255))
    wide.paste((255, 0, 0), (7, 0, 23, 10))  # red around the middle third (what a centre crop keeps), blue beyond
    assert np.asarray(coco._square(wide, 5)).reshape(-1, 3).tolist() == [[255, 0, 0]] * 25


def test_symlinks_point_at_the_originals(planted, tmp_path):
    out = tmp_path / "out"
    coco_to_imagefolder(
        planted["captions"],
        images_dir=planted["images"],
        output_dir=out,
        options=SubsetOptions(files="symlink", limit=2),
    )
    for row in _rows(out):
        link = out / row["file_name"]
        assert link.is_symlink() and link.resolve() == (planted["images"] / row["file_name"]).resolve()
    with pytest.raises(CourseError, match="needs files='copy'"):
        SubsetOptions(files="symlink", image_size=8)
    with pytest.raises(CourseError, match="valid captions_per_images: first, all"):
        SubsetOptions(captions_per_image="some")
    with pytest.raises(CourseError, match="limit must be a positive integer"):
        SubsetOptions(limit=0)


def test_a_non_empty_output_is_refused_unless_overwrite_and_then_replaced_whole(planted, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    kwargs = {"images_dir": planted["images"], "output_dir": out}
    with pytest.raises(CourseError, match="is not empty; choose another folder or pass overwrite"):
        coco_to_imagefolder(planted["captions"], **kwargs)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    coco_to_imagefolder(planted["captions"], **kwargs, options=SubsetOptions(overwrite=True))
    assert not (out / "keep.txt").exists() and len(_rows(out)) == len(planted["good"])
    with pytest.raises(CourseError, match="holds the source images"):
        coco_to_imagefolder(
            planted["captions"],
            images_dir=planted["images"],
            output_dir=planted["images"],
            options=SubsetOptions(overwrite=True),
        )
    assert len(list(planted["images"].glob("*.png"))) == N - 1  # the sources are untouched


def test_files_that_are_not_json_or_not_coco_are_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(CourseError, match=r"bad.json is not JSON \(Expecting value at line 1"):
        coco.read_json(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(CourseError, match="is not COCO captions annotations"):
        coco.read_json(bad)
    bad.write_text('{"images": [], "annotations": []}')
    with pytest.raises(CourseError, match="is not COCO instances annotations"):
        coco.read_json(bad, kind="instances")
    with pytest.raises(CourseError, match="no captions file at"):
        coco.read_json(tmp_path / "nope.json")


def test_a_failure_mid_way_leaves_nothing_half_written_and_a_rerun_completes(planted, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real, calls = coco._write_image, []

    def fails_on_the_fourth(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 4:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(coco, "_write_image", fails_on_the_fourth)
    with pytest.raises(RuntimeError, match="killed"):
        coco_to_imagefolder(planted["captions"], images_dir=planted["images"], output_dir=out)
    assert len(calls) == 4 and not out.exists() and _leftovers(out) == []
    monkeypatch.setattr(coco, "_write_image", real)
    # a run killed outright (no cleanup) leaves its staging folder: the next run clears it
    stale = out.with_name(out.name + coco.INCOMPLETE)
    stale.mkdir()
    (stale / "00000.png").write_bytes(b"half")
    report = coco_to_imagefolder(planted["captions"], images_dir=planted["images"], output_dir=out)
    assert report.images == len(planted["good"]) == len(_rows(out)) and _leftovers(out) == []
    assert not any(p.name.startswith(".") or p.suffix in (".tmp", ".partial") for p in out.iterdir())


def test_cli_prints_the_report_and_exits_2_on_bad_input(planted, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--captions", str(planted["captions"]), "--instances", str(planted["instances"])]
    args += ["--images", str(planted["images"]), "--output_dir", str(out)]
    assert main([*args, "--category", "circle", "--category", "square", "--limit", "4", "--image-size", "8"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].startswith(f"wrote 4 images (4 rows) to {out}; skipped ")
    assert any(line.strip().startswith("missing caption (1): annotation 100") for line in printed)
    bad_inputs = {
        "non-empty output": ([*args], "is not empty"),
        "bad limit": ([*args, "--limit", "many", "--overwrite"], "invalid int value"),
        "unknown category": ([*args, "--category", "dog", "--overwrite"], "unknown category 'dog'"),
        "bad choice": ([*args, "--captions-per-image", "some", "--overwrite"], "invalid choice"),
        "missing captions": (["--captions", str(tmp_path / "no.json"), *args[2:], "--overwrite"], "no captions file"),
    }
    for case, (argv, expected) in bad_inputs.items():
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, case
        assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, (case, err)
    assert len(_rows(out)) == 4  # none of the refused runs touched the output

    proc = subprocess.run(  # the module runs as a command
        [sys.executable, "-m", "course_utils.data.coco", *args, "--overwrite", "--keyword", "red"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("wrote ") and "images" in proc.stderr  # the tqdm bar


def test_report_lists_reasons_in_order_with_a_few_examples():
    report = Report(Path("out"))
    for i in range(5):
        report.skip("empty caption", f"annotation {i}")
    report.skip("corrupt image", "a.png")
    assert report.skipped == {"empty caption": 5, "corrupt image": 1} and report.total_skipped == 6
    assert report.examples["empty caption"] == ["annotation 0", "annotation 1", "annotation 2"]
    assert report.summary() == "wrote 0 images (0 rows) to out; skipped 6: 5 empty caption, 1 corrupt image"
    with pytest.raises(CourseError, match="unknown skip reason"):
        report.skip("bad luck", "x")
