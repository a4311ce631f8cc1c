"""Synthetic data (faces + beside): prompt grids and the measures that read them.

- ``grids``: the seed's grid of 2×2 blocks (one prompt image and three fillers each): seeded filler prompts per
  category (artistic prompts on the ``gpu`` profile, shapes captions offline), real shapes scenes as fillers, the
  layout, the assembled array and its figure with the prompt tiles' mean CLIPScore;
- ``diversity``: distinct-n of captions (Li et al. 2016) and the mean pairwise distance of images, per group.

May import ``data``, ``metrics``, ``stats`` and ``errors``; never ``sd``, ``course`` or a face.
"""
