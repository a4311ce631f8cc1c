"""The networks of week 4's "diffusion from scratch" (``make models`` stage ``from-scratch``): CS180 part B and seed
003's path on the digits, and latent diffusion on the shapes VAE's latents, each a small
:class:`~course_utils.models.course_unet.CourseUNet` trained by a recipe of :mod:`course_utils.training.from_scratch`.

:data:`MODELS` names them (``denoiser``, ``ddpm``, ``class-ddpm``, ``subset-1``, ``subset-10``, ``subset-100``,
``one-class``, ``lr-1e-3``, ``lr-1e-4``, ``lr-1e-5``, ``latent``); :func:`train_model` builds and trains one
on given data (the stage on the digits, the notebook's ``gpu`` profile on MNIST with the same step counts);
:func:`build_from_scratch_stage` trains them all and writes ``data/models/from-scratch/<name>/``:

- ``config.json`` + ``diffusion_pytorch_model.safetensors`` (``CourseUNet.save_pretrained``, the EMA weights);
- ``early/``: the EMA after :attr:`ScratchModel.early_step` steps, where the notebook shows early samples;
- ``losses.json``: the training loss of every step;
- ``README.md`` and ``metrics.json``: what it is, how it was trained, what was measured (95 % intervals).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model

from course_utils.course.paths import MODELS_DIR, ROOT
from course_utils.data.digits import load_digits_split
from course_utils.data.shapes import make_dataset, to_tensor
from course_utils.errors import CourseError, check_choice
from course_utils.metrics import digit_classifier
from course_utils.models.cards import write_metrics
from course_utils.models.course_unet import CourseUNet
from course_utils.models.shapes_vae import encode, load_shapes_vae
from course_utils.stats import Estimate, bootstrap_mean, proportion
from course_utils.training.checkpoints import EMA_FILE
from course_utils.training.from_scratch import (
    CFG_SCALE,
    COPY_RATIO,
    ddpm_schedule,
    denoising_errors,
    held_out_loss_per_level,
    memorization_ratio,
    sample_ddpm,
    train_class_conditioned,
    train_single_step_denoiser,
    train_time_conditioned,
    training_subset,
)
from course_utils.training.loop import TrainConfig

__all__ = [
    "FOLDER",
    "KINDS",
    "LATENT_SCENES",
    "MODELS",
    "NUM_HIDDENS",
    "ScratchModel",
    "build_from_scratch_stage",
    "load_from_scratch",
    "Network",
    "load_losses",
    "network",
    "shapes_latents",
    "train_model",
]

FOLDER = "from-scratch"
KINDS = ("denoiser", "ddpm", "class-ddpm")
NUM_HIDDENS = 16  # D: 16 channels at 8×8 and 4×4, 32 at the bottleneck (about 0.1 M parameters, 0.4 MB)
LATENT_SCENES = {"n": 2000, "seed": 0}  # the shapes scenes whose latents the latent DDPM learns


@dataclass(frozen=True)
class ScratchModel:
    """One network of the stage.

    Attributes:
        name: its folder under ``data/models/from-scratch/``.
        kind: ``denoiser`` (``D(z)``, no time), ``ddpm`` (``ε_θ(x_t, t)``) or ``class-ddpm`` (``ε_θ(x_t, t, c)``).
        summary: one line for its model card.
        config: the loop's settings (steps, batch, learning rate, EMA, seed).
        num_timesteps: T of the linear β schedule (300 as CS180 part B; 1000 in the learning-rate study).
        n: train on the first ``n`` images of a seeded permutation (:func:`training_subset`); ``digit``: on one
            class; neither: on all training images.
        latent: train on the shapes VAE's latents instead of the digits.
        early_step: also keep the EMA after this many steps (``early/``).
    """

    name: str
    kind: str
    summary: str
    config: TrainConfig
    num_timesteps: int = 300
    n: int | None = None
    digit: int | None = None
    latent: bool = False
    early_step: int | None = None

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, KINDS)


def _config(steps: int, *, lr: float = 2e-3, warmup_steps: int = 100) -> TrainConfig:
    return TrainConfig(
        steps=steps, batch_size=128, lr=lr, warmup_steps=warmup_steps, ema_decay=0.995, ema_warmup=True, seed=0
    )


MODELS: dict[str, ScratchModel] = {
    m.name: m
    for m in (
        ScratchModel(
            "denoiser", "denoiser", "CS180 part B §1: single-step denoiser D(z), trained at σ = 0.5", _config(600)
        ),
        ScratchModel(
            "ddpm",
            "ddpm",
            "CS180 part B §2: time-conditioned ε_θ(x_t, t), T = 300, all training digits",
            _config(1500),
            early_step=150,
        ),
        ScratchModel(
            "class-ddpm",
            "class-ddpm",
            "CS180 part B §2.4: class-conditioned ε_θ(x_t, t, c), p_uncond = 0.1, T = 300",
            _config(1500),
            early_step=150,
        ),
        ScratchModel("subset-1", "ddpm", "time-conditioned, trained on a single digit", _config(400), n=1),
        ScratchModel("subset-10", "ddpm", "time-conditioned, trained on 10 digits", _config(800), n=10),
        ScratchModel("subset-100", "ddpm", "time-conditioned, trained on 100 digits", _config(1200), n=100),
        ScratchModel("one-class", "ddpm", "time-conditioned, trained on every training 3", _config(800), digit=3),
        *(
            ScratchModel(
                f"lr-{name}",
                "ddpm",
                f"learning-rate study: lr {name}, T = 1000, 600 steps",
                _config(600, lr=lr, warmup_steps=0),
                num_timesteps=1000,
            )
            for name, lr in (("1e-3", 1e-3), ("1e-4", 1e-4), ("1e-5", 1e-5))
        ),
        ScratchModel(
            "latent",
            "ddpm",
            "latent diffusion: time-conditioned ε_θ(z_t, t) on the shapes VAE's 4×8×8 latents of 2,000 scenes",
            _config(1000),
            latent=True,
        ),
    )
}
"""Every network of the stage, by name, in training order."""


def build_unet(spec: ScratchModel, *, in_channels: int = 1, sample_size: int = 8, num_classes: int = 10) -> CourseUNet:
    """The untrained CourseUNet of ``spec`` (``resnet`` blocks, width :data:`NUM_HIDDENS`), seeded from its config."""
    torch.manual_seed(spec.config.seed)
    return CourseUNet(
        in_channels=in_channels,
        out_channels=in_channels,
        sample_size=sample_size,
        num_hiddens=NUM_HIDDENS,
        block_type="resnet",
        time_embedding=None if spec.kind == "denoiser" else "sinusoidal",
        num_train_timesteps=spec.num_timesteps,
        num_classes=num_classes if spec.kind == "class-ddpm" else None,
    )


def train_model(
    spec: ScratchModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int | None = None,
    checkpoint_dir: str | Path | None = None,
    num_classes: int = 10,
    show_progress: bool = True,
) -> tuple[CourseUNet, list[float], CourseUNet | None]:
    """Build and train ``spec``'s network on ``images`` ``(N, C, H, W)`` with ``labels`` ``(N,)`` (its subset taken
    here); ``steps`` overrides the spec's (the early copy then comes at a tenth of them); ``show_progress``: the loop's
    progress bar.

    Returns (EMA network, loss per step, EMA after the early step or ``None``). The early copy is read from the
    loop's ``checkpoint-{early}/`` folder, so a ``checkpoint_dir`` is made under ``build/`` when none is given.
    """
    config = spec.config if steps is None else replace(spec.config, steps=steps)
    early = spec.early_step if steps is None else (max(1, steps // 10) if spec.early_step else None)
    if spec.n is not None or spec.digit is not None:
        idx = training_subset(labels, n=spec.n, digit=spec.digit, seed=spec.config.seed)
        images, labels = images[idx], labels[idx]
    images = images.contiguous()
    if early is not None:
        folder = Path(checkpoint_dir or ROOT / "build" / "checkpoints" / f"{FOLDER}-{spec.name}-{config.steps}")
        config = replace(config, checkpoint_dir=str(folder), checkpoint_every=early, checkpoints_total_limit=None)
    elif checkpoint_dir is not None:
        config = replace(config, checkpoint_dir=str(checkpoint_dir))
    unet = build_unet(spec, in_channels=images.shape[1], sample_size=images.shape[-1], num_classes=num_classes)
    schedule = ddpm_schedule(spec.num_timesteps, clip_x0=None if spec.latent else 1.0)
    if spec.kind == "denoiser":
        ema, losses = train_single_step_denoiser(
            unet, x0=images, config=config, description=spec.name, show_progress=show_progress
        )
    elif spec.kind == "ddpm":
        ema, losses = train_time_conditioned(
            unet, x0=images, schedule=schedule, config=config, description=spec.name, show_progress=show_progress
        )
    else:
        ema, losses = train_class_conditioned(
            unet,
            x0=images,
            labels=labels,
            schedule=schedule,
            config=config,
            description=spec.name,
            show_progress=show_progress,
        )
    early_ema = None
    if early is not None:
        early_ema = build_unet(spec, in_channels=images.shape[1], sample_size=images.shape[-1], num_classes=num_classes)
        load_model(early_ema, str(Path(config.checkpoint_dir) / f"checkpoint-{early}" / EMA_FILE))
        early_ema.eval().requires_grad_(False)
    return ema, losses, early_ema


def shapes_latents(vae=None) -> torch.Tensor:
    """The scaled VAE latents ``(N, 4, 8, 8)`` of the :data:`LATENT_SCENES` shapes scenes (encoded once)."""
    vae = vae or load_shapes_vae(MODELS_DIR / "shapes-sd" / "vae")
    latents = encode(vae, to_tensor(make_dataset(LATENT_SCENES["n"], seed=LATENT_SCENES["seed"]).images))
    return latents.contiguous()  # the encoder's output strides are not; CPU conv backward crashes on them


def load_from_scratch(name: str, *, early: bool = False, root: str | Path = MODELS_DIR) -> CourseUNet:
    """The committed network ``name`` (one of :data:`MODELS`), or its early EMA copy; in eval mode."""
    spec = MODELS[check_choice("from-scratch model", name, MODELS)]
    if early and spec.early_step is None:
        raise CourseError(f"{name} keeps no early copy; these do: {[m.name for m in MODELS.values() if m.early_step]}")
    path = Path(root) / FOLDER / name
    if not (path / "config.json").is_file():
        raise CourseError(f"{path} holds no model: run `make models ARGS='--only {FOLDER}'`")
    return CourseUNet.from_pretrained(path / "early" if early else path).eval()  # (subfolder= reads the parent)


@dataclass
class Network:
    """A network of :data:`MODELS` ready to use: the EMA model, its training losses and its early EMA copy."""

    model: CourseUNet
    losses: list[float]
    early: CourseUNet | None = None


def network(
    name: str,
    *,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    steps: int | None = None,
    device: str | torch.device = "cpu",
    root: str | Path = MODELS_DIR,
    show_progress: bool = False,
) -> Network:
    """The network ``name``: the committed one (``data=None``), or trained here by :func:`train_model` on
    ``data = (images, labels)`` (the ``gpu`` profile's MNIST; ``steps`` overrides the recipe's; the loop places the
    model on its accelerator, the data stay on the CPU); moved to ``device`` for use."""
    spec = MODELS[check_choice("from-scratch model", name, MODELS)]
    if data is None:
        early = load_from_scratch(name, early=True, root=root) if spec.early_step else None
        found = Network(load_from_scratch(name, root=root), load_losses(name, root=root), early)
    else:
        with tempfile.TemporaryDirectory() as folder:  # a fresh run each time: never resume another dataset's
            model, losses, early = train_model(
                spec, *data, steps=steps, checkpoint_dir=folder, show_progress=show_progress
            )
        found = Network(model, losses, early)
    found.model.to(device)
    if found.early is not None:
        found.early.to(device)
    return found


def load_losses(name: str, *, root: str | Path = MODELS_DIR) -> list[float]:
    """The training loss of every step of the committed network ``name``."""
    check_choice("from-scratch model", name, MODELS)
    return json.loads((Path(root) / FOLDER / name / "losses.json").read_text())["losses"]


# ---- the stage -------------------------------------------------------------------------------------------------


def build_from_scratch_stage(out: Path, *, train: bool = True, only: tuple[str, ...] | None = None) -> dict:
    """Train (unless ``train`` is False) and save every network of :data:`MODELS` (or those in ``only``) under
    ``out/from-scratch/``, then measure each and write its card. Returns name → metrics."""
    split = load_digits_split()
    latents = None
    results = {}
    for spec in MODELS.values():
        if only is not None and spec.name not in only:
            continue
        path = out / FOLDER / spec.name
        seconds = None
        if train:
            if spec.latent and latents is None:
                latents = shapes_latents()
            images, labels = (
                (latents, torch.zeros(len(latents), dtype=torch.long))
                if spec.latent
                else (split.x_train, split.y_train)
            )
            started = time.perf_counter()
            ema, losses, early = train_model(spec, images, labels)
            seconds = time.perf_counter() - started
            ema.save_pretrained(path, safe_serialization=True)
            if early is not None:
                early.save_pretrained(path / "early", safe_serialization=True)
            (path / "losses.json").write_text(json.dumps({"losses": [round(v, 6) for v in losses]}) + "\n")
            print(f"{spec.name}: {spec.config.steps} steps in {seconds:.0f} s")
        metrics = measure(spec, load_from_scratch(spec.name, root=out), split=split, root=out)
        if seconds is not None:
            metrics["train_seconds"] = seconds
        _write_card(path, spec, metrics)
        results[spec.name] = metrics
        print(f"{spec.name}: " + ", ".join(f"{k} = {v}" for k, v in metrics.items() if isinstance(v, Estimate)))
    return results


def measure(spec: ScratchModel, model: CourseUNet, *, split, root: Path) -> dict:
    """The card's numbers: the mean loss of the last 100 training steps, and per kind: held-out MSE at σ = 0.5
    (denoiser), held-out ε-loss over all t (pixel DDPMs), the share of 100 samples that copy a training image
    (subsets), agreement at w = 5 read by the digit classifier (class-conditioned); each with its 95 % interval."""
    losses = load_losses(spec.name, root=root)
    metrics: dict = {"final_train_loss": bootstrap_mean(np.array(losses[-100:]))}
    gen = torch.Generator().manual_seed(0)
    schedule = ddpm_schedule(spec.num_timesteps, clip_x0=None if spec.latent else 1.0)
    if spec.kind == "denoiser":
        errors = denoising_errors(lambda z, s: model(z).sample, split.x_test, sigmas=(0.5,))
        metrics["held_out_mse@sigma=0.5"] = bootstrap_mean(errors[0.5])
        return metrics
    if spec.latent:
        return metrics
    if spec.kind == "ddpm":
        per_level = held_out_loss_per_level(model, split.x_test, schedule=schedule, buckets=5)
        metrics["held_out_eps_loss"] = bootstrap_mean(np.concatenate(list(per_level.values())))
        if spec.n is not None or spec.digit is not None:
            idx = training_subset(split.y_train, n=spec.n, digit=spec.digit, seed=spec.config.seed)
            rest = torch.ones(len(split.y_train), dtype=torch.bool)
            rest[idx] = False
            samples = sample_ddpm(model, n=100, schedule=schedule, generator=gen, steps=100)
            ratio = memorization_ratio(samples, split.x_train[idx], split.x_train[rest])
            metrics[f"copies (ratio < {COPY_RATIO:.2f})"] = proportion(ratio < COPY_RATIO)
        return metrics
    labels = torch.arange(10).repeat_interleave(10)
    samples = sample_ddpm(
        model, n=100, schedule=schedule, generator=gen, class_labels=labels, guidance_scale=CFG_SCALE, steps=100
    )
    metrics[f"agreement@{CFG_SCALE:g}"] = proportion(digit_classifier().predict(samples) == labels)
    return metrics


def _write_card(path: Path, spec: ScratchModel, metrics: dict) -> None:
    """``README.md`` and ``metrics.json`` beside the weights."""
    config = spec.config
    n_params = sum(p.numel() for p in build_unet(spec, in_channels=4 if spec.latent else 1).parameters())
    data = (
        f"the scaled shapes VAE latents of `make_dataset({LATENT_SCENES['n']}, seed={LATENT_SCENES['seed']})`"
        if spec.latent
        else "the training split of scikit-learn's 8×8 digits (`load_digits_split()`)"
        + (f", first {spec.n} of a seed-{config.seed} permutation" if spec.n else "")
        + (f", only the {spec.digit}s" if spec.digit is not None else "")
    )
    lines = [
        f"# course/from-scratch/{spec.name}",
        "",
        f"{spec.summary}. A `CourseUNet` (`course_utils.models.course_unet`, resnet blocks, D = {NUM_HIDDENS},"
        f" {n_params / 1e3:.0f} k parameters), linear β 1e-4 → 0.02 over T = {spec.num_timesteps}."
        if spec.kind != "denoiser"
        else f"{spec.summary}. A `CourseUNet` without time input (resnet blocks, D = {NUM_HIDDENS},"
        f" {n_params / 1e3:.0f} k parameters).",
        "",
        f'Load: `CourseUNet.from_pretrained("data/models/{FOLDER}/{spec.name}")`'
        + (" (early copy: `…/early`)" if spec.early_step else "")
        + f', or `course_utils.models.from_scratch.load_from_scratch("{spec.name}")`.',
        "",
        f"Training (`make models ARGS='--only {FOLDER}'`, seed {config.seed}): {config.steps} steps, batch"
        f" {config.batch_size}, AdamW lr {config.lr}, warm-up {config.warmup_steps}, cosine decay, EMA"
        f" {config.ema_decay} (with warm-up), on {data}."
        + (f" `early/` is the EMA after {spec.early_step} steps." if spec.early_step else ""),
        "",
        "## Measured",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v} |" for k, v in metrics.items() if isinstance(v, Estimate)]
    lines += [
        "",
        "Intervals: 95 %, bootstrap over steps or held-out images for means, Wilson for shares;"
        " samples: DDPM over 100 strided steps, seed 0.",
    ]
    if "train_seconds" in metrics:
        lines += ["", f"Training took {metrics['train_seconds']:.0f} s on the machine that ran `make models`."]
    (path / "README.md").write_text("\n".join(lines) + "\n")
    write_metrics(path, metrics)
