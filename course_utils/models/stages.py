"""The stages of ``make models`` (``diffusion-course models``): train the course's offline models reproducibly and
write their model cards. :mod:`course_utils.models.build` is the command line over them.

Stages, in order:

- ``digits``: the class-conditional digits DDPM (``digits-ddpm``);
- ``shapes-clip``: the shapes CLIP (``shapes-clip``), also Stable Diffusion's text encoder and tokenizer;
- ``shapes-vae``: the shapes autoencoder (``shapes-sd/vae``);
- ``shapes-judge``: the attribute classifier that scores prompt adherence (``shapes-judge``);
- ``concept-judge``: the same classifier trained on a world that also holds the unseen shapes (star, heart), the
  reader of week 5's fine-tuned concept (``shapes-judge-unseen``);
- ``shapes-sd``: the text-conditional U-Net on VAE latents, assembled with the others into a
  ``StableDiffusionPipeline`` (``shapes-sd``), then measured for its model card;
- ``shapes-if``: the pixel-space text-conditional U-Net on 32×32 pictures with ``shapes-sd``'s text encoder, the
  offline stand-in for DeepFloyd IF stage I in weeks 1–2 (``shapes-if``), then measured for its model card;
- ``from-scratch``: week 4's small course U-Nets (CS180 part B, seed 003's path, the learning-rate study, latent
  diffusion on the shapes VAE's latents), :mod:`course_utils.models.from_scratch` (``from-scratch/<name>``);
- ``finetuned``: week 5's heart concept taught to ``shapes-sd`` by DreamBooth and LoRA, with and without prior
  preservation, measured; the LoRA adapters committed, :mod:`course_utils.models.finetuned` (``shapes-sd-heart``).

Each model is trained with a fixed seed (same weights on the same software stack), saved as
safetensors in diffusers or transformers layout, evaluated, and described in a ``README.md`` beside its
weights. Training checkpoints go to ``build/checkpoints/`` so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPTextModel, CLIPTokenizer
from transformers.utils import logging as transformers_logging

from course_utils.course.paths import ROOT
from course_utils.data.concepts import HEART, STAR, instance_images
from course_utils.data.digits import load_digits_split
from course_utils.data.shapes import (
    SHAPES,
    UNSEEN_SHAPES,
    ShapesDataset,
    make_dataset,
    split_dataset,
    to_tensor,
)
from course_utils.denoisers import load_denoiser
from course_utils.errors import check_choice
from course_utils.metrics import digit_classifier, psnr_per_image
from course_utils.models.cards import write_metrics
from course_utils.models.digits import build_digits_scheduler, build_digits_unet, class_labels, save_digits_pipeline
from course_utils.models.from_scratch import build_from_scratch_stage
from course_utils.models.shapes_card import measure, write_card
from course_utils.models.shapes_clip import (
    CLIPConfigSmall,
    build_shapes_clip,
    build_shapes_processor,
    build_shapes_tokenizer,
    load_shapes_clip,
    retrieval_chance,
    retrieval_hits,
    save_shapes_clip,
    train_shapes_clip,
)
from course_utils.models.shapes_if import (
    PixelUNetConfig,
    ShapesIFPipeline,
    build_pixel_unet,
    build_shapes_if_scheduler,
    load_shapes_if,
)
from course_utils.models.shapes_if_card import measure_pixel, write_pixel_card
from course_utils.models.shapes_judge import (
    ShapesJudge,
    concept_rate,
    judge_hits,
    load_shapes_judge,
    read_images,
    slot_targets,
    train_shapes_judge,
)
from course_utils.models.shapes_sd import (
    P_OMIT,
    assemble_pipeline,
    build_shapes_unet,
    load_shapes_sd,
    train_shapes_unet,
)
from course_utils.models.shapes_sd import P_UNCOND as P_EMPTY_PROMPT
from course_utils.models.shapes_vae import (
    build_shapes_vae,
    decode,
    encode,
    load_shapes_vae,
    save_shapes_vae,
    train_shapes_vae,
)
from course_utils.runtime import quiet_loading
from course_utils.stats import Estimate, bootstrap_mean, proportion, wilson
from course_utils.studies import run_study
from course_utils.training.checkpoints import read_progress
from course_utils.training.loop import TrainConfig, train_denoiser

__all__ = [
    "DIGITS_CONFIG",
    "STAGES",
    "build_concept_judge_stage",
    "build_digits",
    "build_shapes_clip_stage",
    "build_shapes_if_stage",
    "build_shapes_judge_stage",
    "build_shapes_sd_stage",
    "build_shapes_vae_stage",
    "build_stage",
    "concept_judge_metrics",
    "concept_world",
    "digits_agreement",
    "digits_checkpoints",
    "shapes_data",
    "train_concept_judge",
    "vae_round_trip",
]

STAGES = (
    "digits", "shapes-clip", "shapes-vae", "shapes-judge", "concept-judge", "shapes-sd", "shapes-if", "from-scratch",
    "finetuned",
)  # fmt: skip

DIGITS_CONFIG = TrainConfig(steps=4000, batch_size=128, lr=2e-3, warmup_steps=200, ema_decay=0.995, seed=0)
P_UNCOND = 0.1  # label dropout for classifier-free guidance


def digits_checkpoints(out: Path, steps: int = DIGITS_CONFIG.steps) -> Path:
    """Where the digits stage of a ``steps``-step run keeps its checkpoints while it trains (removed once its model
    is saved); another ``--steps`` is another run, with a folder of its own."""
    return out / f".digits-ddpm-{steps}.checkpoints"


def _swap_in(staging: Path, path: Path) -> None:
    """Replace the folder ``path`` by ``staging`` (renames, so a kill leaves one whole model or the other)."""
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(staging, path)
    shutil.rmtree(old, ignore_errors=True)


def build_digits(out: Path, *, config: TrainConfig = DIGITS_CONFIG, train: bool = True) -> dict:
    """Train (unless ``train`` is False), save and evaluate the digits DDPM; write its model card.

    Training checkpoints about eight times a run (at most 500 steps apart) into :func:`digits_checkpoints`, so a
    killed ``make models`` started again resumes there and ends with the weights of an uninterrupted run; the model
    is saved beside the old one and swapped in whole, then the checkpoints go.
    """
    path = out / "digits-ddpm"
    seconds = None
    if train:
        checkpoints = digits_checkpoints(out, config.steps)
        for stale in out.glob(".digits-ddpm-*.checkpoints"):  # of a run with another --steps: never resumed
            if stale != checkpoints:
                print(f"digits DDPM: removing {stale}, the checkpoints of a run of other length")
                shutil.rmtree(stale)
        every = max(1, min(500, config.steps // 8))
        config = replace(config, checkpoint_dir=str(checkpoints), checkpoint_every=every, checkpoints_total_limit=2)
        found = read_progress(checkpoints)
        if found is not None:
            print(f"digits DDPM: resumed at step {found.step} of {config.steps} from {checkpoints}")
        torch.manual_seed(config.seed)
        split = load_digits_split()
        unet = build_digits_unet()
        alphas_cumprod = build_digits_scheduler().alphas_cumprod
        ema, losses = train_denoiser(
            unet,
            x0=split.x_train,
            cond=split.y_train,
            alphas_cumprod=alphas_cumprod,
            forward=lambda m, x_t, t, c: m(x_t, t, class_labels=c).sample,
            drop_condition=lambda c, g: class_labels(c, p_uncond=P_UNCOND, generator=g),
            config=config,
            description="digits DDPM",
        )
        seconds = read_progress(checkpoints).seconds  # optimisation time, summed over resumed sessions
        staging = out / ".digits-ddpm.partial"
        shutil.rmtree(staging, ignore_errors=True)
        save_digits_pipeline(ema, staging)
        _swap_in(staging, path)
        shutil.rmtree(checkpoints)
        print(f"digits DDPM: trained {config.steps} steps in {seconds:.0f} s; saved to {path}")
    metrics = digits_agreement(load_denoiser(str(path), device="cpu"))  # the folder just written
    if seconds is not None:
        metrics |= {"train_seconds": seconds, "train_steps": config.steps}
    write_metrics(path, metrics)  # without training: the steps and time the saved model's training recorded
    _write_digits_card(path, metrics, config)
    print("digits DDPM:", ", ".join(f"{k} = {v}" for k, v in metrics.items() if isinstance(v, Estimate)))
    return metrics


def digits_agreement(den: object, *, scales: tuple[float, ...] = (1.0, 3.0)) -> dict[str, Estimate]:
    """Held-out accuracy of the classifier, and agreement at each guidance scale (the week-2 CFG study,
    50 samples per digit, DDIM 50 steps, seed 0), each with its 95 % Wilson interval."""
    study = run_study(
        "cfg",
        den,
        conditions=[str(d) for d in range(10)],
        scales=scales,
        samples_per_condition=50,
        steps=50,
        seed=0,
        update="ddim",
    )
    n_test = len(load_digits_split().y_test)
    result = {"held_out_accuracy": wilson(round(digit_classifier().held_out_accuracy * n_test), n_test)}
    result |= {f"agreement@{w:g}": a for w, a in zip(study.table["w"], study.table["adherence"], strict=True)}
    return result


def _write_digits_card(path: Path, metrics: dict, config: TrainConfig) -> None:
    n_params = sum(p.numel() for p in build_digits_unet().parameters())
    steps = f"{metrics['train_steps']} steps" if "train_steps" in metrics else "steps not recorded"
    lines = [
        "# course/digits-ddpm",
        "",
        "A class-conditional pixel-space DDPM on scikit-learn's 8×8 handwritten digits, trained with 10 %",
        "label dropout so classifier-free guidance works (class 10 is the null class).",
        'Load it like a Hub pipeline: `DiffusionPipeline.from_pretrained("data/models/digits-ddpm")`,',
        'or through the course: `course_utils.denoisers.load_denoiser("course/digits-ddpm")`.',
        "",
        f"- U-Net: diffusers `UNet2DModel`, {n_params / 1e6:.2f} M parameters; schedule: linear β, T = 1000.",
        f"- Training: {steps}, batch {config.batch_size}, AdamW lr {config.lr}, EMA {config.ema_decay},"
        f" seed {config.seed}; `make models` reproduces it.",
        "",
        "## Measured (`make models`, or `python -m course_utils.models.build --eval-only`)",
        "",
        "Agreement = share of 500 samples (50 per class, DDIM 50 steps, seed 0) that an RBF-SVM trained on",
        "the real training digits recognises as the requested class.",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v} |" for k, v in metrics.items() if isinstance(v, Estimate)]
    lines += ["", "Intervals: 95 % Wilson score intervals."]
    if "train_seconds" in metrics:
        lines += ["", f"Training took {metrics['train_seconds']:.0f} s on the machine that ran `make models`."]
    (path / "README.md").write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------- shapes

SHAPES_DATA = {"n": 30_000, "seed": 0, "held_out_fraction": 0.05}
CLIP_CONFIG = TrainConfig(steps=1000, batch_size=128, lr=1e-3, warmup_steps=100, ema_decay=0.995, seed=0)
VAE_CONFIG = TrainConfig(steps=1500, batch_size=32, lr=2e-3, warmup_steps=100, ema_decay=0.995, seed=0)


def shapes_data() -> tuple[ShapesDataset, ShapesDataset]:
    """The shapes world's ``(train, held_out)`` split every shapes model trains and is measured on."""
    data = make_dataset(SHAPES_DATA["n"], seed=SHAPES_DATA["seed"])
    return split_dataset(data, held_out_fraction=SHAPES_DATA["held_out_fraction"], seed=SHAPES_DATA["seed"])


def _checkpoints(name: str, config: TrainConfig) -> TrainConfig:
    return replace(config, checkpoint_dir=str(ROOT / "build" / "checkpoints" / f"{name}-{config.steps}"))


def build_shapes_clip_stage(out: Path, *, train: bool = True, config: TrainConfig = CLIP_CONFIG) -> dict:
    """Train and save the shapes CLIP (``out/shapes-clip``); measure held-out text → image retrieval."""
    path = out / "shapes-clip"
    train_set, held_out = shapes_data()
    metrics = {}
    if train:
        tokenizer = build_shapes_tokenizer()
        model = build_shapes_clip(CLIPConfigSmall(), tokenizer)
        started = time.perf_counter()
        ema, _ = train_shapes_clip(
            model, train_set.images, train_set.captions, tokenizer=tokenizer, config=_checkpoints("shapes-clip", config)
        )
        metrics["train_seconds"] = time.perf_counter() - started
        save_shapes_clip(ema, build_shapes_processor(tokenizer), path)
    model, processor = load_shapes_clip(path)
    metrics["retrieval_top1"] = proportion(retrieval_hits(model, processor, held_out.images, held_out.captions))
    metrics["retrieval_chance"] = retrieval_chance(held_out.captions)
    metrics["n_held_out"] = len(held_out)
    write_metrics(path, metrics)
    _small_card(
        path,
        title="course/shapes-clip",
        about="A tiny CLIP (text and vision transformers, 64 wide, 2 layers each) trained contrastively on the shapes"
        " world's captions; the offline CLIP-score model, and the starting point of the miniature Stable Diffusion's"
        " text encoder. Tokenizer built offline from the caption vocabulary.",
        load='CLIPModel.from_pretrained("data/models/shapes-clip"), CLIPProcessor.from_pretrained(...)',
        config=config,
        metrics=metrics,
    )
    return metrics


def build_shapes_vae_stage(out: Path, *, train: bool = True, config: TrainConfig = VAE_CONFIG) -> dict:
    """Train and save the shapes VAE (``out/shapes-sd/vae``); measure held-out reconstruction PSNR."""
    path = out / "shapes-sd" / "vae"
    train_set, held_out = shapes_data()
    metrics = {}
    if train:
        vae = build_shapes_vae(seed=config.seed)
        started = time.perf_counter()
        ema, _ = train_shapes_vae(vae, to_tensor(train_set.images), config=_checkpoints("shapes-vae", config))
        metrics["train_seconds"] = time.perf_counter() - started
        save_shapes_vae(ema, path)
    vae, images = load_shapes_vae(path), to_tensor(held_out.images)
    metrics["reconstruction_psnr_db"] = bootstrap_mean(psnr_per_image(decode(vae, encode(vae, images)), images))
    write_metrics(path, metrics)
    _small_card(
        path,
        title="course/shapes-sd: vae",
        about="The miniature Stable Diffusion's autoencoder: a diffusers AutoencoderKL mapping 32×32 RGB pictures to"
        " 4×8×8 latents, trained with MSE + 1e-6 KL; scaling_factor = 1 / std of the training latents.",
        load='AutoencoderKL.from_pretrained("data/models/shapes-sd/vae")',
        config=config,
        metrics=metrics,
    )
    return metrics


JUDGE_CONFIG = TrainConfig(steps=800, batch_size=128, lr=2e-3, warmup_steps=100, ema_decay=0.99, seed=0)
UNET_CONFIG = TrainConfig(steps=3000, batch_size=128, lr=1e-3, warmup_steps=200, ema_decay=0.999, seed=0)
UNET_SNR_GAMMA = 5.0  # Min-SNR-γ loss weights (Hang et al. 2023)
UNET_TRAIN_TEXT_ENCODER = True  # the shapes CLIP's text tower learns with the U-Net


def build_shapes_judge_stage(out: Path, *, train: bool = True, config: TrainConfig = JUDGE_CONFIG) -> dict:
    """Train and save the attribute judge (``out/shapes-judge``); measure it on held-out renders."""
    path = out / "shapes-judge"
    train_set, held_out = shapes_data()
    metrics = {}
    if train:
        judge = ShapesJudge()
        started = time.perf_counter()
        ema, _ = train_shapes_judge(
            judge, train_set.images, train_set.scenes, config=_checkpoints("shapes-judge", config)
        )
        metrics["train_seconds"] = time.perf_counter() - started
        ema.save_pretrained(path, safe_serialization=True)
    hits = judge_hits(load_shapes_judge(path), held_out.images, held_out.scenes)
    metrics |= {reading: proportion(right) for reading, right in hits.items()}
    write_metrics(path, metrics)
    _small_card(
        path,
        title="course/shapes-judge",
        about="The attribute classifier that scores prompt adherence: a small CNN trained on ground-truth renders of"
        " the shapes world that reads, for each of the five positions, whether an object is there and its shape,"
        " colour and size, and the background (course_utils.models.shapes_judge). Accuracies below are on"
        " held-out renders: shape per slot (empty included), colour and size on occupied slots, background.",
        load='course_utils.models.shapes_judge.load_shapes_judge("data/models/shapes-judge")',
        config=config,
        metrics=metrics,
    )
    return metrics


CONCEPT_JUDGE_DATA = {"n": 30_000, "seed": 5, "held_out_fraction": 0.05}  # a world with the unseen shapes too
CONCEPT_JUDGE_CONFIG = TrainConfig(steps=1000, batch_size=128, lr=2e-3, warmup_steps=100, ema_decay=0.99, seed=0)


def concept_world(data: dict = CONCEPT_JUDGE_DATA) -> tuple[ShapesDataset, ShapesDataset]:
    """``(train, held_out)`` of the shapes world with :data:`~course_utils.data.shapes.UNSEEN_SHAPES` among its
    shapes, every shape equally likely (``make_dataset(..., shapes=SHAPES + UNSEEN_SHAPES)``)."""
    world = make_dataset(data["n"], seed=data["seed"], shapes=SHAPES + UNSEEN_SHAPES)
    return split_dataset(world, held_out_fraction=data["held_out_fraction"], seed=data["seed"])


def concept_judge_metrics(judge: ShapesJudge, held_out: ShapesDataset) -> dict:
    """Held-out accuracy per reading (:func:`judge_hits`) and, per shape, the share of slots holding it that the
    judge reads as it (``recall_<shape>``), each with its Wilson interval; ``n_held_out`` pictures."""
    metrics: dict = {
        reading: proportion(right) for reading, right in judge_hits(judge, held_out.images, held_out.scenes).items()
    }
    pred = read_images(judge, held_out.images)["shape"]  # (N, 5) slot classes
    truth = slot_targets(held_out.scenes, shapes=judge.config.shapes)["shape"]
    for k, shape in enumerate(judge.slot_shapes[1:], start=1):
        metrics[f"recall_{shape}"] = proportion((pred[truth == k] == k).numpy())
    metrics["n_held_out"] = len(held_out)
    return metrics


def vae_round_trip(judge: ShapesJudge, vae_path: Path, *, n: int = 120) -> dict:
    """Per concept (:data:`~course_utils.data.concepts.HEART`, :data:`~course_utils.data.concepts.STAR`), the share of
    ``n`` instance-style renders that the judge still reads as the concept after the shapes VAE's round trip
    (``vae_round_trip_<name>``, Wilson interval): what a fine-tuned model, which draws through that VAE, can show."""
    vae = load_shapes_vae(vae_path)
    result = {}
    for concept in (HEART, STAR):
        x = to_tensor(instance_images(concept, n=n, seed=0).images)
        result[f"vae_round_trip_{concept.name}"] = proportion(concept_rate(judge, decode(vae, encode(vae, x)), concept))
    return result


def train_concept_judge(train_set: ShapesDataset, *, config: TrainConfig, width: int = 32, hidden: int = 256):
    """A :class:`ShapesJudge` of ``SHAPES + UNSEEN_SHAPES``, initialised from ``config.seed`` (not from whatever
    drew from the global generator before) and trained on ``train_set``; returns the EMA weights."""
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        judge = ShapesJudge(width=width, hidden=hidden, shapes=SHAPES + UNSEEN_SHAPES)
    ema, _ = train_shapes_judge(judge, train_set.images, train_set.scenes, config=config)
    return ema


def build_concept_judge_stage(
    out: Path, *, train: bool = True, config: TrainConfig = CONCEPT_JUDGE_CONFIG, data: dict = CONCEPT_JUDGE_DATA
) -> dict:
    """Train and save the concept judge (``out/shapes-judge-unseen``): the shapes judge's recipe on renders of a
    world that also holds the unseen shapes; measure it on held-out renders of that world."""
    path = out / "shapes-judge-unseen"
    train_set, held_out = concept_world(data)
    metrics = {}
    if train:
        started = time.perf_counter()
        ema = train_concept_judge(train_set, config=_checkpoints("concept-judge", config))
        metrics["train_seconds"] = time.perf_counter() - started
        ema.save_pretrained(path, safe_serialization=True)
    judge = load_shapes_judge(path)
    metrics |= concept_judge_metrics(judge, held_out) | vae_round_trip(judge, out / "shapes-sd" / "vae")
    write_metrics(path, metrics)
    _small_card(
        path,
        title="course/shapes-judge-unseen",
        about="The concept judge of week 5: the shapes judge (course_utils.models.shapes_judge) trained on"
        f" ground-truth renders of a shapes world whose objects are any of {', '.join(SHAPES + UNSEEN_SHAPES)} (the"
        " last two never appear in the data the other models learn from), so it can tell whether a fine-tuned model"
        " draws the concept it was taught. Accuracies below are on held-out renders of that world: shape per slot"
        " (empty included), colour and size on occupied slots, background; recall_<shape>: the share of slots"
        " holding that shape that the judge reads as it; vae_round_trip_<concept>: the share of 120 renders of week 5's"
        " concepts (course_utils.data.concepts: a red heart, a yellow star) it reads as the concept after the shapes"
        " VAE's encode-decode, the most a fine-tuned model drawing through that VAE can show.",
        load='course_utils.models.shapes_judge.load_shapes_judge("data/models/shapes-judge-unseen")',
        config=config,
        metrics=metrics,
        data=data,
        world="make_dataset({n}, seed={seed}, shapes=SHAPES + UNSEEN_SHAPES)",
    )
    return metrics


def build_shapes_sd_stage(out: Path, *, train: bool = True, config: TrainConfig = UNET_CONFIG) -> dict:
    """Train the U-Net on VAE latents, assemble and save the ``StableDiffusionPipeline`` (``out/shapes-sd``),
    then measure it and write its model card."""
    path = out / "shapes-sd"
    train_set, held_out = shapes_data()
    train_file = path / "training.json"
    if train:
        vae = load_shapes_vae(path / "vae")
        with quiet_loading():  # the CLIP's vision tower is left out on purpose: no load report for it
            verbosity = transformers_logging.get_verbosity()
            transformers_logging.set_verbosity_error()
            text_encoder = CLIPTextModel.from_pretrained(out / "shapes-clip")  # the text tower of the shapes CLIP
            tokenizer = CLIPTokenizer.from_pretrained(out / "shapes-clip")
            transformers_logging.set_verbosity(verbosity)
        latents = encode(vae, to_tensor(train_set.images))
        unet = build_shapes_unet(seed=config.seed)
        started = time.perf_counter()
        ema, losses = train_shapes_unet(
            unet,
            latents,
            train_set.scenes,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            config=_checkpoints("shapes-unet", config),
            train_text_encoder=UNET_TRAIN_TEXT_ENCODER,
            snr_gamma=UNET_SNR_GAMMA,
        )
        seconds = time.perf_counter() - started
        pipe = assemble_pipeline(unet=ema["unet"], vae=vae, text_encoder=ema["text_encoder"], tokenizer=tokenizer)
        pipe.save_pretrained(path, safe_serialization=True)
        summary = (
            f"{config.steps} steps, batch {config.batch_size}, AdamW lr {config.lr}, EMA {config.ema_decay},"
            f" seed {config.seed}, {len(train_set)} captioned pictures, {P_EMPTY_PROMPT:.0%} empty prompts,"
            f" each optional attribute left out with probability {P_OMIT:.0%}, Min-SNR-{UNET_SNR_GAMMA:g} loss weights,"
            f" text encoder {'fine-tuned with the U-Net' if UNET_TRAIN_TEXT_ENCODER else 'frozen'};"
            f" {seconds:.0f} s on this machine's CPU"
            f" (final loss {np.mean(losses[-100:]):.4f})."
        )
        train_file.write_text(json.dumps({"train_seconds": seconds, "summary": summary}, indent=2) + "\n")
    pipe = load_shapes_sd(path)
    metrics = measure(
        pipe,
        judge=load_shapes_judge(out / "shapes-judge"),
        clip=load_shapes_clip(out / "shapes-clip"),
        held_out=held_out,
    )
    sizes = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in ("unet", "vae", "text_encoder")}
    clip_metrics = json.loads((out / "shapes-clip" / "metrics.json").read_text())
    write_card(path, metrics, clip_metrics=clip_metrics, sizes=sizes, train=json.loads(train_file.read_text()))
    return metrics


PIXEL_UNET = PixelUNetConfig()
PIXEL_CONFIG = TrainConfig(
    steps=1600, batch_size=64, lr=1e-3, warmup_steps=100, ema_decay=0.999, ema_warmup=True, seed=0,
    checkpoint_every=200,
)  # fmt: skip


def train_shapes_if(out: Path, *, config: TrainConfig = PIXEL_CONFIG) -> dict:
    """Train the pixel-space U-Net (with ``shapes-sd``'s text encoder, fine-tuned along) on the training pictures and
    save the :class:`ShapesIFPipeline` to ``out/shapes-if`` (the U-Net's weights stored in float16, which halves them
    within ``data/models``' size cap; they load as float32). Returns what ``training.json`` records."""
    path = out / "shapes-if"
    train_set, _ = shapes_data()
    with quiet_loading():
        text_encoder = CLIPTextModel.from_pretrained(out / "shapes-sd" / "text_encoder")
        tokenizer = CLIPTokenizer.from_pretrained(out / "shapes-sd" / "tokenizer")
    scheduler = build_shapes_if_scheduler()
    unet = build_pixel_unet(PIXEL_UNET, seed=config.seed)
    started = time.perf_counter()
    ema, losses = train_shapes_unet(
        unet,
        to_tensor(train_set.images),  # pixels (N, 3, 32, 32) in [-1, 1]: the model denoises them directly
        train_set.scenes,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        config=_checkpoints(f"shapes-if-{scheduler.config.prediction_type}", config),
        train_text_encoder=UNET_TRAIN_TEXT_ENCODER,
        snr_gamma=UNET_SNR_GAMMA,
        alphas_cumprod=scheduler.alphas_cumprod,
        prediction_type=scheduler.config.prediction_type,
        description="shapes-if U-Net",
    )
    seconds = time.perf_counter() - started
    pipe = ShapesIFPipeline(
        unet=ema["unet"].to(torch.float16), scheduler=scheduler, text_encoder=ema["text_encoder"], tokenizer=tokenizer
    )
    pipe.save_pretrained(path, safe_serialization=True)
    summary = (
        f"{config.steps} steps, batch {config.batch_size}, AdamW lr {config.lr}, EMA {config.ema_decay},"
        f" seed {config.seed}, {len(train_set)} captioned pictures, {P_EMPTY_PROMPT:.0%} empty prompts,"
        f" each optional attribute left out with probability {P_OMIT:.0%}, v-prediction,"
        f" Min-SNR-{UNET_SNR_GAMMA:g} loss weights, text encoder from shapes-sd, fine-tuned with the U-Net;"
        f" {seconds:.0f} s on this machine's CPU"
        f" (final loss {np.mean(losses[-100:]):.4f})."
    )
    record = {"train_seconds": seconds, "summary": summary}
    (path / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def build_shapes_if_stage(out: Path, *, train: bool = True, config: TrainConfig = PIXEL_CONFIG) -> dict:
    """Train and save ``out/shapes-if`` (:func:`train_shapes_if`), then measure it and write its model card."""
    path = out / "shapes-if"
    if train:
        train_shapes_if(out, config=config)
    _, held_out = shapes_data()
    pipe = load_shapes_if(path)
    metrics = measure_pixel(
        pipe,
        judge=load_shapes_judge(out / "shapes-judge"),
        clip=load_shapes_clip(out / "shapes-clip"),
        held_out=held_out,
    )
    sizes = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in ("unet", "text_encoder")}
    write_pixel_card(path, metrics, sizes=sizes, train=json.loads((path / "training.json").read_text()))
    return metrics


def _small_card(
    path: Path,
    *,
    title: str,
    about: str,
    load: str,
    config: TrainConfig,
    metrics: dict,
    data: dict = SHAPES_DATA,
    world: str = "make_dataset({n}, seed={seed})",
) -> None:
    """``README.md`` for a supporting model: what it is, how to load it, how it was trained, what was measured."""
    n_train = data["n"] - round(data["n"] * data["held_out_fraction"])
    lines = [
        f"# {title}",
        "",
        about,
        "",
        f"Load: `{load}`.",
        "",
        f"Training (`make models`, seed {config.seed}): {config.steps} steps, batch {config.batch_size}, AdamW lr"
        f" {config.lr}, EMA {config.ema_decay}, on the {n_train} training"
        f" pictures of `{world.format(n=data['n'], seed=data['seed'])}`.",
        "",
        "## Measured (`python -m course_utils.models.build --eval-only --only <stage>`)",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()]
    lines += ["", "Intervals: 95 %, Wilson for shares, bootstrap over pictures for means."]
    (path / "README.md").write_text("\n".join(lines) + "\n")


def build_stage(name: str, out: Path, *, train: bool = True, digits_steps: int = DIGITS_CONFIG.steps) -> str | None:
    """Train (unless ``train`` is False), save, measure and describe one stage's model; return its summary line
    (``None`` where the stage printed its measures itself).

    ``digits_steps`` sets the digits DDPM's training steps (the other stages train on their own fixed budgets).
    """
    check_choice("stage", name, STAGES)
    if name == "digits":
        config = _checkpoints("digits", replace(DIGITS_CONFIG, steps=digits_steps))
        build_digits(out, config=config, train=train)  # prints its own measures
        return None
    if name == "shapes-clip":
        metrics = build_shapes_clip_stage(out, train=train)
        return (
            f"shapes CLIP: held-out text→image top-1 {metrics['retrieval_top1']}"
            f" (chance {metrics['retrieval_chance']:.4f})"
        )
    if name == "shapes-vae":
        metrics = build_shapes_vae_stage(out, train=train)
        return f"shapes VAE: held-out reconstruction {metrics['reconstruction_psnr_db']} dB"
    if name == "shapes-judge":
        metrics = build_shapes_judge_stage(out, train=train)
        readings = ("shape", "colour", "size", "background")
        return "shapes judge: held-out accuracy " + ", ".join(f"{k} {metrics[k]}" for k in readings)
    if name == "concept-judge":
        metrics = build_concept_judge_stage(out, train=train)
        readings = ("shape", "colour", "size", "background", *(f"recall_{s}" for s in UNSEEN_SHAPES))
        readings += ("vae_round_trip_heart", "vae_round_trip_star")
        return "concept judge: held-out accuracy " + ", ".join(f"{k} {metrics[k]}" for k in readings)
    if name == "from-scratch":
        build_from_scratch_stage(out, train=train)  # prints its own measures, model by model
        return None
    if name == "finetuned":
        from course_utils.models.finetuned import build_finetuned_stage

        build_finetuned_stage(out, train=train)  # prints its own measures, run by run
        return None
    if name == "shapes-if":
        metrics = build_shapes_if_stage(out, train=train)
        return "shapes-if: adherence " + ", ".join(f"w {r['guidance']:g} {r['adherence']}" for r in metrics["guidance"])
    build_shapes_sd_stage(out, train=train)  # prints its own measures
    return None
