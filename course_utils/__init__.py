"""diffusion-course: the importable package behind the course notebooks.

Floors (nothing imports a floor above it):
    faces      ``run`` (papermill runner), ``grade`` (otter assignments), ``generate`` (text to image),
               command-line modules
    choosing   ``profiles`` (offline | gpu), ``registry`` (model ids, mirrors, tokens), ``sd_support`` (scheduler ×
               model matrix, per-model defaults), ``sd_memory`` (memory plans for small GPUs)
    algorithms ``schedules``, ``diffusion`` (forward process, DDPM/DDIM loops), ``guidance`` (CFG, anagrams,
               hybrids), ``editing`` (SDEdit, inpainting), ``views``, ``masks``
    things     ``denoisers``, ``models``, ``data``, ``shapes`` (the captioned shapes world)
beside them ``metrics``, ``studies``, ``plotting``, ``runtime``, ``images``, ``training``.

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
