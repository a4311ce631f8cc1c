"""Killing a training command with SIGKILL once its checkpoints reach a step: what the kill tests share."""

import signal
import subprocess
import time
from pathlib import Path

from course_utils.training.checkpoints import read_progress


def kill_after_checkpoint(process: subprocess.Popen, checkpoints: Path, *, step: int, delay: float,
                          timeout: float = 900) -> int:  # fmt: skip
    """SIGKILL ``process`` ``delay`` seconds after a checkpoint of ``step`` or later exists in ``checkpoints``;
    return the step of the newest complete checkpoint it left."""
    deadline = time.monotonic() + timeout
    while (progress := read_progress(checkpoints)) is None or progress.step < step:
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.01)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    return read_progress(checkpoints).step
