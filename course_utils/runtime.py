"""Seeding, devices and dtypes: the few facts about *where* code runs, checked once."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

from course_utils.errors import CourseError, check_choice

__all__ = [
    "quiet_loading",
    "DEVICES",
    "DTYPES",
    "HEADLESS_ENV",
    "in_colab",
    "live_widgets",
    "make_generator",
    "randn_like",
    "resolve_device",
    "resolve_dtype",
    "seed_everything",
]

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return make_generator(seed)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (pass it to samplers for reproducibility)."""
    return torch.Generator(device=device).manual_seed(int(seed))


def randn_like(x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, drawn on the generator's device (so a CPU generator gives
    the same numbers whatever device ``x`` is on, as diffusers' ``randn_tensor`` does) and moved to ``x``'s."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA if present, else MPS, else CPU. Naming a device that is not there is an error."""
    check_choice("device", name.split(":")[0], DEVICES)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CourseError(f"device {name!r} is not available on this machine (no CUDA GPU); use 'cpu' or 'auto'")
    if name == "mps" and not torch.backends.mps.is_available():
        raise CourseError("device 'mps' is not available on this machine; use 'cpu' or 'auto'")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """A dtype by name; half precision is refused on the CPU (slow or unsupported there)."""
    check_choice("dtype", name, DTYPES)
    if device.type == "cpu" and name != "float32":
        raise CourseError(f"dtype {name!r} needs a GPU; on the CPU use 'float32'")
    return DTYPES[name]


def in_colab() -> bool:
    """True inside Google Colab."""
    return "COLAB_RELEASE_TAG" in os.environ or "google.colab" in __import__("sys").modules


HEADLESS_ENV = "DIFFUSION_COURSE_HEADLESS"
"""Set (to anything but ``""`` or ``"0"``) by the course's headless runs — ``make run``, ``make notebooks`` and
nbval under ``make test`` — whose kernels have no front end to draw a widget in."""


def live_widgets(interactive: bool | None = None) -> bool:
    """Whether a notebook shows its live ipywidgets panels: ``interactive=None`` (the notebooks' default) means
    wherever a front end can draw them — an IPython kernel (JupyterLab, Colab, VS Code) that is not one of the
    course's headless runs (:data:`HEADLESS_ENV`) — so Run All in JupyterLab shows them without editing a cell.
    ``True`` or ``False`` decide outright. Headless, the notebooks keep their static render and checked numbers."""
    if interactive is not None:
        if not isinstance(interactive, bool):
            raise CourseError(f"interactive must be None, True or False, got {interactive!r}")
        return interactive
    if os.environ.get(HEADLESS_ENV, "") not in ("", "0"):
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with every kernel
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _offline_hub_notice(record) -> bool:
    """``False`` for diffusers' "Couldn't connect to the Hub … Will try to load from local cache" when offline mode
    is on: the user asked for it, and a model that is not cached fails in one line of its own."""
    from huggingface_hub.constants import is_offline_mode

    return not (is_offline_mode() and record.getMessage().startswith("Couldn't connect to the Hub"))


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Load (or save) models without diffusers' and transformers' progress bars ("Loading pipeline components",
    "Loading weights", "Writing model shards"), which would otherwise land in notebook outputs, nor diffusers' notice
    that an offline session cannot reach the Hub; all restored afterwards."""
    import logging

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    loader = logging.getLogger("diffusers.pipelines.pipeline_utils")
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    loader.addFilter(_offline_hub_notice)
    try:
        yield
    finally:
        loader.removeFilter(_offline_hub_notice)
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()
