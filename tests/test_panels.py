"""The settings panel: its widgets start at the model's defaults, render one checked image, and refuse bad input."""

from __future__ import annotations

import pytest

from course_utils.course import registry
from course_utils.errors import CourseError
from course_utils.sd.panels import GenerationPanel
from course_utils.sd.pipeline import load_pipeline
from course_utils.sd.support import check_request

PROMPT = "a large red circle left of a small blue square on a grey background"


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread


@pytest.fixture
def panel(monkeypatch, tmp_path, tiny_shapes_sd_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "shapes-sd").symlink_to(tiny_shapes_sd_path, target_is_directory=True)
    monkeypatch.setattr(registry, "MODELS_DIR", tmp_path / "models")  # course/shapes-sd → the tiny model
    settings, _ = check_request("course/shapes-sd", steps=3)
    return GenerationPanel(load_pipeline(settings, device="cpu"), settings, prompt=PROMPT, seed=4)


def test_starts_at_the_defaults_and_renders_reproducibly(panel):
    assert (panel.scheduler.value, panel.steps.value, panel.guidance.value) == ("ddim", 3, 7.5)
    assert "flow-match-euler" not in panel.scheduler.options  # only what the family accepts
    first = panel.render()
    assert first.size == (32, 32) and panel.last is first
    assert list(first.getdata()) == list(panel.render().getdata())
    panel.scheduler.value, panel.seed.value = "euler_a", 5
    settings, prompt, seed = panel.current()
    assert (settings.scheduler, prompt, seed) == ("euler_a", PROMPT, 5)
    assert list(panel.render().getdata()) != list(first.getdata())


def test_bad_input_is_the_command_lines_one_line(panel, capsys):
    panel.prompt.value = "a red dog"
    with pytest.raises(CourseError, match="does not know: 'dog'"):
        panel.current()
    panel.refresh()  # the message goes to the panel's output (stdout outside a kernel), not a traceback
    out = capsys.readouterr().out
    assert "error: prompt 'a red dog' has words course/shapes-sd does not know: 'dog'" in out and panel.last is None
