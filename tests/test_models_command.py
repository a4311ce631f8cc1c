"""``make models`` (``diffusion-course models``) killed with SIGKILL and started again: the digits stage resumes from
its newest checkpoint and ends with the bytes of an uninterrupted run; the previous model stays whole until the new
one replaces it, and nothing of the run (checkpoints, a half-saved folder) is left behind."""

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from killing import kill_after_checkpoint
from safetensors.torch import load_file

from course_utils.models.stages import digits_checkpoints

pytestmark = [pytest.mark.slow, pytest.mark.long, pytest.mark.usefixtures("one_thread")]

STEPS = 48  # checkpoints every 6 steps (a run keeps about eight)
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
WEIGHTS = Path("digits-ddpm") / "unet" / "diffusion_pytorch_model.safetensors"


def command(out: Path) -> list[str]:
    return [sys.executable, "-m", "course_utils.course.cli", "models", "--only", "digits", "--steps", str(STEPS),
            "--out", str(out)]  # fmt: skip


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / WEIGHTS)


def test_a_sigkilled_models_run_resumes_to_the_bytes_of_an_uninterrupted_one(tmp_path):
    full = subprocess.run(command(tmp_path / "full"), env=ENV, capture_output=True, text=True, timeout=900)
    assert full.returncode == 0, full.stderr[-2000:]
    assert f"trained {STEPS} steps" in full.stdout

    # a previous model in the folder, to be kept whole until the new one replaces it
    part = tmp_path / "part"
    (part / "digits-ddpm").mkdir(parents=True)
    (part / "digits-ddpm" / "model_index.json").write_text('{"_class_name": "DDPMPipeline"}\n')
    rng = random.Random(7)
    every = STEPS // 8
    target, delay = every * rng.randint(1, 6), rng.uniform(0.0, 0.2)
    process = subprocess.Popen(command(part), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = kill_after_checkpoint(process, digits_checkpoints(part, STEPS), step=target, delay=delay)
    assert target <= killed_at < STEPS
    assert (part / "digits-ddpm" / "model_index.json").read_text() == '{"_class_name": "DDPMPipeline"}\n'

    resumed = subprocess.run(command(part), env=ENV, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert re.search(rf"resumed at step {killed_at}\b", resumed.stdout), resumed.stdout[-2000:]
    ours, theirs = weights(part), weights(tmp_path / "full")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    left = sorted(p.name for p in part.iterdir())
    assert left == ["digits-ddpm"], f"left behind: {left}"
