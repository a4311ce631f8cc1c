"""Synthetic data (floors: faces and beside): week 6's pipeline from titles to captioned images, and what it is for.

- ``study``: the research question of seed 000 (task C): does synthetic data from a text-to-image pipeline improve a
  downstream captioner's generalisation when the real captions are narrow? A downstream model trained on a narrow
  real set, on it plus synthetic pictures, and on it plus as many extra real pictures (the control), scored on the
  attribute combinations the real set never shows, with intervals over seeds × test pictures; the development
  generator (``course/shapes-sd`` on caption variations) and the reader of a pipeline's output folder.

May import ``models``, ``data``, ``sd``, ``training``, ``course`` (paths) and the top-level modules (``stats``).
"""
