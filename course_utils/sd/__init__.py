"""The Stable Diffusion family (floors: faces and choosing): what week 3 studies on real pipelines.

- ``support``: the scheduler × model-family matrix, per-model defaults and the request check that refuses
  before any weight loads; ``memory``: memory plans (fp16, slicing, offload, tiling) for a 15 GB GPU;
- ``pipeline``: load a pipeline once, swap schedulers, sample, write PNG + JSON sidecars (the core of
  ``generate``); ``sweep_study``: one setting varied and measured (the core of ``sweep``);
- ``two_stage`` (DeepFloyd IF I → II), ``anatomy`` (a pipeline's components; a U-Net's parameters per block and
  feature-map shapes from forward hooks), ``panels`` (the ipywidgets panel);
- ``attention_maps``: cross-attention maps over the prompt's tokens (a recording attention processor) and the share
  of a word's attention mass inside its object; ``coarse_to_fine``: x̂₀ at every sampling step, when each frequency
  band and patch settles, and the SNR per band (the algorithms are ``sampling.spectrum``);
- faces: ``generate`` and ``sweep``, command-line parsing only.

May import ``course`` (profiles, registry, paths), ``models``, ``data``, ``sampling`` and the top-level modules;
nothing outside a face imports ``generate`` or ``sweep``.
"""
