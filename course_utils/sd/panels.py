"""An ipywidgets panel to try text-to-image settings by hand; headless runs use its defaults.

    panel = GenerationPanel(loaded, settings, prompt="a red circle")
    display(panel.widget)          # in Jupyter: change the settings, press "generate"
    image = panel.render()         # headless (papermill, nbval): one image with the current (default) values

Every change goes through :func:`course_utils.sd.support.check_request`, so the panel refuses a scheduler the
model cannot use, or bad values, with the same one-line message as the command line, shown in the panel.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from course_utils.errors import CourseError
from course_utils.sd.pipeline import LoadedPipeline, sample
from course_utils.sd.support import GenerationSettings, check_prompt, check_request, schedulers_for

__all__ = ["GenerationPanel"]


class GenerationPanel:
    """Prompt, negative prompt, scheduler, guidance, steps and seed for one loaded model, and a "generate" button.

    Attributes:
        widget: the ipywidgets box to display.
        last: the last image rendered (a PIL image) or ``None``.
    """

    def __init__(self, loaded: LoadedPipeline, settings: GenerationSettings, *, prompt: str, seed: int = 0) -> None:
        import ipywidgets as widgets

        check_prompt(settings, prompt)
        self.loaded, self.settings, self.last = loaded, settings, None
        schedulers = ["default", *schedulers_for(settings.family)]
        style = {"description_width": "110px"}
        self.prompt = widgets.Text(value=prompt, description="prompt", style=style, layout={"width": "95%"})
        self.negative = widgets.Text(
            value=settings.negative_prompt or "", description="negative prompt", style=style, layout={"width": "95%"}
        )
        self.scheduler = widgets.Dropdown(options=schedulers, value=settings.scheduler, description="scheduler")
        self.guidance = widgets.FloatSlider(
            value=settings.guidance_scale, min=0.0, max=20.0, step=0.5, description="guidance", style=style
        )
        self.steps = widgets.IntSlider(value=settings.steps, min=1, max=150, description="steps", style=style)
        self.seed = widgets.IntText(value=seed, description="seed", style=style)
        button = widgets.Button(description="generate", button_style="primary")
        self.output = widgets.Output()
        button.on_click(lambda _: self.refresh())
        controls = [self.prompt, self.negative, self.scheduler, self.guidance, self.steps, self.seed, button]
        self.widget = widgets.VBox([*controls, self.output])

    def current(self) -> tuple[GenerationSettings, str, int]:
        """The settings, prompt and seed the widgets hold now, checked (raises :class:`CourseError`)."""
        negative = self.negative.value.strip() or None
        checked, _ = check_request(
            self.settings.model_id,
            scheduler=self.scheduler.value,
            steps=self.steps.value,
            guidance_scale=self.guidance.value,
            height=self.settings.height,
            width=self.settings.width,
            negative_prompt=negative,
        )
        checked = replace(checked, num_images=1)
        return checked, check_prompt(checked, self.prompt.value), int(self.seed.value)

    def render(self) -> Any:
        """One image with the current values (a PIL image)."""
        settings, prompt, seed = self.current()
        [(_, image, _)] = sample(self.loaded, settings, prompt=prompt, seed=seed, progress=False)
        self.last = image
        return image

    def refresh(self) -> None:
        """Render with the current values into the panel's picture (what *generate* does); a bad value prints its
        one-line error there instead."""
        from IPython.display import display

        self.output.clear_output(wait=True)
        with self.output:
            try:
                image = self.render()
            except CourseError as err:
                print(f"error: {err}")
                return
            display(image.resize((max(256, image.width), max(256, image.height)), resample=0))
