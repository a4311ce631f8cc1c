"""Training (beside the floors): the course's one training loop, its checkpoints, its recipes and their command.

- ``loop``: :func:`~course_utils.training.loop.fit`, the one loop on 🤗 accelerate (AdamW, warm-up and cosine or
  constant LR, gradient clipping, EMA, a progress bar, ``checkpoint-{step}/`` folders, bit-exact resume, a time
  budget), and :func:`~course_utils.training.loop.train_denoiser`, the ε- (or v-) prediction loss on top of it that
  every course model trains with; later fine-tunings (DreamBooth, LoRA) are configurations of ``fit`` with their
  own loss and accelerate's save/load hooks;
- ``checkpoints``: the ``checkpoint-{step}/`` folders: written into ``*.tmp`` and renamed, pruned to a total
  limit afterwards, the newest complete one found, a run's fingerprint checked before resuming;
- ``recipes``: what ``diffusion-course train RECIPE`` trains (``digits``, ``digits-ddpm``, ``digits-reference``);
- ``from_scratch``: week 4's recipes (CS180 part B's single-step denoiser, time- and class-conditioned DDPMs,
  training subsets) and the measures that read them (the optimal denoiser of a training set, the memorization
  ratio, held-out loss per noise level);
- ``finetuning``: DreamBooth (prior preservation), LoRA through peft and full fine-tuning of a Stable Diffusion
  pipeline as configurations of ``fit`` (validation loss with fixed noise, early stopping, adapter-only
  checkpoints through accelerate's hooks, results diffusers loads: ``pytorch_lora_weights.safetensors``);
- ``train``: that command line (a face); ``finetune``: ``diffusion-course finetune`` (a face).

May import ``sampling`` (the forward process it trains against), ``models`` and ``data`` (the recipes' models and
data), ``plotting``, ``errors`` and ``runtime``; never ``sd``, ``course`` or a face.
"""
