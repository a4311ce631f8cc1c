"""Training (beside the floors): the course's one training loop.

``loop``: :func:`~course_utils.training.loop.fit` (EMA, checkpoints, resume) and the ε-prediction loop
:func:`~course_utils.training.loop.train_denoiser` that every course model trains with.

May import ``sampling`` (the forward process it trains against), ``errors`` and ``runtime``; never ``sd``,
``course`` or a face.
"""
