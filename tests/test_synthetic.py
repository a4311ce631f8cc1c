"""The synthetic-data pipeline (week 6): ids and seeds, captioners and validation, the two durable stages, the
outputs rebuilt from the journal, kill -9 at seeded random points, shards and their merge, ``verify``, the CLI,
the chat-model captioner on a tiny random model, and the ``gpu`` code path on tiny random pipelines."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from course_utils.course.paths import ROOT
from course_utils.data import shapes
from course_utils.errors import CourseError
from course_utils.synthetic import captioners, ids
from course_utils.synthetic.captioners import (
    TemplateCaptioner,
    caption_title,
    load_captioner,
    parse_variations,
    validate_captions,
)
from course_utils.synthetic.journal import recorded_images
from course_utils.synthetic.outputs import CSV, METADATA, merge, verify
from course_utils.synthetic.pipeline import SyntheticConfig, describe, kill_during, prepare, run, start_paused

INPUT = ROOT / "data" / "synthetic" / "shapes_concepts.csv"
FAST = {"num_inference_steps": 5, "variations": 2, "limit": 5}


def config(out: Path, **changes) -> SyntheticConfig:
    return SyntheticConfig(**{"input": INPUT, "output_dir": out, **FAST, **changes})


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """What a user reads from an output folder: the CSV, metadata.jsonl, the failed titles and every image."""
    files = [CSV, METADATA, "failed_titles.csv", *(f"images/{p.name}" for p in sorted((folder / "images").iterdir()))]
    return {name: (folder / name).read_bytes() for name in files}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread) -> Path:
    """An uninterrupted run of FAST on the committed shapes-sd."""
    out = tmp_path_factory.mktemp("synthetic") / "reference"
    run(config(out))
    return out


# ---------------------------------------------------------------------------------------------- ids and seeds


def test_seeds_are_hashes_of_ids_not_counters():
    assert ids.stable_seed(0, "image", "000001-0") == ids.stable_seed(0, "image", "000001-0")
    seeds = {
        ids.stable_seed(s, "image", ids.caption_id(ids.title_id(t), k))
        for s in (0, 1)
        for t in range(50)
        for k in range(3)
    }
    assert len(seeds) == 300 and all(0 <= s < 2**32 for s in seeds)
    assert ids.sort_key("000100-0") > ids.sort_key("000099-9") and ids.parse_caption_id("000012-2") == ("000012", 2)


def test_shards_split_every_title_once_whatever_n():
    titles = [ids.title_id(i) for i in range(400)]
    for n in (1, 2, 3, 7):
        parts = [[t for t in titles if ids.shard_of(t, n) == i] for i in range(n)]
        assert sorted(sum(parts, [])) == titles
        assert min(map(len, parts)) > 400 / n * 0.7  # a hash spreads them, not a block per worker
    assert ids.parse_shard("1/4") == (1, 4) and ids.parse_shard(None) is None


@pytest.mark.parametrize("text", ["4/4", "1", "a/b", "-1/2", "0/0"])
def test_bad_shards_are_one_line(text):
    with pytest.raises(CourseError, match="--shard"):
        ids.parse_shard(text)


# ---------------------------------------------------------------------------------------------- captioners


@pytest.mark.parametrize(
    "title", ["a red circle", "a large plus on a black background", "a blue square above a triangle"]
)
def test_template_variations_keep_the_concept_and_differ(title):
    got = TemplateCaptioner().variations(title, n=5, seed=3)
    named = shapes.prompt_attributes(title)
    assert len(set(got)) == 5
    for text in got:
        full = shapes.attributes(shapes.parse_caption(text))  # a full caption the shapes models read
        assert all(full[k] == v for k, v in named.items()), (title, text)
    assert got == TemplateCaptioner().variations(title, n=5, seed=3)
    assert got != TemplateCaptioner().variations(title, n=5, seed=4)


def test_template_keeps_any_other_title_verbatim():
    got = TemplateCaptioner().variations("Almond Horchata", n=3, seed=0)
    assert len(set(got)) == 3 and all("Almond Horchata" in text for text in got)
    kept, problems = validate_captions("Almond Horchata", got, n=3)
    assert kept == got and not problems


def test_validation_says_why_each_caption_is_refused():
    title = "Almond Horchata"
    candidates = ["", "x" * 300, "Creamy almond horchata", "creamy  ALMOND horchata", "A glass of rice milk",
                  "Almond horchata with cinnamon"]  # fmt: skip
    kept, problems = validate_captions(
        title, candidates, n=3, readable=lambda t: "too sweet" if "cinnamon" in t else None
    )
    assert kept == ["Creamy almond horchata"]
    assert [p.split(": ")[-1] if ": " in p else p for p in problems] == [
        "an empty caption",
        "300 characters, more than 200",
        "a duplicate",
        "does not name the concept of 'Almond Horchata'",
        "too sweet",
    ]
    shapes_kept, shapes_problems = validate_captions("a red circle", ["a blue circle on the left", "a red circle"], n=2)
    assert shapes_kept == ["a red circle"] and "does not name the concept" in shapes_problems[0]


def test_parse_variations_strips_list_markers_and_quotes():
    answer = '1. "Creamy almond horchata"\n\n2) Almond horchata, iced\n- \u201cSpiced almond horchata\u201d\n* last one'
    assert parse_variations(answer) == [
        "Creamy almond horchata",
        "Almond horchata, iced",
        "Spiced almond horchata",
        "last one",
    ]


class Scripted:
    """A captioner that answers from a script, one answer per call, and records the seeds it was given."""

    name = "scripted"

    def __init__(self, *answers):
        self.answers, self.seeds = list(answers), []

    def variations(self, title, *, n, seed):
        self.seeds.append(seed)
        return self.answers.pop(0)


def test_a_short_answer_is_retried_with_a_new_seed_then_kept():
    captioner = Scripted(["almond horchata, iced", "almond horchata, iced"], ["warm almond horchata", "", "more"])
    result = caption_title(captioner, "Almond Horchata", n=2, seed=7, tid="000004", retries=2)
    assert result.captions == ("almond horchata, iced", "warm almond horchata") and result.attempts == 2
    assert captioner.seeds == [ids.stable_seed(7, "caption", "000004", a) for a in (0, 1)]


def test_a_title_that_never_gets_enough_captions_fails_with_its_reasons():
    result = caption_title(Scripted(["nope"], ["nope"], ["nope"]), "Almond Horchata", n=2, seed=0, tid="000000")
    assert result.captions == () and result.attempts == 3
    assert result.failed.startswith("0 valid of 2 after 3 answers") and "does not name the concept" in result.failed
    assert caption_title(Scripted(), "  ", n=2, seed=0, tid="000001").failed == "the title is empty"


def test_the_chat_model_captioner_on_a_tiny_random_model_fails_visibly(tmp_path):
    """Random weights answer garbage: every answer is refused, retried, and the title reported, never dropped."""
    from tiny_pipelines import build_tiny_chat_lm

    folder = build_tiny_chat_lm(tmp_path / "tiny-lm")
    captioner = load_captioner(str(folder))
    assert isinstance(captioner, captioners.LLMCaptioner)
    first = captioner.variations("Almond Horchata", n=3, seed=5)
    assert first and first == captioner.variations("Almond Horchata", n=3, seed=5)  # seeded, whatever the RNG did
    result = caption_title(captioner, "Almond Horchata", n=3, seed=0, tid="000000", retries=1)
    assert result.failed and result.attempts == 2 and "after 2 answers" in result.failed
    out = tmp_path / "out"
    titles = tmp_path / "titles.csv"
    titles.write_text("title\nAlmond Horchata\nLemon Ricotta Pancakes\n")
    summary = run(SyntheticConfig(input=titles, output_dir=out, captioner=str(folder), retries=1, variations=2))
    assert (summary.titles, summary.failed, summary.images) == (2, 2, 0)
    with open(out / "failed_titles.csv") as f:
        failed = list(csv.DictReader(f))
    assert [r["title"] for r in failed] == ["Almond Horchata", "Lemon Ricotta Pancakes"]
    assert all(r["reason"].startswith("0 valid of 2") for r in failed)
    assert verify(out).ok


def test_the_captioner_ids_go_through_the_registry():
    with pytest.raises(
        CourseError, match="not a causal-lm model of the course registry; registered: google/gemma-3-1b-it"
    ):
        load_captioner("someone/some-llm")
    assert load_captioner("google/gemma-3-1b-it").source == "google/gemma-3-1b-it"  # loads lazily: nothing fetched
    assert captioners.llm_dtype("cpu") == "float32"


# ---------------------------------------------------------------------------------------------- a run


def test_a_run_writes_rows_images_and_a_loadable_imagefolder(reference):
    with open(reference / CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file_name", "caption", "title", "caption_id", "seed", "model", "scheduler", "clip_score"]
    assert [r["caption_id"] for r in rows] == [f"{t:06d}-{k}" for t in range(5) for k in range(2)]
    titles = [r[0] for r in csv.reader(INPUT.open())][1:6]
    for row in rows:
        assert row["title"] == titles[int(row["caption_id"][:6])]
        assert int(row["seed"]) == ids.stable_seed(0, "image", row["caption_id"])
        assert (reference / row["file_name"]).is_file() and 0 <= float(row["clip_score"]) <= 100
    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(reference), split="train")
    assert len(loaded) == 10 and sorted(loaded["text"]) == sorted(r["caption"] for r in rows)
    assert loaded[0]["image"].size == (32, 32)
    assert verify(reference).ok


def test_the_folder_feeds_week_5s_fine_tuning(reference, tmp_path, one_thread):
    """LoRA on the folder's captions (``finetune lora --train_data_dir DIR``) trains and saves an adapter."""
    from course_utils.course.paths import MODELS_DIR
    from course_utils.training.finetuning import LORA_FILE, FinetuneConfig, finetune

    config = FinetuneConfig(method="lora", output_dir=str(tmp_path / "lora"), train_data_dir=str(reference),
                            pretrained_model_name_or_path=str(MODELS_DIR / "shapes-sd"), max_train_steps=2,
                            validation_steps=2, checkpointing_steps=2, validation_images=2)  # fmt: skip
    result = finetune(config, show_progress=False)
    assert result.step == 2 and (tmp_path / "lora" / LORA_FILE).is_file()


def test_the_images_are_what_their_captions_ask_for(reference):
    """The shapes judge reads each image's own caption in it far more often than its neighbour's: rows and images
    are not mixed up."""
    from PIL import Image

    from course_utils.course.paths import MODELS_DIR
    from course_utils.models.shapes_judge import adherence, load_shapes_judge

    with open(reference / CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    images = np.stack([np.asarray(Image.open(reference / r["file_name"]).convert("RGB")) for r in rows])
    captions = [r["caption"] for r in rows]
    judge = load_shapes_judge(MODELS_DIR / "shapes-judge")
    own, shifted = adherence(judge, images, captions), adherence(judge, images, captions[2:] + captions[:2])
    assert own.exact >= 0.6 and shifted.exact <= own.exact - 0.4


def test_a_finished_run_draws_nothing_again(reference, one_thread):
    before = folder_bytes(reference)
    summary = run(config(reference))
    assert summary.rendered_now == 0 and summary.images == 10
    assert folder_bytes(reference) == before


def test_another_setting_is_refused_unless_overwrite(reference, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    with pytest.raises(CourseError, match=r"other settings \(seed 0 → 1\).*--overwrite"):
        prepare(config(out, seed=1))
    with pytest.raises(CourseError, match="plans 2 titles .* does not hold; pass --extend"):
        prepare(config(out, limit=7))
    with pytest.raises(CourseError, match="holds 2 titles this run does not plan"):
        prepare(config(out, limit=3))
    assert prepare(config(out, limit=7, extend=True)).state == "extend"
    assert prepare(config(out, seed=1, overwrite=True)).state == "overwrite"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(CourseError, match="holds files but no manifest.json"):
        prepare(config(tmp_path / "other"))


def test_extend_adds_titles_and_equals_a_run_of_all_of_them(reference, tmp_path, one_thread):
    out = tmp_path / "grown"
    run(config(out, limit=3))
    run(config(out, limit=5, extend=True))
    assert folder_bytes(out) == folder_bytes(reference) and verify(out).ok


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name\nx\n", "has no column 'title' \\(found 'name'\\); pass --title_column"),
        (b"title\n\xff\xfe red\n", "is not UTF-8 text \\(byte 6"),
        ("title\n", "has no rows under its header"),
    ],
)
def test_bad_inputs_are_one_line(tmp_path, text, message):
    path = tmp_path / "in.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(CourseError, match=message):
        prepare(SyntheticConfig(input=path, output_dir=tmp_path / "out"))


def test_an_empty_title_is_reported_not_skipped(tmp_path, one_thread):
    path = tmp_path / "in.csv"
    path.write_text("title\na red circle\n\n   \na blue square\n")  # csv skips the blank line; the spaces stay a row
    summary = run(SyntheticConfig(input=path, output_dir=tmp_path / "out", num_inference_steps=2, variations=1))
    assert (summary.titles, summary.failed, summary.images) == (3, 1, 2)
    assert "000001,,the title is empty" in (tmp_path / "out" / "failed_titles.csv").read_text()


def test_the_dry_run_plans_without_a_model(tmp_path, monkeypatch):
    import course_utils.sd.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_pipeline", lambda *a, **k: pytest.fail("the dry run loaded a model"))
    text = describe(prepare(config(tmp_path / "plan", limit=None)))
    assert "24 titles × 2 variations = 48 images" in text and "'a red circle' → 'a " in text and "time: about" in text
    assert not (tmp_path / "plan").exists()


def test_a_min_clip_score_filters_the_metadata_only(reference, tmp_path, one_thread):
    out = tmp_path / "filtered"
    shutil.copytree(reference, out)
    with open(out / CSV, newline="") as f:
        scores = sorted(float(r["clip_score"]) for r in csv.DictReader(f))
    threshold = scores[len(scores) // 2]
    run(config(out, min_clip_score=threshold))
    kept = [json.loads(line) for line in (out / METADATA).read_text().splitlines()]
    assert len(kept) == sum(s >= threshold for s in scores) < len(scores)
    assert (out / CSV).read_bytes() == (reference / CSV).read_bytes() and verify(out).ok


# ---------------------------------------------------------------------------------------------- kill -9


def _command(out: Path, *, limit: int = 8) -> list[str]:
    flags = ["--num_inference_steps", "5", "--variations", "2", "--limit", str(limit)]
    return [sys.executable, "-m", "course_utils.synthetic.cli", "--input", str(INPUT), "--output_dir", str(out), *flags]


@pytest.mark.slow
def test_sigkill_at_seeded_random_points_loses_and_repeats_nothing(tmp_path):
    """Killed with SIGKILL at seeded random moments (some right after the n-th image was committed, some a random
    few milliseconds later: between a rename and its commit), then started again with the same command: the folder
    ends byte for byte as an uninterrupted run's, and verify holds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    whole = tmp_path / "whole"
    subprocess.run(_command(whole), check=True, env=env, capture_output=True)
    total = 16
    rng = np.random.default_rng(2024)
    targets = sorted(int(t) for t in rng.choice(np.arange(1, total), size=3, replace=False))
    out = tmp_path / "killed"
    kills = 0
    for target in targets:
        process = subprocess.Popen(_command(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while recorded_images(out) < target and process.poll() is None:
            time.sleep(0.005)
        time.sleep(float(rng.uniform(0, 0.05)))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills >= 2, "the runs finished before they could be killed"
    assert recorded_images(out) < total
    subprocess.run(_command(out), check=True, env=env, capture_output=True)
    assert folder_bytes(out) == folder_bytes(whole)
    assert not list(out.rglob("*.tmp")) and verify(out).ok


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_keeps_what_is_done(tmp_path):
    """SIGINT (Ctrl-C) ends the command with exit 130 and one line; the CSV already lists every committed image, and
    the same command finishes the run. The interrupt lands at a known point (image 3 written, not committed)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = tmp_path / "interrupted"
    with open(tmp_path / "stderr.txt", "w+b") as log:
        process = start_paused(_command(out), images=2, env=env, stderr=log)
        assert recorded_images(out) == 2 and (out / "images").is_dir()
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGCONT)
        process.wait(timeout=120)
        log.seek(0)
        err = log.read().decode()
    assert process.returncode == 130, err[-500:]
    assert "stopped; everything finished is kept" in err and "Traceback" not in err
    with open(out / CSV, newline="") as f:
        assert len(list(csv.DictReader(f))) == recorded_images(out) == 2
    subprocess.run(_command(out), check=True, env=env, capture_output=True)
    assert verify(out).ok and verify(out).counts["images"] == 16


def test_kill_during_kills_at_the_same_point_on_every_machine(tmp_path):
    """``kill_during`` stops the run with its journal at ``images`` rows and the next file written without one (an
    orphan), however fast the machine draws; a run that would end before that point is an error, not a silent
    finish."""
    small = config(tmp_path / "killed", limit=2, variations=2)
    held = kill_during(small, images=1)
    assert held == 1
    assert sorted(p.name for p in (tmp_path / "killed" / "images").glob("*.png")) == ["000000-0.png", "000000-1.png"]
    assert any("orphan" in problem for problem in verify(tmp_path / "killed").problems)
    with pytest.raises(CourseError, match="never reached image 5"):
        kill_during(config(tmp_path / "short", limit=2, variations=2), images=4)


# ---------------------------------------------------------------------------------------------- shards, merge, verify


def test_shards_merge_into_the_unsharded_folder(reference, tmp_path, one_thread, monkeypatch):
    import course_utils.synthetic.outputs as outputs

    parts = [tmp_path / f"shard{i}" for i in range(3)]
    for i, part in enumerate(parts):
        run(config(part, shard=(i, 3)))
    assert sum(verify(p).counts["titles"] for p in parts) == 5
    with monkeypatch.context() as m:  # a merge killed half-way leaves no half-merged folder behind
        m.setattr(outputs, "publish", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            merge(tmp_path / "merged", parts)
    assert not (tmp_path / "merged").exists()
    report = merge(tmp_path / "merged", [parts[2], parts[0], parts[1]])
    assert report.ok and folder_bytes(tmp_path / "merged") == folder_bytes(reference)
    # the merged folder is the unsharded run's: the unsharded command resumes it, with nothing to do
    assert run(config(tmp_path / "merged")).rendered_now == 0
    with pytest.raises(CourseError, match="is not empty"):
        merge(tmp_path / "merged", parts)
    other = tmp_path / "other-seed"
    run(config(other, seed=1, shard=(1, 3)))
    with pytest.raises(CourseError, match="other settings"):
        merge(tmp_path / "m2", [parts[0], other])
    with pytest.raises(CourseError, match="distinct parts"):
        merge(tmp_path / "m3", [parts[0], parts[0]])


def test_verify_finds_an_orphan_a_duplicate_and_a_changed_image(reference, tmp_path):
    out = tmp_path / "planted"
    shutil.copytree(reference, out)
    shutil.copy(out / "images" / "000000-0.png", out / "images" / "000009-0.png")
    lines = (out / CSV).read_text().splitlines(keepends=True)
    (out / CSV).write_text("".join([*lines, lines[3]]))
    (out / "images" / "000001-1.png").write_bytes(b"not a png")
    problems = verify(out).problems
    assert "images/000009-0.png has no row in the journal (an orphan)" in problems
    assert any("caption 000001-0 has 2 rows (a duplicate)" in p for p in problems)
    assert "images/000001-1.png differs from the image that was recorded" in problems


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "course_utils.synthetic.cli", *args], capture_output=True, text=True, env=env
    )


def test_verify_exit_codes(reference, tmp_path):
    assert _cli("verify", str(reference)).returncode == 0
    broken = tmp_path / "broken"
    shutil.copytree(reference, broken)
    (broken / "images" / "000002-1.png").unlink()
    result = _cli("verify", str(broken))
    assert result.returncode == 1 and "images/000002-1.png is recorded but missing" in result.stdout
    result = _cli("verify", str(tmp_path))
    assert result.returncode == 2 and "not a synthetic-data output folder" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "x"], "unknown subcommand 'check'; valid: verify, merge"),
        (["--input", str(INPUT), "--variaton", "2"], "unknown option '--variaton'"),
        (["--input", str(INPUT), "--engine", "spark"], "invalid choice: 'spark'"),
        (["--input", str(INPUT), "--shard", "3/3"], "--shard 3/3: N must be ≥ 1 and I one of 0 … N−1"),
        (["--input", str(INPUT), "--variations", "0"], "--variations must be a whole number in 1 … 50"),
        (["--input", str(INPUT), "--scheduler", "flow-match-euler"], "flow-match-euler"),
        (["--input", str(INPUT), "--scheduler", "fast"], "unknown scheduler 'fast'"),
        (["--input", str(INPUT), "--captioner", "nobody/model"], "not a causal-lm model of the course registry"),
        (["--input", str(INPUT), "--extend", "--overwrite"], "exclude each other"),
    ],
)
def test_command_line_mistakes_are_one_line(args, message, tmp_path):
    result = _cli(*args, "--output_dir", str(tmp_path / "o")) if args[0].startswith("-") else _cli(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_the_dry_run_from_the_command_line(tmp_path):
    result = _cli("--input", str(INPUT), "--output_dir", str(tmp_path / "o"), "--dry-run")
    assert result.returncode == 0 and "24 titles × 3 variations = 72 images" in result.stdout


# ---------------------------------------------------------------------------------------------- Ray


@pytest.mark.slow
def test_ray_draws_the_same_rows_as_the_local_engine(reference, tmp_path):
    """Ray Data actors (a local Ray with 2 CPUs) and this process write the same ids, captions and seeds; the same
    bytes too, since both draw with one thread here (Ray's workers default to one)."""
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install -r requirements-ray.txt")
    out = tmp_path / "ray"
    run(config(out, engine="ray", workers=2, threads=1))
    assert verify(out).ok
    assert folder_bytes(out) == folder_bytes(reference)


# ---------------------------------------------------------------------------------------------- the gpu code path


def test_the_gpu_path_on_tiny_random_pipelines(tiny_sd_family, tmp_path, one_thread):
    """Dish titles on a Stable Diffusion 2 pipeline and a Hub-layout CLIP (tiny random weights of the same classes):
    the rows, the images at the model's size, the scores, and verify."""
    from tiny_pipelines import build_tiny_clip

    clip = build_tiny_clip(tmp_path / "tiny-clip")
    dishes = ROOT / "data" / "synthetic" / "dish_titles.csv"
    out = tmp_path / "dishes"
    settings = {"model_id": str(tiny_sd_family["sd"]), "clip_model": str(clip), "num_inference_steps": 2}
    summary = run(SyntheticConfig(input=dishes, output_dir=out, limit=2, negative_prompt="blurry", **settings))
    assert (summary.titles, summary.images, summary.failed) == (2, 6, 0)
    with open(out / CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(r["title"] in r["caption"] for r in rows) and rows[0]["model"] == str(tiny_sd_family["sd"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["negative_prompt"] == "blurry" and verify(out).ok
    assert replace(SyntheticConfig(input=dishes), token="secret").__repr__().count("secret") == 0
