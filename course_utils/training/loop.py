"""One training loop (:func:`fit`) on 🤗 accelerate: seeded, EMA, LR schedule, progress bar, checkpoints that a
restarted run resumes from bit for bit; ε-prediction (:func:`train_denoiser`) on top of it.

The loss of :func:`train_denoiser` is Ho et al. 2020, Algorithm 1: draw ``t ~ U{0..T-1}``, ``ε ~ N(0, I)``, form
``x_t = q_sample(x_0, t, ε)`` and minimise ``‖ε − ε_θ(x_t, t, c)‖²``. The EMA of the weights (Ho et al. 2020,
Appendix B) is what gets returned and saved.

The same code runs on a CPU, one GPU, or several under ``accelerate launch`` (``accelerator.prepare`` places the
model and wraps it for data parallelism; each process draws its own batches, so the effective batch is
``batch_size × processes``). With ``checkpoint_dir`` set, a run writes ``checkpoint-{step}/`` folders there every
``checkpoint_every`` steps and at its end (:mod:`course_utils.training.checkpoints`: ``accelerator.save_state``,
the EMA, the generators, atomic rename, a total limit); starting again with the same folder resumes from the
newest, so a killed run loses at most ``checkpoint_every`` steps and ends with the weights of an uninterrupted
run: batches and noise come from a ``torch.Generator`` saved with the weights, never from the global RNG.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from course_utils.errors import CourseError, check_choice
from course_utils.sampling.diffusion import q_sample
from course_utils.training.checkpoints import (
    Progress,
    check_fingerprint,
    fingerprint,
    load_best,
    load_checkpoint,
    read_progress,
    save_checkpoint,
)

__all__ = [
    "LR_SCHEDULES",
    "PREDICTION_TYPES",
    "TrainConfig",
    "ema_decay_at",
    "ema_update",
    "fit",
    "loss_weights",
    "lr_factor",
    "train_denoiser",
    "trainable_state",
    "v_target",
]

LR_SCHEDULES = ("cosine", "constant")
PREDICTION_TYPES = ("epsilon", "v_prediction")
BUDGET_FIELDS = ("checkpoint_every", "checkpoint_dir", "checkpoints_total_limit", "max_seconds")
"""Fields of :class:`TrainConfig` that change when a run stops or what it keeps, not what it computes: a run may
resume with other values of them."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`fit`.

    Attributes:
        steps: optimisation steps of the whole run (the LR schedule spans them).
        batch_size: examples per step and process.
        lr: AdamW's peak learning rate.
        warmup_steps: linear warm-up from ``lr / warmup_steps`` to ``lr``.
        lr_schedule: after warm-up, ``cosine`` (decay to 10 % of the peak at ``steps``) or ``constant``.
        ema_decay: the EMA's decay ``β`` (0 keeps a copy of the last weights' path with weight 1 on the newest).
        ema_warmup: use ``min(β, (1 + n) / (10 + n))`` at update ``n`` (diffusers' ``EMAModel`` default), so the
            average forgets the random initialisation quickly.
        grad_clip: clip the gradients' global norm to this (``None``: no clipping).
        seed: seeds the global RNG (initialisation, dropout) and the batch and noise generator.
        checkpoint_every: save a checkpoint every this many steps (and at the end).
        checkpoint_dir: where the ``checkpoint-{step}/`` folders go; ``None``: no checkpoints.
        checkpoints_total_limit: keep only the newest this many checkpoints (``None``: keep all).
        max_seconds: stop (after a checkpoint) once this much optimisation time has been spent, summed over
            resumed sessions; ``None``: no time budget.
        use_ema: keep an EMA of the weights and return it; ``False`` (fine-tuning) returns the trained weights
            themselves and saves no EMA in checkpoints.
        validation_every: validate (``fit``'s ``validate``) every this many steps; ``None``: never.
        patience: stop after this many validations in a row without a new lowest loss (early stopping);
            ``None``: run all ``steps``. Either way the weights of the best validation are what ``fit`` returns.
    """

    steps: int = 4000
    batch_size: int = 128
    lr: float = 2e-3
    warmup_steps: int = 200
    lr_schedule: str = "cosine"
    ema_decay: float = 0.995
    ema_warmup: bool = False
    grad_clip: float | None = 1.0
    seed: int = 0
    checkpoint_every: int = 500
    checkpoint_dir: str | None = None
    checkpoints_total_limit: int | None = 2
    max_seconds: float | None = None
    use_ema: bool = True
    validation_every: int | None = None
    patience: int | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise CourseError(f"TrainConfig.{name} must be positive, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise CourseError(f"TrainConfig.warmup_steps must be ≥ 0, got {self.warmup_steps}")
        if not 0 < self.lr < 1:
            raise CourseError(f"TrainConfig.lr must be in (0, 1), got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise CourseError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        check_choice("TrainConfig.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise CourseError(f"TrainConfig.grad_clip must be positive or None, got {self.grad_clip}")
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise CourseError(f"TrainConfig.checkpoints_total_limit must be ≥ 1, got {self.checkpoints_total_limit}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise CourseError(f"TrainConfig.max_seconds must be positive, got {self.max_seconds}")
        for name in ("validation_every", "patience"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise CourseError(f"TrainConfig.{name} must be ≥ 1 or None, got {getattr(self, name)}")
        if self.patience is not None and self.validation_every is None:
            raise CourseError("TrainConfig.patience needs validation_every (early stopping counts validations)")
        if self.validation_every is not None and self.use_ema:
            raise CourseError("TrainConfig.validation_every needs use_ema=False (the validated weights are returned)")

    def arithmetic(self) -> dict:
        """The fields that decide what the run computes (all but :data:`BUDGET_FIELDS`)."""
        return {k: v for k, v in asdict(self).items() if k not in BUDGET_FIELDS}


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``θ_ema ← decay · θ_ema + (1 − decay) · θ``, parameter by parameter."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p, 1 - decay)


def ema_decay_at(update: int, config: TrainConfig) -> float:
    """The EMA decay at update ``update`` (0-based): ``config.ema_decay``, or with ``config.ema_warmup``
    ``min(β, (1 + n) / (10 + n))``."""
    if not config.ema_warmup:
        return config.ema_decay
    return min(config.ema_decay, (1 + update) / (10 + update))


def lr_factor(step: int, config: TrainConfig) -> float:
    """The learning rate at ``step`` as a fraction of ``config.lr``."""
    # 1) linear warm-up, 2) cosine decay to 10 % of the peak (or constant)
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return 1.0
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item())


def _generator_seed(seed: int, process_index: int) -> int:
    """Process 0 draws from ``seed`` itself; process ``i`` from a seed derived from ``(seed, i)``."""
    if process_index == 0:
        return seed
    return int(np.random.SeedSequence([seed, process_index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def fit(
    model: torch.nn.Module,
    *,
    loss_fn: Callable[[torch.nn.Module, torch.Generator], torch.Tensor | dict[str, torch.Tensor]],
    config: TrainConfig = TrainConfig(),
    description: str = "training",
    accelerator=None,
    signature: dict | None = None,
    show_progress: bool = True,
    validate: Callable[[torch.nn.Module], float] | None = None,
) -> tuple[torch.nn.Module, list[float]]:
    """The course's one training loop: AdamW with warm-up and cosine decay, gradient clipping, an EMA of the
    weights, a progress bar with the loss, and ``checkpoint-{step}/`` folders that a restarted run resumes from.

    Args:
        model: the module whose parameters are trained (in place).
        loss_fn: ``loss_fn(model, generator) -> loss``: draws its own batch and noise with ``generator`` (on the
            CPU, seeded from ``config.seed`` and saved in checkpoints, so a resumed run draws what the full run
            drew) and returns a scalar loss, or a dict with the loss under ``"loss"`` and named parts of it (logged per
            step in the checkpoints' ``parts``); tensors it builds belong on the model's device.
        config: see :class:`TrainConfig`.
        accelerator: an ``accelerate.Accelerator`` (default: a new one). Pass your own to register
            ``register_save_state_pre_hook`` / ``register_load_state_pre_hook`` hooks that save and load only
            part of the model (adapters), or to set mixed precision.
        signature: what else a resumed run must share with the checkpoint (a recipe's name and options).
        show_progress: show the progress bar (on the main process); ``False`` keeps a notebook cell's output clean.
        validate: ``validate(model) -> loss`` on held-out data, called in eval mode without gradients every
            ``config.validation_every`` steps; it must draw its noise from its own seeded generator (never the
            training one, never the global RNG), so it is a function of the weights alone. The trainable weights of
            the lowest validation loss are kept (in checkpoints too) and restored at the end; with
            ``config.patience`` the run stops once that many validations in a row did not improve on it.

    Returns:
        (the EMA copy of the model — or with ``use_ema=False`` the model itself, at its best validation if it
        validates — unwrapped, in eval mode; the loss of every step of the run).
    """
    from accelerate import Accelerator

    accelerator = accelerator or Accelerator()
    # 1) seeds, optimizer, schedule, accelerate
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(_generator_seed(config.seed, accelerator.process_index))
    if (validate is None) != (config.validation_every is None):
        raise CourseError("fit: pass validate together with TrainConfig.validation_every, or neither")
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise CourseError("fit: the model has no trainable parameters (all have requires_grad=False)")
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    # accelerate steps a prepared schedule once per process and optimizer step: count optimizer steps
    processes = accelerator.num_processes
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s // processes, config))
    prepared, optimizer, schedule = accelerator.prepare(model, optimizer, schedule)
    unwrapped = accelerator.unwrap_model(prepared)
    ema = copy.deepcopy(unwrapped).eval().requires_grad_(False) if config.use_ema else None
    # 2) resume from the newest checkpoint of the same configuration
    expected = fingerprint(
        accelerator.unwrap_model(prepared), {**config.arithmetic(), **(signature or {})}, processes=processes
    )
    progress = Progress(fingerprint=expected)
    folder = config.checkpoint_dir
    found = read_progress(folder) if folder else None
    best = None
    if found is not None:
        check_fingerprint(found, expected)  # before a weight loads
        progress = load_checkpoint(accelerator, found.path, ema=ema, generator=generator)
        best = load_best(found.path)
    # 3) the loop
    earlier, session = list(progress.runs), {"from": progress.step, "steps": 0, "seconds": 0.0}
    out_of_time = config.max_seconds is not None and progress.seconds >= config.max_seconds
    bar = tqdm(
        total=config.steps,
        initial=progress.step,
        desc=description,
        disable=not (show_progress and accelerator.is_local_main_process),
    )
    prepared.train()
    while progress.step < config.steps and not out_of_time and not progress.stopped_early:
        started = time.perf_counter()
        loss = loss_fn(prepared, generator)
        if isinstance(loss, dict):
            for name, part in loss.items():
                if name != "loss":
                    progress.parts.setdefault(name, []).append(float(part.detach()))
            loss = loss["loss"]
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if config.grad_clip is not None:
            accelerator.clip_grad_norm_(prepared.parameters(), config.grad_clip)
        optimizer.step()
        schedule.step()
        if ema is not None:
            ema_update(ema, unwrapped, ema_decay_at(progress.step, config))
        progress.losses.append(loss.item())
        progress.step += 1
        if validate is not None and progress.step % config.validation_every == 0:
            best = _validation(prepared, unwrapped, validate, progress, best, config.patience)
            prepared.train()
        elapsed = time.perf_counter() - started
        progress.seconds += elapsed
        session["steps"] += 1
        session["seconds"] += elapsed
        out_of_time = _out_of_time(accelerator, progress.seconds, config.max_seconds)
        bar.update(1)
        if session["steps"] % 50 == 1 or progress.step == config.steps:
            bar.set_postfix(loss=f"{np.mean(progress.losses[-50:]):.4f}")
        last = progress.step == config.steps or out_of_time or progress.stopped_early
        if folder and (progress.step % config.checkpoint_every == 0 or last):
            progress.runs = [*earlier, dict(session)]
            save_checkpoint(
                accelerator,
                folder,
                progress,
                ema=ema,
                generator=generator,
                best=best,
                total_limit=config.checkpoints_total_limit,
            )
    bar.close()
    prepared.eval()
    if ema is not None:
        return ema, progress.losses
    if best is not None:
        _restore(unwrapped, best)
    return unwrapped, progress.losses


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the parameters that train (``requires_grad``), by name."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def _restore(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, value in state.items():
        params[name].copy_(value)


@torch.no_grad()
def _validation(prepared, unwrapped, validate, progress: Progress, best, patience: int | None):
    """Validate; record it; keep the trainable weights if the loss is the lowest so far; decide early stopping.
    Returns the best weights so far."""
    prepared.eval()
    value = float(validate(unwrapped))
    progress.validations.append([progress.step, value])
    lowest = min((v for s, v in progress.validations[:-1]), default=float("inf"))
    if value < lowest or best is None:
        progress.best_step = progress.step
        return trainable_state(unwrapped)
    since = sum(1 for s, _ in progress.validations if s > progress.best_step)
    if patience is not None and since >= patience:
        progress.stopped_early = True
    return best


def _out_of_time(accelerator, seconds: float, max_seconds: float | None) -> bool:
    """Has the time budget run out? With several processes, once any has spent it all stop together."""
    if max_seconds is None:
        return False
    spent = seconds >= max_seconds
    if accelerator.num_processes > 1:
        flag = torch.tensor(float(spent), device=accelerator.device)
        spent = bool(accelerator.reduce(flag, reduction="sum").item() > 0)
    return spent


def loss_weights(
    t: torch.Tensor, alphas_cumprod: torch.Tensor, *, gamma: float, prediction_type: str = "epsilon"
) -> torch.Tensor:
    """Min-SNR-γ loss weights (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy",
    eq. 9 and its v-prediction form): ``min(SNR_t, γ) / SNR_t`` for an ε loss, ``min(SNR_t, γ) / (SNR_t + 1)`` for
    a v loss, with ``SNR_t = ᾱ_t / (1 − ᾱ_t)``. ``t`` ``(B,)`` → weights ``(B,)``."""
    check_choice("prediction type", prediction_type, PREDICTION_TYPES)
    alpha_bar = alphas_cumprod.to(t.device)[t]
    snr = alpha_bar / (1 - alpha_bar)
    return snr.clamp(max=gamma) / (snr if prediction_type == "epsilon" else snr + 1)


def train_denoiser(
    model: torch.nn.Module,
    *,
    x0: torch.Tensor,
    cond: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    forward: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    drop_condition: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    prediction_type: str = "epsilon",
    snr_gamma: float | None = None,
    config: TrainConfig = TrainConfig(),
    description: str = "training",
    accelerator=None,
    signature: dict | None = None,
    show_progress: bool = True,
) -> tuple[torch.nn.Module, list[float]]:
    """Train ``model`` to denoise ``x0`` with conditions ``cond`` (Ho et al. 2020, Algorithm 1) with :func:`fit`.

    The target is ε (Ho et al. 2020) or ``v = √ᾱ_t ε − √(1 − ᾱ_t) x_0`` (Salimans & Ho 2022, eq. 9; for data of
    unit variance this is the target of Karras et al. 2022's preconditioning); the squared error is averaged per
    sample and, with ``snr_gamma``, weighted by :func:`loss_weights`.

    Args:
        model: the network; ``forward(model, x_t, t, c)`` returns its ε (or v) estimate ``(B, C, H, W)``.
        x0: the training images ``(N, C, H, W)`` in ``[-1, 1]``.
        cond: one condition per image, ``(N, ...)`` (class labels, embeddings).
        alphas_cumprod: ᾱ of the training schedule, ``(T,)``.
        drop_condition: replaces some conditions by the null condition (classifier-free guidance
            training, Ho & Salimans 2022, Algorithm 1).
        prediction_type: ``epsilon`` or ``v_prediction``.
        snr_gamma: γ of the Min-SNR-γ weights; ``None``: unweighted.
        config, accelerator, signature, show_progress: see :func:`fit`.

    Returns:
        (EMA model, loss per step).
    """
    check_choice("prediction type", prediction_type, PREDICTION_TYPES)
    num_timesteps = alphas_cumprod.shape[0]

    def denoising_loss(net: torch.nn.Module, gen: torch.Generator) -> torch.Tensor:
        # 1) a batch and its conditions (some dropped), 2) t ~ U{0..T-1}, ε ~ N(0, I), x_t, 3) ‖target − out‖²
        device = next(net.parameters()).device
        idx = torch.randint(0, x0.shape[0], (config.batch_size,), generator=gen)
        x, c = x0[idx], cond[idx]
        if drop_condition is not None:
            c = drop_condition(c, gen)
        t = torch.randint(0, num_timesteps, (config.batch_size,), generator=gen)
        eps = torch.randn(x.shape, generator=gen)
        x, c, t, eps = x.to(device), c.to(device), t.to(device), eps.to(device)
        abar = alphas_cumprod.to(device)
        x_t = q_sample(x, t, eps, alphas_cumprod=abar)
        out = forward(net, x_t, t, c)
        if prediction_type == "epsilon" and snr_gamma is None:
            return torch.nn.functional.mse_loss(out, eps)
        target = eps if prediction_type == "epsilon" else v_target(x, t, eps, alphas_cumprod=abar)
        per_sample = (out - target).pow(2).flatten(1).mean(dim=1)  # (B,)
        if snr_gamma is not None:
            per_sample = per_sample * loss_weights(t, abar, gamma=snr_gamma, prediction_type=prediction_type)
        return per_sample.mean()

    return fit(
        model,
        loss_fn=denoising_loss,
        config=config,
        description=description,
        accelerator=accelerator,
        signature=signature,
        show_progress=show_progress,
    )


def v_target(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, *, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``v = √ᾱ_t ε − √(1 − ᾱ_t) x_0`` (Salimans & Ho 2022, eq. 9); shapes as ``x0`` ``(B, C, H, W)``."""
    alpha_bar = alphas_cumprod[t].reshape(-1, *([1] * (x0.ndim - 1)))
    return alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0
