"""diffusion-course: the importable package behind the course notebooks.

Wings (one subpackage per topic; each ``__init__`` says what it holds and what it may import):
    ``sampling``  schedules, forward process, DDPM/DDIM loops, guidance, editing, masks, views (algorithms)
    ``sd``        the Stable Diffusion family: support matrix, memory plans, pipelines, sweeps, two stages, panels
    ``models``    the course's own models and their builders (``make models``)
    ``data``      digits, photos, the shapes world, image operations
    ``training``  the one training loop, the recipes, fine-tuning
    ``synthetic`` the synthetic-data pipeline: captioners, journal, engines (local, Ray), outputs, grids
    ``course``    profiles, registry, paths, the papermill runner, the otter grader, the ``diffusion-course`` command
    ``synthetic`` synthetic data: the research study of narrow real captions against added synthetic pictures
Shared by all: ``errors``, ``runtime``, ``metrics``, ``plotting``, ``studies``, ``denoisers``.

Floors (nothing imports a floor above it): faces (notebooks, the command line) → choosing (``course.profiles``,
``course.registry``, ``sd.support``, ``sd.memory``) → algorithms (``sampling``) → things (``models``, ``data``).
``tests/test_floors.py`` reads every import and holds them.

Notation is the papers'; see ``GLOSSARY.md`` beside this file.
"""

__version__ = "0.1.0"

import logging as _logging


class _TorchvisionFallbackFilter(_logging.Filter):
    """Drops transformers' note that it falls back to its PIL image processors because torchvision is missing.

    The course does not install torchvision (its PyPI build does not import beside the pinned CPU torch); the PIL
    twins (``CLIPImageProcessorPil`` …) give the same numbers on the course's images, and the note would otherwise
    land on stderr of every command and notebook that imports a Stable Diffusion pipeline.
    """

    def filter(self, record: _logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


_logging.getLogger("transformers.utils.import_utils").addFilter(_TorchvisionFallbackFilter())
