"""The notebooks' live widgets: when they show (``runtime.live_widgets``) and the drawing pad's picture."""

from __future__ import annotations

import pytest
import torch

from course_utils.errors import CourseError
from course_utils.plotting import DrawingPad
from course_utils.runtime import HEADLESS_ENV, live_widgets


def test_explicit_choices_win_and_a_bad_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HEADLESS_ENV, "1")
    assert live_widgets(True) is True
    monkeypatch.delenv(HEADLESS_ENV)
    assert live_widgets(False) is False
    with pytest.raises(CourseError, match="None, True or False"):
        live_widgets("yes")


def test_no_kernel_means_no_widgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    assert live_widgets() is False  # pytest is not a kernel


def _kernel_says(env: dict[str, str]) -> str:
    """What ``live_widgets()`` returns in a fresh IPython kernel started with ``env`` added to this process's."""
    from jupyter_client.manager import start_new_kernel

    code = "from course_utils.runtime import live_widgets; print(live_widgets())"
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        lines: list[str] = []
        reply = kc.execute_interactive(
            code, timeout=120, output_hook=lambda msg: lines.append(msg["content"].get("text", ""))
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(lines).strip()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.slow
def test_a_kernel_shows_widgets_unless_the_run_is_headless(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.delenv(HEADLESS_ENV, raising=False)  # the repository's conftest sets it for nbval
    env = {k: v for k, v in os.environ.items() if k != HEADLESS_ENV}
    assert _kernel_says(env) == "True"  # JupyterLab's or Colab's kernel: Run All shows the panels
    assert _kernel_says(env | {HEADLESS_ENV: "1"}) == "False"  # make run, make notebooks, nbval


def test_the_runner_starts_its_kernels_headless() -> None:
    from course_utils.course.run import KERNEL_ENV

    assert KERNEL_ENV.get(HEADLESS_ENV) == "1"


def test_the_pad_is_empty_until_drawn_and_paints_discs_of_the_chosen_colour() -> None:
    pad = DrawingPad(32, scale=8)
    assert pad.image() is None
    pad.colour.value = "#0000ff"
    pad.fill()  # a blue background
    pad.colour.value = "#f00"  # short hex codes too
    pad.brush.value = 3  # radius 2 cells
    pad._press(12 * 8 + 3, 10 * 8 + 3)  # cell (row 10, col 12)
    pad._drag(14 * 8, 10 * 8)  # drag to col 14
    pad._release(0, 0)
    pad._drag(30 * 8, 30 * 8)  # no button held: nothing painted
    image = pad.image()
    assert image.shape == (1, 3, 32, 32) and image.min() == -1 and image.max() == 1
    red, blue = torch.tensor([1.0, -1, -1]), torch.tensor([-1.0, -1, 1])
    for row, col in [(10, 12), (12, 12), (10, 16), (8, 14)]:
        assert torch.equal(image[0, :, row, col], red), (row, col)
    for row, col in [(10, 9), (13, 12), (30, 30), (0, 0)]:
        assert torch.equal(image[0, :, row, col], blue), (row, col)
    pad.clear()
    assert pad.image() is None


def test_a_one_channel_pad_gives_luminance_and_refuses_bad_sizes() -> None:
    pad = DrawingPad(8, channels=1, scale=4)
    pad.colour.value = "#ffffff"
    pad.paint(5, 5)
    pad.paint(-3, 100)  # off the canvas: ignored
    image = pad.image()
    assert image.shape == (1, 1, 8, 8)
    assert image[0, 0, 1, 1] == pytest.approx(1.0) and (image > -1).sum() == 1
    for kwargs, message in [({"size": 1}, "size"), ({"size": 8, "channels": 2}, "channels"), ({"scale": 0}, "scale")]:
        with pytest.raises(CourseError, match=message):
            DrawingPad(**kwargs)


def test_the_notebooks_cells_read_the_pad_not_a_flag() -> None:
    """Week 2 displays the pad through ``live_widgets`` and reads it whatever ``interactive`` says: an empty pad
    falls back to the shipped drawing, so Run All works before anything is drawn."""
    import json
    from pathlib import Path

    nb = json.loads(
        Path(__file__).parents[1].joinpath("weeks/02_sampling_loops_2/02b_editing.ipynb").read_text()
    )
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "if live_widgets(interactive):\n    display(pad.widget)" in code
    assert "drawn = pad.image()" in code and "drawn if drawn is not None" in code
