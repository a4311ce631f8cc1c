"""The synthetic-data pipeline (week 6; floor: faces and beside): titles → caption variations → images → a CSV
with CLIP scores, that never loses a row and scales out; and the grids and measures that read its output.

- ``ids``: stable title and caption ids, seeds hashed from them, shards;
- ``captioners``: the template grammar and the chat-model captioner, caption validation with retries;
- ``journal``: the SQLite journal (one transaction per item), atomic files, the settings manifest;
- ``pipeline``: the configuration, the plan (``--dry-run``), the two durable stages;
- ``engines``: who computes: this process or Ray Data actors;
- ``outputs``: the CSV, ``metadata.jsonl`` and failed titles rebuilt from the journal; ``verify``; ``merge``;
- ``grids``: the seed's grid of 2×2 blocks (one prompt image and three fillers each): seeded filler prompts per
  category (artistic prompts on the ``gpu`` profile, shapes captions offline), real shapes scenes as fillers, the
  layout, the assembled array and its figure with the prompt tiles' mean CLIPScore;
- ``diversity``: distinct-n of captions (Li et al. 2016) and the mean pairwise distance of images, per group;
- ``study``: seed 000's research question: does the pipeline's data help a downstream captioner trained on narrow
  real captions? Narrow real set, plus synthetic pictures, plus as many extra real ones (the control), scored on the
  attribute combinations the real set never shows; ``make models`` stage ``synthetic-study`` runs it;
- ``cli``: ``diffusion-course synthetic`` (a face).

May import every wing (``sd`` for the image pipelines, ``course.registry`` for model ids) but no face; nothing below
the faces imports it.
"""
