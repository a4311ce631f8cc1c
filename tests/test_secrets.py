"""No token anywhere: a fake ``HF_TOKEN`` in the environment and a fake ``--token`` on the command line, every entry
point run with them on the offline models, then every file each run wrote (images, sidecars, CSVs, manifests,
checkpoints, executed notebooks, reports, model cards, logs) and everything it printed scanned for either.

All of it is slow: ``make test-long`` runs it, ``make test`` leaves it out. The week notebooks get the
same scan where they already all run, in JupyterLab: ``tests/test_browser.py`` plants the token in the server's
environment and scans every notebook it saved, every file the kernels wrote and the server's log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from planted_secrets import ARG_SECRET, ENV_SECRET, leaks

from course_utils.course.paths import DATA_DIR, MODELS_DIR, ROOT
from course_utils.data import shapes

pytestmark = [pytest.mark.slow, pytest.mark.long]  # starts kernels and trainings: `make test-long`


def _instances(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, position in enumerate(("left", "right", "top", "bottom")):
        scene = shapes.Scene((shapes.ShapeSpec("plus", "yellow", "large", position),), "grey")
        Image.fromarray(shapes.render(scene, rng=rng)).save(folder / f"{i}.png")
    return folder


def _digits_copy(folder: Path) -> Path:
    shutil.copytree(MODELS_DIR / "digits-ddpm", folder / "digits-ddpm")
    return folder


# name → (argv after ``diffusion-course``, built in a scratch folder; the exit code expected)
ENTRY_POINTS: dict[str, tuple[Callable[[Path], list[str]], int]] = {
    "generate --token": (
        lambda tmp: ["generate", "--prompt", "a red circle", "--num_inference_steps", "2", "--output_dir",
                     str(tmp / "out"), "--token", ARG_SECRET],
        0,
    ),
    "generate a gated hub model, refused": (
        lambda tmp: ["generate", "--prompt", "a red circle", "--model_id", "stabilityai/stable-diffusion-3.5-medium",
                     "--output_dir", str(tmp / "out"), "--token", ARG_SECRET],
        2,
    ),
    "sweep": (
        lambda tmp: ["sweep", "--vary", "guidance_scale", "--values", "1", "3", "--prompt", "a red circle",
                     "--num_inference_steps", "2", "--seeds", "0", "--output_dir", str(tmp / "out")],
        0,
    ),
    "train": (lambda tmp: ["train", "digits", "--output_dir", str(tmp / "out"), "--max-steps", "2"], 0),
    "finetune": (
        lambda tmp: ["finetune", "lora", "--instance_data_dir", str(_instances(tmp / "instances")), "--output_dir",
                     str(tmp / "out"), "--max_train_steps", "2", "--train_batch_size", "2"],
        0,
    ),
    "synthetic --token": (
        lambda tmp: ["synthetic", "--input", str(DATA_DIR / "synthetic" / "shapes_concepts.csv"), "--output_dir",
                     str(tmp / "out"), "--limit", "1", "--variations", "1", "--num_inference_steps", "2",
                     "--token", ARG_SECRET],
        0,
    ),
    "models --eval-only": (
        lambda tmp: ["models", "--only", "digits", "--eval-only", "--out", str(_digits_copy(tmp / "models"))],
        0,
    ),
    "run": (lambda tmp: ["run", "--weeks", "00", "--out", str(tmp / "out")], 0),
}  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "HF_TOKEN": ENV_SECRET, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_no_entry_point_writes_or_prints_a_token(name: str, tmp_path: Path) -> None:
    make_argv, expected = ENTRY_POINTS[name]
    argv = [sys.executable, "-m", "course_utils.course.cli", *make_argv(tmp_path)]
    proc = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == expected, proc.stdout[-3000:] + proc.stderr[-3000:]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert expected != 0 or written, "the run wrote nothing: the scan would prove nothing"
    assert not leaks(tmp_path, proc.stdout + proc.stderr)

