"""One training loop (:func:`fit`): seeded, EMA, progress bar, checkpoints, resume; ε-prediction on top of it.

The loss is Ho et al. 2020, Algorithm 1: draw ``t ~ U{0..T-1}``, ``ε ~ N(0, I)``, form
``x_t = q_sample(x_0, t, ε)`` and minimise ``‖ε − ε_θ(x_t, t, c)‖²``. The EMA of the weights
(Ho et al. 2020, Appendix B) is what gets saved.

A run writes ``checkpoint.pt`` (weights, EMA, optimizer, RNG state, step) every
``checkpoint_every`` steps into ``checkpoint_dir``; starting again with the same directory resumes
from the last one, so a killed run loses at most ``checkpoint_every`` steps.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from course_utils.errors import CourseError
from course_utils.sampling.diffusion import q_sample

__all__ = ["TrainConfig", "ema_update", "fit", "train_denoiser"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train_denoiser`."""

    steps: int = 4000
    batch_size: int = 128
    lr: float = 2e-3
    warmup_steps: int = 200
    ema_decay: float = 0.995
    seed: int = 0
    checkpoint_every: int = 500
    checkpoint_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise CourseError(f"TrainConfig.{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.lr < 1:
            raise CourseError(f"TrainConfig.lr must be in (0, 1), got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise CourseError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}")


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``θ_ema ← decay · θ_ema + (1 − decay) · θ``, parameter by parameter."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p, 1 - decay)


def _lr_factor(step: int, config: TrainConfig) -> float:
    # 1) linear warm-up, 2) cosine decay to 10 % of the peak
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item())


def fit(
    model: torch.nn.Module,
    *,
    loss_fn: Callable[[torch.nn.Module, torch.Generator], torch.Tensor],
    config: TrainConfig = TrainConfig(),
    description: str = "training",
) -> tuple[torch.nn.Module, list[float]]:
    """The course's one training loop: AdamW with warm-up and cosine decay, gradient clipping, an EMA of
    the weights, a tqdm bar, and checkpoints that a restarted run resumes from.

    Args:
        model: the module whose parameters are trained.
        loss_fn: ``loss_fn(model, generator) -> loss``: draws its own batch with ``generator`` (seeded by
            ``config.seed`` and saved in checkpoints, so a resumed run draws what the full run drew) and
            returns a scalar loss.
        config: see :class:`TrainConfig`.

    Returns:
        (the EMA copy of the model, the loss of every step).
    """
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, config))
    losses: list[float] = []
    start = 0
    ckpt = Path(config.checkpoint_dir) / "checkpoint.pt" if config.checkpoint_dir else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        if state["config"] != asdict(config):
            raise CourseError(f"{ckpt} was written with another configuration; delete it to start afresh")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        losses, start = state["losses"], state["step"]
    model.train()
    bar = tqdm(range(start, config.steps), desc=description, initial=start, total=config.steps)
    for step in bar:
        loss = loss_fn(model, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        ema_update(ema, model, config.ema_decay)
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
        if ckpt is not None and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
            _save_checkpoint(ckpt, model, ema, opt, sched, gen, losses, step + 1, config)
    model.eval()
    return ema, losses


def train_denoiser(
    model: torch.nn.Module,
    *,
    x0: torch.Tensor,
    cond: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    forward: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    drop_condition: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    config: TrainConfig = TrainConfig(),
    description: str = "training",
) -> tuple[torch.nn.Module, list[float]]:
    """Train ``model`` to predict ε on ``x0`` with conditions ``cond`` (Ho et al. 2020, Algorithm 1) with :func:`fit`.

    Args:
        model: the network; ``forward(model, x_t, t, c)`` returns its ε estimate ``(B, C, H, W)``.
        x0: the training images ``(N, C, H, W)`` in ``[-1, 1]``.
        cond: one condition per image, ``(N, ...)`` (class labels, embeddings).
        alphas_cumprod: ᾱ of the training schedule, ``(T,)``.
        drop_condition: replaces some conditions by the null condition (classifier-free guidance
            training, Ho & Salimans 2022, Algorithm 1).
        config: see :class:`TrainConfig`.

    Returns:
        (EMA model, loss per step).
    """
    num_timesteps = alphas_cumprod.shape[0]

    def eps_loss(net: torch.nn.Module, gen: torch.Generator) -> torch.Tensor:
        # 1) a batch and its conditions (some dropped), 2) t ~ U{0..T-1}, ε ~ N(0, I), 3) ‖ε − ε_θ(x_t, t, c)‖²
        idx = torch.randint(0, x0.shape[0], (config.batch_size,), generator=gen)
        x, c = x0[idx], cond[idx]
        if drop_condition is not None:
            c = drop_condition(c, gen)
        t = torch.randint(0, num_timesteps, (config.batch_size,), generator=gen)
        eps = torch.randn(x.shape, generator=gen)
        x_t = q_sample(x, t, eps, alphas_cumprod=alphas_cumprod)
        return torch.nn.functional.mse_loss(forward(net, x_t, t, c), eps)

    return fit(model, loss_fn=eps_loss, config=config, description=description)


def _save_checkpoint(path: Path, model, ema, opt, sched, gen, losses, step: int, config: TrainConfig) -> None:
    """Write atomically (temp file + rename) so a kill mid-write never leaves a broken checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "opt": opt.state_dict(),
        "sched": sched.state_dict(),
        "gen": gen.get_state(),
        "losses": losses,
        "step": step,
        "config": asdict(config),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
