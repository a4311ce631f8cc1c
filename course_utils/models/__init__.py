"""The course's own models (floor: things) and their builders.

- ``digits``: the class-conditional 8×8 digits DDPM (a diffusers ``UNet2DModel``);
- ``course_unet``: the readable course U-Net (CS180 part B's "U" from named blocks: sinusoidal time embedding,
  ResBlock, self- and cross-attention, each equal to diffusers' own), from ``D(z)`` to ``ε_θ(x_t, t, c)``;
- ``shapes_clip``, ``shapes_vae``, ``shapes_judge``, ``shapes_sd``: the shapes world's CLIP, autoencoder,
  attribute judge and miniature Stable Diffusion; ``shapes_card``: the latter's measured model card;
- ``shapes_if``: the pixel-space, text-conditional shapes denoiser (the offline DeepFloyd IF stage I of weeks 1–2) and
  its pipeline class; ``shapes_if_card``: its measured model card;
- ``shapes_captioner``: week 6's small downstream captioner (one head per attribute, the caption grammar turns them
  into text), trained from scratch per run of the synthetic-data study;
- ``readers``: what the studies judge samples with (the digit classifier, the shapes judge), per denoiser;
- ``cards``: the ``metrics.json`` every model card writes;
- ``from_scratch``: week 4's small course U-Nets (``make models`` stage ``from-scratch``): their specs, training on
  any data, loading the committed ones;
- ``finetuned``: week 5's heart concept taught to ``shapes-sd`` (DreamBooth and LoRA, with and without prior
  preservation; stage ``finetuned``), the measures that read it, the committed adapters;
- ``stages``: each model's training, saving and measuring, as ``make models`` runs them; ``build``: that
  command line (a face).

Models are saved in diffusers / transformers layout (safetensors) under ``data/models/``. May import ``data``,
``training``, ``sampling`` and the top-level modules; never ``sd`` or a face.
"""
