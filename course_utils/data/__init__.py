"""Data (floor: things): what the models see, bundled or generated offline.

- ``digits``: scikit-learn's 8×8 handwritten digits, split reproducibly;
- ``photos``: scikit-image's photos, shipped drawings, the test image each denoiser sees;
- ``shapes``: the captioned shapes world (seeded scenes, parseable captions, object masks, imagefolder and COCO
  captions / instances export);
- ``narrow``: a narrow split of the shapes world (each shape seen in two of six colours; the other combinations held
  out), the data of week 6's synthetic-data study;
- ``coco``: COCO caption (and instance) annotations → a checked, atomically written ``imagefolder`` subset chosen
  by category or caption keyword (``python -m course_utils.data.coco``);
- ``concepts``: week 5's concept outside the shapes world (a red heart; the star as the counterexample): its
  DreamBooth prompts, the attributes they ask for, seeded instance pictures, and a check that the shapes VAE can
  represent it;
- ``images``: pure image operations (Gaussian blur, tensor ↔ PIL / NumPy);
- ``hub_datasets``: one loader for training from scratch: the bundled digits, MNIST and CIFAR-10 through Hugging
  Face ``datasets`` (the ``gpu`` profile's), or the same from a local copy.

Images are float tensors ``(B, C, H, W)`` in ``[-1, 1]``. May import ``errors`` and itself only; ``concepts``' VAE
check also measures with ``metrics`` and ``stats`` (it takes the VAE as an argument, importing no model).
"""
