"""``python -m course_utils.sd.sweep``: one setting varies, the rest fixed and seeded; a labelled grid, per-image and
per-value CSVs; CLIP score (and adherence on the course's model); every value checked before anything loads."""

from __future__ import annotations

import csv

import pytest
import torch
from diffusers import DiffusionPipeline

from course_utils.course import registry
from course_utils.course.paths import MODELS_DIR
from course_utils.errors import CourseError
from course_utils.sd.sweep import main
from course_utils.sd.sweep_study import run_sweep, save_sweep

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread

SHAPES_PROMPT = "a large red circle left of a small blue square on a grey background"
PROMPT = "a red dog on the beach"
CLIP = str(MODELS_DIR / "shapes-clip")  # a real CLIPModel folder, offline


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


needs_clip = pytest.mark.skipif(not (MODELS_DIR / "shapes-clip" / "config.json").is_file(), reason="run `make models`")


@needs_clip
@pytest.mark.parametrize(
    ("family", "setting", "values"),
    [
        ("sd", "scheduler", ["ddpm", "ddim", "euler_a", "dpm++"]),
        ("sdxl", "guidance_scale", ["1", "3", "7.5"]),
        ("sd3", "num_inference_steps", [1, 2, 3]),
        ("sd", "negative_prompt", ["none", "blue"]),
    ],
)
def test_sweeps_run_on_each_architecture(tiny_sd_family, tmp_path, family, setting, values):
    fixed = {"num_inference_steps": 2} if setting != "num_inference_steps" else {}
    result = run_sweep(
        setting=setting,
        values=values,
        prompts=[PROMPT, "a cat in space"],
        seeds=[0, 1],
        model_id=str(tiny_sd_family[family]),
        height=32,
        width=32,
        clip_model=CLIP,
        progress=False,
        **fixed,
    )
    assert len(result.rows) == len(values) * 2 * 2
    table = result.study.table
    assert len(table[setting]) == len(values) and len(table["clip_score"]) == len(values)
    assert all(0 <= r["clip_score"] <= 100 for r in result.rows) and "adherence" not in result.rows[0]
    paths = save_sweep(result, tmp_path)
    rows = list(csv.DictReader(paths["metrics"].open()))
    assert len(rows) == len(result.rows) and {"setting", "value", "prompt", "seed", "clip_score"} <= set(rows[0])
    summary = list(csv.DictReader(paths["summary"].open()))
    assert paths["grid"].stat().st_size > 1000 and len(summary) == len(values)
    for row, estimate in zip(summary, table["clip_score"], strict=True):  # each mean with its 95 % interval
        low, value, high = (float(row[f"clip_score{end}"]) for end in ("_low", "", "_high"))
        assert low <= value == estimate.value <= high
    assert "diversity" in table and len(result.study.samples["clip_score"][0].shape) == 2  # (prompts, seeds)


def _guidance_sweep(model: str, values: list[float]) -> list[torch.Tensor]:
    """One prompt, seed 5, two steps at 32×32: a column per guidance value."""
    return run_sweep(setting="guidance_scale", values=values, prompts=[PROMPT], seeds=[5], model_id=model,
                     num_inference_steps=2, height=32, width=32, clip_model=None, progress=False).study.images


@needs_clip
def test_the_fixed_seed_makes_columns_differ_only_by_the_setting(tiny_sd_family):
    first, second = _guidance_sweep(str(tiny_sd_family["sd"]), [3, 3])
    torch.testing.assert_close(first, second)  # same value, same seed: the same picture


@needs_clip
def test_each_column_is_drawn_with_its_own_value(tiny_sd_family):
    def sweep(values):
        return _guidance_sweep(str(tiny_sd_family["sd"]), values)

    low, high = sweep([1, 9])
    (alone,) = sweep([9])
    torch.testing.assert_close(high, alone)  # the second column is the value 9, as a sweep of 9 alone draws it
    assert (low - high).abs().max() > 1e-3, "guidance 1 and 9 drew the same picture: a column ignored its value"


def test_bad_sweeps_are_refused_before_loading(tiny_sd_family, monkeypatch, capsys):
    def no_loading(*args, **kwargs):
        raise AssertionError("weights were loaded before the sweep was checked")

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", no_loading)
    sd3 = str(tiny_sd_family["sd3"])
    cases = [
        (
            ["--vary", "scheduler", "--values", "flow-match-euler", "ddpm", "--model_id", sd3],
            "scheduler 'ddpm' does not work with",
        ),
        (["--vary", "steps", "--values", "1"], "unknown setting 'steps'; valid settings: scheduler,"),
        (["--vary", "guidance_scale", "--values", "3", "-1", "--model_id", sd3], "guidance_scale must be ≥ 0"),
        (
            ["--vary", "num_inference_steps", "--values", "2", "many", "--model_id", sd3],
            "num_inference_steps values must be numbers, got 'many'",
        ),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as stop:
            main([*argv, "--prompt", PROMPT])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.skipif(not (MODELS_DIR / "shapes-sd" / "model_index.json").is_file(), reason="run `make models`")
def test_course_model_sweep_measures_adherence(tmp_path, capsys):
    assert (
        main(
            [
                "--vary",
                "guidance_scale",
                "--values",
                "1",
                "7.5",
                "--prompt",
                SHAPES_PROMPT,
                "--prompt",
                "a red circle",
                "--seeds",
                "0",
                "1",
                "--output_dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "adherence" in out and "clip_score" in out
    rows = list(csv.DictReader((tmp_path / "guidance_scale" / "metrics.csv").open()))
    assert len(rows) == 8 and all(0 <= float(r["adherence"]) <= 1 for r in rows)
    with pytest.raises(CourseError, match="does not know: 'dog'"):
        run_sweep(setting="guidance_scale", values=[1], prompts=[PROMPT], model_id="course/shapes-sd")
    assert registry.resolve("course/shapes-sd").family == "course-sd"
