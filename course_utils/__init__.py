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
