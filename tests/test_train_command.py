"""``diffusion-course train``: killed with SIGKILL and started again, the real command resumes from its newest
checkpoint, runs only the steps that are left and ends with the bytes of an uninterrupted run; budgets end in a
checkpoint, a model folder and exit 0; a finished run does nothing; mistakes are one line and exit 2."""

import json
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

from course_utils.models.digits import DigitsPipeline
from course_utils.training.checkpoints import read_progress
from course_utils.training.train import main

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS, EVERY = 60, 10
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # one thread: same arithmetic, and fast


def command(folder: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "course_utils.course.cli",
        "train",
        "digits",
        "--output_dir",
        str(folder),
        "--max-steps",
        str(STEPS),
        "--checkpoint-every",
        str(EVERY),
    ]


def unet_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


def session(stdout: str) -> tuple[int, int]:
    """(the step the process started at, the steps it ran), from its summary line."""
    match = re.search(r"started at step (\d+), ran (\d+) steps", stdout)
    assert match, stdout
    return int(match[1]), int(match[2])


def test_a_sigkilled_run_resumes_to_the_bytes_of_an_uninterrupted_one(tmp_path):
    full = subprocess.run(command(tmp_path / "full"), env=ENV, capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr[-2000:]
    assert session(full.stdout) == (0, STEPS)

    # kill -9 at a seeded random point after the checkpoint at step 10·k exists
    rng = random.Random(4)
    target, delay = EVERY * rng.randint(1, 4), rng.uniform(0.0, 0.2)
    part = tmp_path / "part"
    process = subprocess.Popen(command(part), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    killed_at = kill_after_checkpoint(process, part, step=target, delay=delay, timeout=600)
    assert target <= killed_at < STEPS and not (part / "training.json").exists()

    resumed = subprocess.run(command(part), env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # the restarted process ran only the steps that were left, by its own count
    assert session(resumed.stdout) == (killed_at, STEPS - killed_at)
    runs = read_progress(part).runs
    assert [(r["from"], r["steps"]) for r in runs] == [(0, killed_at), (killed_at, STEPS - killed_at)]
    # and ended with the same bytes: every tensor of the saved U-Net, the losses of every step
    ours, theirs = unet_weights(part), unet_weights(tmp_path / "full")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert read_progress(part).losses == read_progress(tmp_path / "full").losses

    again = subprocess.run(command(part), env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_the_time_budget_ends_with_a_checkpoint_and_a_model_and_a_finished_run_does_nothing(tmp_path, capsys):
    folder = tmp_path / "run"
    args = ["digits", "--output_dir", str(folder), "--max-seconds", "0.5", "--max-steps", "100000"]
    assert main(args) == 0
    progress = read_progress(folder)
    assert 0 < progress.step < 100_000 and progress.seconds >= 0.5
    record = json.loads((folder / "training.json").read_text())
    assert record["step"] == progress.step and record["recipe"] == "digits"
    assert (folder / "loss.png").is_file() and f"ran {progress.step} steps" in capsys.readouterr().out
    pipe = DigitsPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(class_labels=[1, 2], num_inference_steps=2, output_type="pt").images
    assert images.shape == (2, 1, 8, 8)

    stamp = (folder / "training.json").stat().st_mtime_ns
    assert main(args) == 0  # finished: nothing runs, nothing is rewritten
    assert "nothing to do" in capsys.readouterr().out
    assert (folder / "training.json").stat().st_mtime_ns == stamp and read_progress(folder).step == progress.step

    assert main([*args[:-3], "1.0", *args[-2:]]) == 0  # a larger budget resumes where the last one stopped
    assert f"started at step {progress.step}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["digitz", "--output_dir", "x"], "unknown recipe 'digitz'; valid recipes: digits, digits-ddpm"),
        (["digits", "--output_dir", "x", "--lr", "1"], "unknown option '--lr'; valid options: -h, --output_dir"),
        (["digits"], "--output_dir"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and message in err


def test_a_folder_of_another_configuration_is_refused(tmp_path, capsys):
    folder = str(tmp_path / "run")
    assert main(["digits", "--output_dir", folder, "--max-steps", "2"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["digits", "--output_dir", folder, "--max-steps", "2", "--seed", "1"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "another configuration (seed 0 → 1)" in err and err.count("\n") == 1
