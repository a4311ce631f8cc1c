"""``python -m course_utils.sd.generate`` end to end, offline, on tiny random-weight SD 2.x, SDXL, SD3 and course
pipelines: PNG + sidecar per image, the same seed gives the same bytes, the token is never written, every mistake
is one line with exit code 2 before any weight loads, and the Python API loads a pipeline once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from course_utils.course import registry
from course_utils.course.paths import ROOT
from course_utils.errors import CourseError
from course_utils.sd.generate import main
from course_utils.sd.pipeline import GenerateRequest, generate, load_pipeline
from course_utils.sd.support import SCHEDULERS

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread

TOKEN = "hf_secret123"
SHAPES_PROMPT = "a large red circle left of a small blue square on a grey background"
PROMPT = "a red dog on the beach"
ORIGINAL_FROM_PRETRAINED = DiffusionPipeline.from_pretrained


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture(scope="module")
def folders(tiny_sd_family, tiny_shapes_sd_path):
    return {**tiny_sd_family, "course": tiny_shapes_sd_path}


@pytest.fixture
def course_model(monkeypatch, tmp_path, tiny_shapes_sd_path):
    """``course/shapes-sd`` (the default model) resolves to the tiny shapes model."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "shapes-sd").symlink_to(tiny_shapes_sd_path, target_is_directory=True)
    monkeypatch.setattr(registry, "MODELS_DIR", tmp_path / "models")
    return "course/shapes-sd"


@pytest.fixture
def loads(monkeypatch):
    """Counts ``DiffusionPipeline.from_pretrained`` calls (and the kwargs of each)."""
    calls = []

    def counting(source, **kwargs):
        calls.append((str(source), kwargs))
        return ORIGINAL_FROM_PRETRAINED(source, **kwargs)

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", counting)
    return calls


def run(args: list[str], capsys) -> tuple[int, str, str]:
    """``main(args)`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main(args)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def written(output_dir: Path) -> list[Path]:
    return sorted(output_dir.iterdir())


def assert_no_token(output_dir: Path, *texts: str) -> None:
    for path in output_dir.rglob("*"):
        assert TOKEN.encode() not in path.read_bytes(), path
    for text in texts:
        assert TOKEN not in text


CASES = [("sd", s) for s in ("ddpm", "ddim", "euler", "euler_a", "dpm++")]
CASES += [("sdxl", s) for s in ("ddpm", "ddim", "euler", "euler_a", "dpm++")]
CASES += [("sd3", "flow-match-euler"), ("sd3", "flow-match-heun"), ("course", "ddpm"), ("course", "dpm++")]


@pytest.mark.parametrize(("model", "scheduler"), CASES)
def test_writes_a_png_and_its_sidecar(folders, course_model, loads, tmp_path, capsys, model, scheduler):
    prompt = SHAPES_PROMPT if model == "course" else PROMPT
    model_id = course_model if model == "course" else str(folders[model])
    source = str(registry.MODELS_DIR / "shapes-sd") if model == "course" else model_id
    args = ["--prompt", prompt, "--model_id", model_id, "--scheduler", scheduler]
    negative = "green" if model == "course" else "blue"
    args += ["--number_inference_steps", "2", "--guidance_scale", "3", "--negative_prompt", negative]
    output_dir = tmp_path / "out"
    args += ["--height", "32", "--width", "32", "--seed", "7", "--output_dir", str(output_dir), "--token", TOKEN]
    code, out, err = run(args, capsys)
    assert code == 0, err
    sidecar, png = written(output_dir)
    assert png.suffix == ".png" and sidecar == png.with_suffix(".json")
    assert out.splitlines() == [f"wrote {png}", f"wrote {sidecar}"]
    assert Image.open(png).size == (32, 32) and Image.open(png).mode == "RGB"
    record = json.loads(sidecar.read_text())
    expected_class = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}
    expected_class |= {"sd3": "StableDiffusion3Pipeline", "course": "StableDiffusionPipeline"}
    assert record["pipeline_class"] == expected_class[model]
    assert record["scheduler"] == scheduler and record["scheduler_class"] == SCHEDULERS[scheduler].cls.__name__
    assert record["family"] == {"course": "course-sd"}.get(model, model)
    assert (record["num_inference_steps"], record["guidance_scale"], record["seed"]) == (2, 3.0, 7)
    assert (record["height"], record["width"], record["image_index"]) == (32, 32, 0)
    assert record["prompt"] == prompt and record["negative_prompt"] == negative
    assert record["dtype"] == "float32" and record["device"] == "cpu" and record["memory_plan"]["dtype"] == "float32"
    assert record["model_id"] == model_id and record["source"] == source and record["warnings"] == []
    assert set(record["versions"]) == {"course_utils", "diffusers", "torch", "transformers"}
    assert record["wall_seconds"] > 0 and "token" not in record["requested"]
    assert "seed7" in png.name and png.name.startswith(prompt.split()[0])
    assert_no_token(output_dir, out, err)
    assert len(loads) == 1 and "token" not in loads[0][1]  # a folder needs no token


def test_the_same_seed_gives_the_same_png(folders, tmp_path, capsys):
    base = ["--prompt", PROMPT, "--model_id", str(folders["sdxl"]), "--scheduler", "euler_a"]
    base += ["--number_inference_steps", "2"]
    for name, extra in [("a", ["--seed", "3"]), ("b", ["--seed", "3"]), ("c", ["--seed", "4"])]:
        assert run([*base, *extra, "--output_dir", str(tmp_path / name)], capsys)[0] == 0
    (a,), (b,), (c,) = ([p for p in written(tmp_path / n) if p.suffix == ".png"] for n in "abc")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    # image i of a request with seed s is the image of seed s + i alone
    assert run([*base, "--seed", "3", "--num_images", "2", "--output_dir", str(tmp_path / "d")], capsys)[0] == 0
    d3, d4 = (p for p in written(tmp_path / "d") if p.suffix == ".png")
    assert (d3.read_bytes(), d4.read_bytes()) == (a.read_bytes(), c.read_bytes())
    assert json.loads(d4.with_suffix(".json").read_text())["image_index"] == 1


def test_the_default_model_is_the_course_model_with_its_defaults(course_model, tmp_path, capsys):
    code, out, err = run(
        ["--prompt", SHAPES_PROMPT, "--output_dir", str(tmp_path), "--num_inference_steps", "2"], capsys
    )
    assert code == 0, err
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert (record["model_id"], record["family"], record["scheduler"]) == (course_model, "course-sd", "ddim")
    assert (record["height"], record["width"], record["guidance_scale"]) == (32, 32, 7.5)
    assert record["scheduler_class"] == "DDIMScheduler"


REFUSALS = [
    (
        ["--model_id", "{sd3}", "--scheduler", "ddpm"],
        r"scheduler 'ddpm' does not work with .*sd3 \(sd3, flow matching\)",
    ),
    (["--model_id", "{sd3}", "--scheduler", "ddim"], r"valid schedulers: flow-match-euler, flow-match-heun$"),
    (["--model_id", "{sd}", "--scheduler", "flow-match-euler"], r"does not work with .*\(sd, ε/v-prediction\)"),
    (["--model_id", "{sdxl}", "--scheduler", "flow-match-euler"], r"does not work with .*\(sdxl, ε/v-prediction\)"),
    (["--scheduler", "flow-match-euler"], r"does not work with course/shapes-sd \(course-sd, ε/v-prediction\)"),
    (["--model_id", "{sd}", "--scheduler", "karras"], r"unknown scheduler 'karras'"),
    (["--model_id", "{sd}", "--number_inference_steps", "0"], r"steps must be between 1 and 999, got 0"),
    (["--model_id", "{sd}", "--guidance_scale", "-2"], r"guidance_scale must be ≥ 0"),
    (["--model_id", "{sd}", "--height", "36"], r"height 36 is not a multiple of 8"),
    (["--model_id", "{sd3}", "--width", "30"], r"width 30 is not a multiple of 4"),
    (["--model_id", "{sd}", "--num_images", "0"], r"num_images must be at least 1, got 0"),
    (["--model_id", "{sd}", "--seed", "-1"], r"seed must be a whole number ≥ 0"),
    (["--model_id", "course/nope"], r"unknown model 'course/nope'"),
    (["--model_id", "nobody/nothing"], r"'nobody/nothing' is not in the course registry"),
    (["--model_id", "{sd}", "--dtype", "float16"], r"dtype 'float16' needs a GPU"),
    (["--model_id", "{sd}", "--cpu_offload", "model"], r"--cpu_offload model moves weights to a CUDA GPU"),
    (["--model_id", "{sd3}", "--attention_slicing"], r"SD3's transformer has none"),
    (["--model_id", "{sd}", "--dtype", "half"], r"argument --dtype: invalid choice: 'half'"),
    (["--model_id", "{sd}", "--seed", "x"], r"argument --seed: invalid int value: 'x'"),
    (["--prompt", "a red dog"], r"words course/shapes-sd does not know: 'dog'"),
]


@pytest.mark.parametrize(("args", "pattern"), REFUSALS)
def test_mistakes_are_one_line_and_exit_2_before_loading(folders, course_model, monkeypatch, capsys, args, pattern):
    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", refuse)
    args = [a.format(**{k: str(v) for k, v in folders.items()}) for a in args]
    if "--prompt" not in args:
        args = ["--prompt", PROMPT if "--model_id" in args else SHAPES_PROMPT, *args]
    code, out, err = run([*args, "--token", TOKEN], capsys)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert re.search(pattern, err.strip()), err
    assert TOKEN not in err


def test_turbo_warnings_and_the_token_reach_only_the_loader(folders, monkeypatch, tmp_path, capsys):
    """``stabilityai/sd-turbo`` (no weights here: the loader returns the tiny SD pipeline): a negative prompt and
    guidance 3 give two warnings and run at guidance 0; the token goes to ``from_pretrained`` and nowhere else."""
    calls = []

    def fake(source, **kwargs):
        calls.append((source, kwargs))
        return ORIGINAL_FROM_PRETRAINED(folders["sd"])

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", fake)
    args = ["--prompt", PROMPT, "--model_id", "stabilityai/sd-turbo", "--negative_prompt", "blurry"]
    args += [
        "--guidance_scale",
        "3",
        "--height",
        "32",
        "--width",
        "32",
        "--output_dir",
        str(tmp_path),
        "--token",
        TOKEN,
    ]
    code, out, err = run(args, capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("WARNING: ")]
    assert len(warnings) == 2 and "distilled" in warnings[0] and "negative prompt does nothing" in warnings[1]
    assert calls == [("stabilityai/sd-turbo", {"dtype": torch.float32, "token": TOKEN})]
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert (record["guidance_scale"], record["negative_prompt"], record["num_inference_steps"]) == (0.0, None, 1)
    assert record["requested"]["guidance_scale"] == 3.0 and record["requested"]["negative_prompt"] == "blurry"
    assert len(record["warnings"]) == 2
    assert_no_token(tmp_path, out, err)


def test_gated_or_gone_hub_models_give_the_registry_hint(monkeypatch, tmp_path, capsys):
    def gated(source, **kwargs):
        raise OSError(f"401 Client Error: access to {source} is restricted (token {kwargs['token']})")

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", gated)
    args = ["--prompt", PROMPT, "--model_id", "stabilityai/stable-diffusion-3.5-medium", "--token", TOKEN]
    code, out, err = run([*args, "--output_dir", str(tmp_path)], capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: stabilityai/stable-diffusion-3.5-medium is gated: accept its licence at")
    assert TOKEN not in err and not any(tmp_path.iterdir())


def test_python_api_loads_once_and_swaps_schedulers(folders, loads, tmp_path, capsys):
    pipeline = load_pipeline(str(folders["sd"]), scheduler="ddim")
    classes = []
    for scheduler in ("ddpm", "dpm++", "default"):
        request = GenerateRequest(
            prompt=PROMPT, model_id=str(folders["sd"]), scheduler=scheduler, num_inference_steps=2, output_dir=tmp_path
        )
        (png,) = generate(request, pipeline=pipeline, progress=False)
        classes.append(json.loads(png.with_suffix(".json").read_text())["scheduler_class"])
    assert classes == ["DDPMScheduler", "DPMSolverMultistepScheduler", "DDIMScheduler"] and len(loads) == 1
    assert len(list(tmp_path.glob("*.png"))) == 3  # the scheduler is in the file name
    with pytest.raises(CourseError, match="the pipeline holds"):
        generate(GenerateRequest(prompt=PROMPT, model_id=str(folders["sdxl"])), pipeline=pipeline)
    flow = GenerateRequest(prompt=PROMPT, model_id=str(folders["sd"]), scheduler="flow-match-euler")
    with pytest.raises(CourseError, match="does not work with"):
        generate(flow, pipeline=pipeline)
    capsys.readouterr()


def subprocess_run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    env.pop("HF_TOKEN", None)
    command = [sys.executable, "-m", "course_utils.sd.generate", *args, "--token", TOKEN]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_command_line_prints_one_line_and_exits_2(folders, tmp_path):
    done = subprocess_run(["--prompt", PROMPT, "--model_id", str(folders["sd3"]), "--scheduler", "ddpm"], tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: scheduler 'ddpm' does not work with {folders['sd3']} (sd3, flow matching); valid schedulers:"
        " flow-match-euler, flow-match-heun"
    ]
    done = subprocess_run(["--prompt", PROMPT, "--model_id", "stabilityai/sd-turbo"], tmp_path)
    assert done.returncode == 2 and done.stdout == "" and TOKEN not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "Traceback" in line or line.startswith("error: ")]
    assert line.startswith("error: stabilityai/sd-turbo could not be loaded from the Hub;") and "HF_HUB_OFFLINE" in line


def test_a_broken_folder_is_one_line(folders, tmp_path, capsys):
    import shutil

    broken = shutil.copytree(folders["sd"], tmp_path / "broken")
    args = ["--prompt", PROMPT, "--model_id", str(broken), "--output_dir", str(tmp_path / "out")]
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.unlink()
    code, out, err = run(args, capsys)
    last = err.splitlines()[-1]  # after diffusers' "Loading pipeline components" bar
    assert code == 2 and "Traceback" not in err and last.startswith(f"error: cannot load {broken}: OSError: "), err
    shutil.rmtree(broken / "unet")
    code, out, err = run(args, capsys)
    assert code == 2 and err.startswith(f"error: {broken} is missing the component unet (model_index.json names ")
    assert err.endswith("; no unet/ folder): copy the whole model folder\n") and err.count("\n") == 1
