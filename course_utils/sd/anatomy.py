"""What a loaded diffusers pipeline is made of: one row per component, for the notebooks that take Stable
Diffusion apart (tokenizers, text encoders, the U-Net or transformer, the VAE, the scheduler).

    for row in describe_pipeline(pipe):
        print(row)

A row names the component, its class, its parameter count (modules only) and the configuration values that
explain its role: a tokenizer's vocabulary and context length; a text encoder's width and depth (what the U-Net
cross-attends to); the denoiser's latent channels, sample size and cross-attention width; the VAE's latent
channels, downsampling factor and scaling factor ``s`` (``z = s · E(x)``); the scheduler's schedule and prediction
type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["ComponentRow", "describe_pipeline", "format_rows"]


@dataclass(frozen=True)
class ComponentRow:
    """One component of a pipeline: ``name`` (the attribute), ``kind`` (its class), ``parameters`` (``None`` for
    non-modules) and ``details`` (the configuration values that say what it does)."""

    name: str
    kind: str
    parameters: int | None
    details: str

    def __str__(self) -> str:
        count = "" if self.parameters is None else f"{self.parameters / 1e6:,.2f} M params"
        return f"{self.name:<16} {self.kind:<34} {count:>18}  {self.details}"


def _config(obj: Any) -> dict[str, Any]:
    config = getattr(obj, "config", None)
    if config is None:
        return {}
    return dict(config) if not hasattr(config, "to_dict") else config.to_dict()


def _details(name: str, obj: Any) -> str:
    c = _config(obj)
    if hasattr(obj, "model_max_length") and hasattr(obj, "__len__"):  # a tokenizer
        return f"vocabulary {len(obj):,}, context {obj.model_max_length} tokens"
    if "vocab_size" in c and ("hidden_size" in c or "d_model" in c):  # a text encoder (CLIP or T5)
        width = c.get("hidden_size", c.get("d_model"))
        layers = c.get("num_hidden_layers", c.get("num_layers"))
        projection = (
            f", projection {c['projection_dim']}"
            if "projection_dim" in c and "WithProjection" in type(obj).__name__
            else ""
        )
        return f"width {width}, {layers} layers{projection}"
    if "block_out_channels" in c and "latent_channels" in c:  # the VAE
        factor = 2 ** (len(c["block_out_channels"]) - 1)
        scale = c.get("scaling_factor")
        return f"{c['latent_channels']} latent channels, ×{factor} per side, scaling factor s = {scale:g}"
    if "cross_attention_dim" in c or "joint_attention_dim" in c:  # the denoiser: U-Net or transformer
        width = c.get("cross_attention_dim", c.get("joint_attention_dim"))
        patch = f", patches {c['patch_size']}×{c['patch_size']}" if c.get("patch_size") else ""
        return f"latents {c.get('in_channels')}×{c.get('sample_size')}², text width {width}{patch}"
    if "num_train_timesteps" in c:  # a scheduler
        schedule = c.get("beta_schedule", "flow matching" if "shift" in c else "?")
        return f"T = {c['num_train_timesteps']}, {schedule}, predicts {c.get('prediction_type', 'velocity')}"
    return ""


def describe_pipeline(pipe: Any) -> list[ComponentRow]:
    """One :class:`ComponentRow` per component of ``pipe`` (``pipe.components``); absent optional ones are skipped."""
    rows = []
    for name, obj in pipe.components.items():
        if obj is None:
            continue
        parameters = sum(p.numel() for p in obj.parameters()) if isinstance(obj, torch.nn.Module) else None
        rows.append(ComponentRow(name, type(obj).__name__, parameters, _details(name, obj)))
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """Dict rows (same keys) as an aligned text table, for notebooks and terminals."""
    if not rows:
        return ""
    keys = list(rows[0])
    cells = [[str(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(line.rstrip() for line in lines)
