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

__all__ = [
    "BlockParameters",
    "BlockShapes",
    "ComponentRow",
    "block_parameters",
    "describe_pipeline",
    "feature_map_shapes",
    "format_rows",
]


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


# ---------------------------------------------------------------------------------------------- inside the U-Net


@dataclass(frozen=True)
class BlockParameters:
    """One top-level block of a model: ``name`` (its attribute, ``down_blocks.0`` for list items), ``kind`` (its
    class), ``parameters`` and ``share`` (of the model's total)."""

    name: str
    kind: str
    parameters: int
    share: float

    def row(self) -> dict[str, Any]:
        """For :func:`format_rows`."""
        return {
            "block": self.name,
            "class": self.kind,
            "parameters": f"{self.parameters:,}",
            "share": f"{self.share:.1%}",
        }


def _blocks(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The top-level children of ``model`` in registration order, list containers expanded (``down_blocks.0``, …)."""
    out = []
    for name, child in model.named_children():
        if isinstance(child, torch.nn.ModuleList | torch.nn.ModuleDict):
            out += [(f"{name}.{key}", grandchild) for key, grandchild in child.named_children()]
        else:
            out.append((name, child))
    return out


def block_parameters(model: torch.nn.Module) -> list[BlockParameters]:
    """The parameter count of each top-level block of ``model`` (for a ``UNet2DConditionModel``: ``conv_in``,
    ``time_proj`` (none: sinusoids), ``time_embedding``, ``down_blocks.i``, ``up_blocks.i``, ``mid_block``,
    ``conv_norm_out``, ``conv_act``, ``conv_out``), in registration order. Parameters directly on ``model`` (none
    in diffusers' U-Nets) get a row ``(own)``, so the rows always sum to ``model``'s total."""
    total = sum(p.numel() for p in model.parameters())
    rows = [(name, type(block).__name__, sum(p.numel() for p in block.parameters())) for name, block in _blocks(model)]
    own = sum(p.numel() for p in model.parameters(recurse=False))
    if own:
        rows.append(("(own)", type(model).__name__, own))
    return [BlockParameters(name, kind, count, count / total if total else 0.0) for name, kind, count in rows]


@dataclass(frozen=True)
class BlockShapes:
    """What one block saw in a forward pass: ``inputs`` (the shape of each tensor argument, positional then
    keyword, e.g. an up block's ``hidden_states`` and its skips) and ``output`` (the shape of its result, or of its
    first element: a down block returns ``(hidden_states, skips)``); ``skips`` are the shapes of a down block's
    skip features (``()`` for other blocks)."""

    name: str
    kind: str
    inputs: tuple[tuple[int, ...], ...]
    output: tuple[int, ...]
    skips: tuple[tuple[int, ...], ...] = ()

    def row(self) -> dict[str, Any]:
        """For :func:`format_rows`: shapes written ``B×C×H×W``."""

        def shape(s: tuple[int, ...]) -> str:
            return "×".join(str(d) for d in s)

        return {
            "block": self.name,
            "class": self.kind,
            "input": ", ".join(shape(s) for s in self.inputs[:1]),
            "output": shape(self.output),
            "skips": ", ".join(shape(s) for s in self.skips),
        }


def _tensor_shapes(value: Any) -> list[tuple[int, ...]]:
    if isinstance(value, torch.Tensor):
        return [tuple(value.shape)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _tensor_shapes(v)]
    return []


@torch.no_grad()
def feature_map_shapes(
    unet: torch.nn.Module,
    *,
    sample: torch.Tensor,
    timestep: torch.Tensor | int,
    encoder_hidden_states: torch.Tensor,
    **conditions: torch.Tensor,
) -> list[BlockShapes]:
    """Run ``unet(sample, timestep, encoder_hidden_states, **conditions)`` once with forward hooks on each top-level
    block and return the shapes each block saw, in the order the blocks ran (the "U": down, mid, up).

    Args:
        unet: a diffusers ``UNet2DConditionModel`` (any module whose blocks are called with tensors works).
        sample: latents ``(B, C, H, W)``.
        timestep: the diffusion timestep ``t`` (an int or ``(B,)``).
        encoder_hidden_states: the text encoder's output ``(B, tokens, width)``.
        conditions: further inputs the model takes by keyword (``class_labels=(B,)`` for a class-conditioned one).

    Blocks the forward pass skips (``time_proj`` runs, ``conv_act`` runs, a block that is ``None`` does not) have no
    row. The hooks are removed before returning, also on error.
    """
    seen: list[BlockShapes] = []
    handles = []

    def hook(name: str):
        def record(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            inputs = tuple(_tensor_shapes(list(args)) + _tensor_shapes(list(kwargs.values())))
            first, skips = output, ()
            if isinstance(output, tuple):
                first = output[0]
                skips = tuple(_tensor_shapes(list(output[1:])))
            out = _tensor_shapes(first)
            seen.append(BlockShapes(name, type(module).__name__, inputs, out[0] if out else (), skips))

        return record

    try:
        for name, block in _blocks(unet):
            handles.append(block.register_forward_hook(hook(name), with_kwargs=True))
        unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, **conditions)
    finally:
        for handle in handles:
            handle.remove()
    return seen


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
