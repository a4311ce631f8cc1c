"""Checkpoint folders of the training loop: ``checkpoint-{step}/`` written with accelerate, committed by a rename.

A run's folder holds one ``checkpoint-{step}/`` per save (the newest ``total_limit`` of them are kept). Each is
``accelerator.save_state`` (weights ``model.safetensors``, ``optimizer.bin``, ``scheduler.bin``, the global RNG
states ``random_states_{i}.pkl``) plus what the loop adds:

- ``ema.safetensors``: the EMA of the weights (when the run keeps one);
- ``best.safetensors``: the trainable weights at the best validation so far (when the run validates);
- ``generator_{i}.pt``: the state of process ``i``'s ``torch.Generator`` that draws every batch and every noise;
- ``loop_state.json``, written last: the step, the optimisation seconds so far, the loss of every step, the
  sessions that ran (``runs``: where each process start began and how many steps it ran) and the run's
  *fingerprint* (its configuration and the model's parameter shapes), which a resume must match.

A checkpoint is written into ``checkpoint-{step}.tmp/`` and renamed when complete, and only then are old ones
pruned: a kill during a save leaves the previous checkpoint as the latest, and the ``.tmp`` folder is ignored
(and removed by the next save). This is the order Hugging Face ``datasets`` uses (build into ``*.incomplete``,
rename); diffusers' training scripts prune before they save.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from course_utils.errors import CourseError

__all__ = [
    "CHECKPOINT_PATTERN",
    "Progress",
    "check_fingerprint",
    "checkpoint_folders",
    "fingerprint",
    "latest_checkpoint",
    "load_best",
    "load_checkpoint",
    "prune_checkpoints",
    "read_progress",
    "save_checkpoint",
]

CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)")
"""A complete checkpoint's folder name; ``checkpoint-{step}.tmp`` is one being written."""
STATE_FILE = "loop_state.json"
EMA_FILE = "ema.safetensors"
BEST_FILE = "best.safetensors"


@dataclass
class Progress:
    """Where a run stands, as its latest checkpoint says.

    Attributes:
        step: optimisation steps done.
        seconds: optimisation time so far (summed over every session; saving and loading not counted).
        losses: the loss of every step.
        runs: one entry per session (process start) that trained: ``{"from": step, "steps": n, "seconds": s}``,
            ``n`` counted by that session's loop.
        fingerprint: see :func:`fingerprint`.
        parts: named parts of the loss, each a value per step (e.g. DreamBooth's ``instance`` and ``prior``).
        validations: ``[step, validation loss]`` of every validation so far.
        best_step: the step of the lowest validation loss so far (``None``: no validation yet).
        stopped_early: the run ended because validation stopped improving (early stopping).
        path: the checkpoint folder (``None`` before the first save).
    """

    step: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    parts: dict[str, list[float]] = field(default_factory=dict)
    validations: list[list[float]] = field(default_factory=list)
    best_step: int | None = None
    stopped_early: bool = False
    path: Path | None = None

    def record(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "seconds": self.seconds,
            "runs": self.runs,
            "fingerprint": self.fingerprint,
            "losses": self.losses,
            "parts": self.parts,
            "validations": self.validations,
            "best_step": self.best_step,
            "stopped_early": self.stopped_early,
        }


def fingerprint(model: torch.nn.Module, settings: dict[str, Any], *, processes: int = 1) -> dict[str, Any]:
    """What a resumed run must share with the run that wrote the checkpoint: ``settings`` (the configuration
    that changes the arithmetic), the number of processes, and a hash of the model's parameter names and shapes."""
    shapes = ";".join(f"{name}:{tuple(p.shape)}" for name, p in model.state_dict().items())
    return {
        **settings,
        "processes": processes,
        "parameters": hashlib.sha256(shapes.encode()).hexdigest()[:16],
    }


def checkpoint_folders(folder: str | Path) -> list[Path]:
    """The complete checkpoints in ``folder`` (those whose ``loop_state.json`` exists), oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [
        (int(match[1]), path)
        for path in folder.iterdir()
        if (match := CHECKPOINT_PATTERN.fullmatch(path.name)) and (path / STATE_FILE).is_file()
    ]
    return [path for _, path in sorted(found)]


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest complete checkpoint in ``folder``, or ``None``."""
    folders = checkpoint_folders(folder)
    return folders[-1] if folders else None


def read_progress(folder: str | Path) -> Progress | None:
    """The :class:`Progress` recorded by the newest complete checkpoint in ``folder``, or ``None``."""
    path = latest_checkpoint(folder)
    if path is None:
        return None
    record = json.loads((path / STATE_FILE).read_text())
    return Progress(
        step=record["step"],
        seconds=record["seconds"],
        losses=record["losses"],
        runs=record["runs"],
        fingerprint=record["fingerprint"],
        parts=record.get("parts", {}),
        validations=record.get("validations", []),
        best_step=record.get("best_step"),
        stopped_early=record.get("stopped_early", False),
        path=path,
    )


def check_fingerprint(progress: Progress, expected: dict[str, Any]) -> None:
    """Refuse, in one line, to resume from a checkpoint written by another configuration."""
    if progress.fingerprint == expected:
        return
    keys = sorted(set(progress.fingerprint) | set(expected), key=str)
    changed = [
        f"{k} {progress.fingerprint.get(k)!r} → {expected.get(k)!r}"
        for k in keys
        if progress.fingerprint.get(k) != expected.get(k)
    ]
    raise CourseError(
        f"{progress.path} was written with another configuration ({'; '.join(changed)}); "
        f"use another folder or delete {progress.path.parent} to start afresh"
    )


def save_checkpoint(
    accelerator: Any,
    folder: str | Path,
    progress: Progress,
    *,
    ema: torch.nn.Module | None,
    generator: torch.Generator,
    best: dict[str, torch.Tensor] | None = None,
    total_limit: int | None = None,
) -> Path:
    """Write ``folder/checkpoint-{progress.step}/`` (see the module docstring); every process calls it.

    Steps: 1) ``accelerator.save_state`` into ``checkpoint-{step}.tmp/`` (weights, optimizer, schedule, global
    RNG; the registered save hooks run here), 2) each process's generator, the EMA (if any), the best weights (if
    any) and ``loop_state.json`` last, 3) rename to ``checkpoint-{step}/``, 4) prune to the newest ``total_limit``.
    """
    folder = Path(folder)
    final = folder / f"checkpoint-{progress.step}"
    tmp = folder / f"{final.name}.tmp"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("checkpoint-*.tmp"):  # left by a run killed while saving
            shutil.rmtree(stale)
    accelerator.wait_for_everyone()
    # 1) accelerate's own state
    accelerator.save_state(str(tmp))
    # 2) what the loop adds; the state file last, so a folder without it is incomplete
    torch.save(generator.get_state(), tmp / f"generator_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if ema is not None:
            save_model(ema, str(tmp / EMA_FILE))
        if best is not None:
            save_file({name: t.detach().contiguous() for name, t in best.items()}, str(tmp / BEST_FILE))
        (tmp / STATE_FILE).write_text(json.dumps(progress.record()) + "\n")
        # 3) commit: a checkpoint of this step can only exist from an earlier run that stopped here
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        # 4) only now forget old ones
        prune_checkpoints(folder, total_limit)
    accelerator.wait_for_everyone()
    progress.path = final
    return final


def prune_checkpoints(folder: str | Path, total_limit: int | None) -> list[Path]:
    """Delete all but the newest ``total_limit`` complete checkpoints in ``folder``; return the deleted ones."""
    if total_limit is None:
        return []
    old = checkpoint_folders(folder)[:-total_limit]
    for path in old:
        shutil.rmtree(path)
    return old


def load_checkpoint(
    accelerator: Any, path: str | Path, *, ema: torch.nn.Module | None, generator: torch.Generator
) -> Progress:
    """Restore a checkpoint written by :func:`save_checkpoint` into the prepared objects, ``ema`` (if the run keeps
    one) and ``generator``; return its :class:`Progress`. The registered load hooks run inside ``load_state``."""
    path = Path(path)
    progress = read_progress(path.parent)
    if progress is None or progress.path != path:
        raise CourseError(f"{path} is not the latest complete checkpoint of {path.parent}")
    accelerator.load_state(str(path))
    if ema is not None:
        load_model(ema, str(path / EMA_FILE), device=str(next(ema.parameters()).device))
    generator_file = path / f"generator_{accelerator.process_index}.pt"
    generator.set_state(torch.load(generator_file, weights_only=True))
    return progress


def load_best(path: str | Path) -> dict[str, torch.Tensor] | None:
    """The best weights a checkpoint holds (``best.safetensors``), or ``None`` where the run does not validate."""
    file = Path(path) / BEST_FILE
    return load_file(str(file)) if file.is_file() else None
