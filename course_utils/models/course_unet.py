"""The course U-Net: a small, readable denoiser built from named blocks, CS180 part B's "U" with diffusers' bricks.

The skeleton is the U-Net of Berkeley's CS180/280A project 5, part B ("Diffusion Models from Scratch"), scaled
from 28×28 MNIST to the 8×8 digits: two halvings down (8 → 4 → 2), a ``Flatten`` to a 1×1 vector (AvgPool over
the 2×2 bottleneck) and back (``Unflatten``, a 2×2 transposed conv), two doublings up, with skip connections
concatenated at every level (Ronneberger et al. 2015, "U-Net"). In channels, with ``D = num_hiddens``::

    x (B, C, 8, 8) ─ConvBlock→ (B, D, 8, 8) ──────────────────────────────────────────────┐ skip
                     ─DownBlock→ (B, D, 4, 4) ────────────────────────────────┐ skip       │
                       ─DownBlock→ (B, 2D, 2, 2) ──────────────────┐ skip     │            │
                         ─Flatten→ (B, 2D, 1, 1) ─Unflatten→ (B, 2D, 2, 2) ⊕ → UpBlock → ⊕ → UpBlock → ⊕ → ConvBlock
                                                   ↑ cond. + attention        (B, D, 4, 4) ↑ cond. + attention
                                                                                      → Conv → ε̂ or x̂ (B, C, 8, 8)

One configuration (:class:`CourseUNet`'s ``@register_to_config`` arguments) covers the three networks of part B
and more:

- ``time_embedding=None, num_classes=None``: the single-step denoiser ``D(z)`` (trained on ``z = x + σε``);
- ``time_embedding="scalar"`` (t/T, as CS180) or ``"sinusoidal"`` (Vaswani et al. 2017, as Ho et al. 2020): the
  time-conditioned ``ε_θ(x_t, t)`` of DDPM;
- ``num_classes=10`` as well: the class-conditioned ``ε_θ(x_t, t, c)`` with ``c`` a one-hot vector, and the zero
  vector for "no class", the null condition of classifier-free guidance (Ho & Salimans 2022; train with
  ``p_uncond = 0.1``, :func:`drop_classes`);
- ``attention=True`` adds self-attention, ``cross_attention_dim=D_ctx`` cross-attention to a context
  ``(B, L, D_ctx)`` (text-encoder hidden states, Rombach et al. 2022), at the two places conditioning enters:
  the 2×2 bottleneck and the 4×4 level on the way up.

``block_type`` chooses the bricks of every ConvBlock slot:

- ``"cs180"``: CS180's ``ConvBlock`` (two Conv→Norm→GELU), the network conditioned *from outside* as part B does it:
  ``FCBlock``\\ s turn ``t`` and ``c`` into per-channel vectors that modulate the unflattened bottleneck and the
  first up block, ``h ← c₁ ⊙ h + t₁`` (FiLM, Perez et al. 2018);
- ``"resnet"``: :class:`ResBlock`, diffusers' ``ResnetBlock2D`` (the block of DDPM and Stable Diffusion): the
  embedding ``e = FC_t(τ(t)) + FC_c(c)`` enters *every* block, added to its feature map after the first conv.

Both use GroupNorm where CS180 uses BatchNorm: an EMA of the weights averages parameters, not BatchNorm's
running statistics, so an EMA copy of a BatchNorm network samples with the statistics of its untrained start;
GroupNorm's statistics are per image, the same in training, sampling and under classifier-free guidance's
doubled batches.

The class is a diffusers ``ModelMixin, ConfigMixin``: ``save_pretrained(path)`` writes ``config.json`` and
``diffusion_pytorch_model.safetensors``, ``CourseUNet.from_pretrained(path)`` loads them, and ``forward`` returns
a ``UNet2DOutput`` as ``UNet2DModel`` does. :func:`parameters_per_block` reports its size block by block.

Shapes: images ``(B, C, H, W)`` with ``H = W = sample_size`` (a multiple of 4); timesteps ``(B,)``; classes
``(B,)`` long in ``0..K`` (``K`` = no class) or ``(B, K)`` float; context ``(B, L, D_ctx)``.
"""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput
from torch import nn

from course_utils.errors import CourseError, check_choice

__all__ = [
    "BLOCK_TYPES",
    "TIME_EMBEDDINGS",
    "Conv",
    "ConvBlock",
    "CourseUNet",
    "CrossAttention",
    "DownBlock",
    "DownConv",
    "FCBlock",
    "Flatten",
    "ResBlock",
    "SelfAttention",
    "UpBlock",
    "UpConv",
    "Unflatten",
    "class_vectors",
    "drop_classes",
    "multi_head_attention",
    "parameters_per_block",
    "sinusoidal_embedding",
]

BLOCK_TYPES = ("cs180", "resnet")
TIME_EMBEDDINGS = (None, "scalar", "sinusoidal")


# ---- the time embedding ----------------------------------------------------------------------------------------


def sinusoidal_embedding(t: torch.Tensor, dim: int, *, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps (Vaswani et al. 2017, §3.5; used for ``t`` by Ho et al. 2020, App. B).

    Frequencies ``ω_i = max_period^(−i/(dim/2))`` for ``i = 0 … dim/2 − 1`` (Vaswani's ``1/10000^(2i/d)``), and
    ``τ(t) = [cos(t·ω), sin(t·ω)]``: the two halves side by side rather than interleaved, cosines first, exactly
    diffusers' ``get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0)`` (``UNet2DModel``'s
    default). Low ``i`` turn fast (they tell neighbouring steps apart), high ``i`` slowly (coarse position).

    Args:
        t: timesteps ``(B,)`` (int or float; fractional ``t`` are fine).
        dim: the embedding width, even.

    Returns:
        ``(B, dim)`` float32, on ``t``'s device.
    """
    if dim <= 0 or dim % 2:
        raise CourseError(f"the sinusoidal embedding needs an even, positive width, got {dim}")
    if t.ndim != 1:
        raise CourseError(f"timesteps must have shape (B,), got {tuple(t.shape)}")
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=t.device)  # (dim/2,)
    omega = torch.exp(-math.log(max_period) * i / half)  # (dim/2,) ω_i = max_period^(−i/half)
    angles = t.float()[:, None] * omega[None, :]  # (B, 1) · (1, dim/2) → (B, dim/2)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)  # (B, dim)


# ---- CS180 part B's blocks (GroupNorm in place of its BatchNorm) -----------------------------------------------


def _groups(channels: int, groups: int) -> int:
    """The largest number of groups ≤ ``groups`` that divides ``channels`` (1 for a 1-channel input)."""
    return math.gcd(channels, groups)


class Conv(nn.Module):
    """CS180's ``Conv``: 3×3 conv (stride 1, padding 1) → norm → GELU, size kept. ``(B, in, H, W) → (B, out, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int, *, groups: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm = nn.GroupNorm(_groups(out_channels, groups), out_channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))  # (B, in, H, W) → (B, out, H, W)


class DownConv(nn.Module):
    """CS180's ``DownConv``: 3×3 conv with stride 2 → norm → GELU. ``(B, in, H, W) → (B, out, H/2, W/2)``."""

    def __init__(self, in_channels: int, out_channels: int, *, groups: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1)
        self.norm = nn.GroupNorm(_groups(out_channels, groups), out_channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))  # (B, in, H, W) → (B, out, H/2, W/2)


class UpConv(nn.Module):
    """CS180's ``UpConv``: 4×4 transposed conv, stride 2 → norm → GELU. ``(B, in, H, W) → (B, out, 2H, 2W)``."""

    def __init__(self, in_channels: int, out_channels: int, *, groups: int = 8):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1)
        self.norm = nn.GroupNorm(_groups(out_channels, groups), out_channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))  # (B, in, H, W) → (B, out, 2H, 2W)


class Flatten(nn.Module):
    """CS180's ``Flatten``: average-pool the ``s×s`` bottleneck to one vector → GELU. ``(B, C, s, s) → (B, C, 1, 1)``.

    CS180 pools 7×7 (28×28 MNIST after two halvings); at 8×8 the bottleneck is 2×2.
    """

    def __init__(self, side: int):
        super().__init__()
        self.pool = nn.AvgPool2d(side)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.pool(x))  # (B, C, s, s) → (B, C, 1, 1)


class Unflatten(nn.Module):
    """CS180's ``Unflatten``: ``s×s`` transposed conv, stride ``s`` → norm → GELU. ``(B, C, 1, 1) → (B, C, s, s)``."""

    def __init__(self, channels: int, side: int, *, groups: int = 8):
        super().__init__()
        self.conv = nn.ConvTranspose2d(channels, channels, kernel_size=side, stride=side)
        self.norm = nn.GroupNorm(_groups(channels, groups), channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))  # (B, C, 1, 1) → (B, C, s, s)


class ConvBlock(nn.Module):
    """CS180's ``ConvBlock``: two :class:`Conv` in a row, no conditioning inside. ``(B, in, H, W) → (B, out, H, W)``.

    Against :class:`ResBlock` (diffusers' ``ResnetBlock2D``) it lacks three things: the skip around the two convs
    (``x + F(x)``, He et al. 2016), the time embedding added between them, and pre-activation (ResBlock normalises
    and activates *before* each conv; here each conv comes first). CS180 conditions its network from outside the
    blocks instead (:class:`CourseUNet`'s FiLM at two places).
    """

    def __init__(self, in_channels: int, out_channels: int, *, groups: int = 8):
        super().__init__()
        self.conv1 = Conv(in_channels, out_channels, groups=groups)
        self.conv2 = Conv(out_channels, out_channels, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))  # (B, in, H, W) → (B, out, H, W) → (B, out, H, W)


class DownBlock(nn.Module):
    """CS180's ``DownBlock``: :class:`DownConv` then a block at the new size. ``(B, in, H, W) → (B, out, H/2, W/2)``.

    ``block`` is a :class:`ConvBlock` (CS180) or a :class:`ResBlock`; ``*cond`` (the embedding ``e``) goes to the
    latter only.
    """

    def __init__(self, down: DownConv, block: nn.Module):
        super().__init__()
        self.down = down
        self.block = block

    def forward(self, x: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
        return self.block(self.down(x), *cond)  # (B, in, H, W) → (B, out, H/2, W/2) → (B, out, H/2, W/2)


class UpBlock(nn.Module):
    """CS180's ``UpBlock``: :class:`UpConv` then a block at the new size. ``(B, in, H, W) → (B, out, 2H, 2W)``."""

    def __init__(self, up: UpConv, block: nn.Module):
        super().__init__()
        self.up = up
        self.block = block

    def forward(self, x: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
        return self.block(self.up(x), *cond)  # (B, in, H, W) → (B, out, 2H, 2W) → (B, out, 2H, 2W)


class FCBlock(nn.Module):
    """CS180's ``FCBlock``: Linear → GELU → Linear, for the conditioning. ``(B, in) → (B, out)``.

    diffusers' ``TimestepEmbedding`` is the same two layers with SiLU between them.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, out_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(out_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (B, in) → (B, out) → (B, out)


# ---- diffusers' bricks, written out ----------------------------------------------------------------------------


class ResBlock(nn.Module):
    """A residual block with a time (and class) embedding: the block of DDPM's U-Net (Ho et al. 2020, App. B, after
    Wide ResNets) and of Stable Diffusion's, written out. ``(B, in, H, W), (B, E) → (B, out, H, W)``.

    The same as diffusers' ``ResnetBlock2D(in_channels, out_channels, temb_channels=E, groups, groups_out, eps,
    dropout)`` with its defaults (``time_embedding_norm="default"``, ``output_scale_factor=1``, no up/down
    sampling): same layers under the same names (a ``ResnetBlock2D`` state dict loads here unchanged) and the same
    order: GroupNorm → SiLU → conv₁ → **+ Linear(SiLU(e))** per channel → GroupNorm → SiLU → dropout → conv₂, plus
    the input (through a 1×1 conv when the channels change). The embedding is a per-channel shift of the feature
    map, the same for every pixel. Without ``emb_dim`` the block is unconditioned (``temb_channels=None``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        emb_dim: int | None = None,
        groups: int = 8,
        groups_out: int | None = None,
        eps: float = 1e-5,
        dropout: float = 0.0,
    ):
        super().__init__()
        groups_out = groups if groups_out is None else groups_out
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.time_emb_proj = nn.Linear(emb_dim, out_channels) if emb_dim is not None else None
        self.norm2 = nn.GroupNorm(groups_out, out_channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.nonlinearity = nn.SiLU()
        self.conv_shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        if (emb is None) != (self.time_emb_proj is None):
            raise CourseError("a ResBlock built with emb_dim needs an embedding, and one built without takes none")
        h = self.conv1(self.nonlinearity(self.norm1(x)))  # (B, in, H, W) → (B, out, H, W)
        if emb is not None:
            h = h + self.time_emb_proj(self.nonlinearity(emb))[:, :, None, None]  # (B, E) → (B, out, 1, 1), broadcast
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))  # (B, out, H, W) → (B, out, H, W)
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)  # (B, in, H, W) → (B, out, H, W)
        return skip + h  # (B, out, H, W)


def multi_head_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, heads: int) -> torch.Tensor:
    """Scaled dot-product attention over ``heads`` heads (Vaswani et al. 2017, eq. 1 and §3.2.2).

    ``softmax(Q Kᵀ / √d) V`` in each head of width ``d = C / heads``: every query token takes an average of the
    value tokens, weighted by how well its query matches each key.

    Args:
        q: queries ``(B, N, C)``; k, v: keys and values ``(B, L, C)`` (``L = N`` for self-attention).

    Returns:
        ``(B, N, C)``.
    """
    b, n, c = q.shape
    d = c // heads
    q = q.reshape(b, n, heads, d).transpose(1, 2)  # (B, N, C) → (B, heads, N, d)
    k = k.reshape(b, -1, heads, d).transpose(1, 2)  # (B, L, C) → (B, heads, L, d)
    v = v.reshape(b, -1, heads, d).transpose(1, 2)  # (B, L, C) → (B, heads, L, d)
    weights = (q @ k.transpose(-2, -1) / math.sqrt(d)).softmax(dim=-1)  # (B, heads, N, L): each row sums to 1
    out = weights @ v  # (B, heads, N, L) @ (B, heads, L, d) → (B, heads, N, d)
    return out.transpose(1, 2).reshape(b, n, c)  # (B, heads, N, d) → (B, N, C)


class SelfAttention(nn.Module):
    """Self-attention over the pixels of a feature map, with a residual: each pixel reads every other pixel.
    ``(B, C, H, W) → (B, C, H, W)``.

    The same as diffusers' ``Attention(query_dim=C, heads=h, dim_head=C // h, norm_num_groups=G,
    residual_connection=True, bias=True)``, the attention block of ``UNet2DModel``'s ``AttnDownBlock2D`` (and of
    DDPM's U-Net at 16×16): same layer names (its state dict loads here), GroupNorm on the input, query, key and
    value projections with biases, :func:`multi_head_attention`, an output projection (then dropout), plus the input.
    """

    def __init__(self, channels: int, *, heads: int = 4, groups: int = 8, eps: float = 1e-5, dropout: float = 0.0):
        super().__init__()
        if channels % heads:
            raise CourseError(f"attention needs channels ({channels}) divisible by heads ({heads})")
        self.heads = heads
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.Sequential(nn.Linear(channels, channels), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)  # (B, C, H, W) → (B, HW, C)
        out = multi_head_attention(self.to_q(tokens), self.to_k(tokens), self.to_v(tokens), heads=self.heads)
        out = self.to_out(out)  # (B, HW, C) → (B, HW, C)
        return x + out.transpose(1, 2).reshape(b, c, h, w)  # (B, HW, C) → (B, C, H, W), plus the input


class CrossAttention(nn.Module):
    """Cross-attention from a feature map to a context (e.g. a prompt's token embeddings), with a residual: each
    pixel reads the context tokens. ``(B, C, H, W), (B, L, D_ctx) → (B, C, H, W)``.

    Queries come from the pixels, keys and values from the context (Rombach et al. 2022, §3.3, eq. 3). The same
    as diffusers' ``Attention(query_dim=C, cross_attention_dim=D_ctx, heads=h, dim_head=C // h, norm_num_groups=G,
    residual_connection=True, bias=True)``: :class:`SelfAttention` with ``to_k``, ``to_v`` reading the context.
    Stable Diffusion's U-Net puts its cross-attention inside a transformer block instead (LayerNorm → self-attention
    → LayerNorm → cross-attention without biases on q, k, v → LayerNorm → feed-forward, each with a residual);
    the attention itself is this one.
    """

    def __init__(
        self,
        channels: int,
        context_dim: int,
        *,
        heads: int = 4,
        groups: int = 8,
        eps: float = 1e-5,
        dropout: float = 0.0,
    ):
        super().__init__()
        if channels % heads:
            raise CourseError(f"attention needs channels ({channels}) divisible by heads ({heads})")
        self.heads = heads
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(context_dim, channels)
        self.to_v = nn.Linear(context_dim, channels)
        self.to_out = nn.Sequential(nn.Linear(channels, channels), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)  # (B, C, H, W) → (B, HW, C)
        out = multi_head_attention(self.to_q(tokens), self.to_k(context), self.to_v(context), heads=self.heads)
        out = self.to_out(out)  # (B, HW, C) → (B, HW, C)
        return x + out.transpose(1, 2).reshape(b, c, h, w)  # (B, HW, C) → (B, C, H, W), plus the input


class _Attend(nn.Module):
    """Self-attention and/or cross-attention at one place of the network, either optional. ``(B, C, H, W) → same``."""

    def __init__(self, channels: int, *, attention: bool, context_dim: int | None, heads: int, groups: int):
        super().__init__()
        self.self_attn = SelfAttention(channels, heads=heads, groups=groups) if attention else None
        self.cross_attn = (
            CrossAttention(channels, context_dim, heads=heads, groups=groups) if context_dim is not None else None
        )

    def forward(self, h: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        if self.self_attn is not None:
            h = self.self_attn(h)  # (B, C, H, W) → (B, C, H, W)
        if self.cross_attn is not None:
            h = self.cross_attn(h, context)  # (B, C, H, W), (B, L, D_ctx) → (B, C, H, W)
        return h


# ---- conditions ------------------------------------------------------------------------------------------------


def class_vectors(labels: torch.Tensor, *, num_classes: int) -> torch.Tensor:
    """Labels ``(B,)`` in ``0..K`` → one-hot vectors ``(B, K)``; label ``K`` ("no class") → the zero vector.

    The digits model's convention (:data:`course_utils.models.digits.NULL_CLASS` = 10) carries over.
    """
    if labels.ndim != 1 or labels.dtype not in (torch.int32, torch.int64):
        raise CourseError(f"class labels must be a (B,) integer tensor, got {tuple(labels.shape)} {labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > num_classes):
        raise CourseError(f"class labels must lie in 0..{num_classes} ({num_classes} = no class)")
    return nn.functional.one_hot(labels.long(), num_classes + 1)[:, :num_classes].float()  # (B, K + 1) → (B, K)


def drop_classes(c: torch.Tensor, *, p_uncond: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Classifier-free guidance training (Ho & Salimans 2022, Algorithm 1): zero each one-hot row with probability
    ``p_uncond``, so the same network also learns ``ε_θ(x_t, t, ∅)``. ``(B, K) → (B, K)``."""
    if not 0 <= p_uncond <= 1:
        raise CourseError(f"p_uncond must be in [0, 1], got {p_uncond}")
    keep = torch.rand(c.shape[0], generator=generator) >= p_uncond  # (B,), drawn on the generator's device
    return c * keep.to(c)[:, None]  # (B, K) · (B, 1)


# ---- the network -----------------------------------------------------------------------------------------------


class CourseUNet(ModelMixin, ConfigMixin):
    """CS180 part B's U-Net at the size of the course's data, configurable from ``D(z)`` to ``ε_θ(x_t, t, c, y)``.

    Args:
        in_channels, out_channels: image channels (1 for the digits and MNIST, 3 for CIFAR-10, 4 for latents).
        sample_size: image side, a multiple of 4 (8 for the digits: a 2×2 bottleneck; 28 for MNIST: 7×7).
        num_hiddens: ``D``, CS180's width: ``D`` channels at full and half size, ``2D`` at the bottleneck.
        block_type: ``"cs180"`` (ConvBlocks, conditioning by FiLM at two places) or ``"resnet"`` (ResBlocks that
            read the embedding); see the module docstring.
        time_embedding: ``None`` (no timestep: the single-step denoiser), ``"scalar"`` (``t / T`` into an FCBlock,
            as CS180) or ``"sinusoidal"`` (:func:`sinusoidal_embedding` of width ``D``).
        num_train_timesteps: ``T``, which ``"scalar"`` divides by (CS180 uses T = 300).
        num_classes: ``K`` for a class-conditioned network (one-hot classes, the zero vector for none).
        embedding_dim: width of ``e`` for ``block_type="resnet"`` (default ``4D``, as diffusers).
        attention: self-attention at the bottleneck and at the first up level.
        cross_attention_dim: ``D_ctx``: cross-attention to a context ``(B, L, D_ctx)`` at the same places.
        attention_heads: heads of every attention layer.
        norm_num_groups: GroupNorm groups (``D`` must be a multiple).
    """

    @register_to_config
    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        sample_size: int = 8,
        num_hiddens: int = 32,
        block_type: str = "resnet",
        time_embedding: str | None = "sinusoidal",
        num_train_timesteps: int = 300,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
        attention: bool = False,
        cross_attention_dim: int | None = None,
        attention_heads: int = 4,
        norm_num_groups: int = 8,
    ):
        super().__init__()
        check_choice("block_type", block_type, BLOCK_TYPES)
        check_choice("time_embedding", time_embedding, TIME_EMBEDDINGS)
        if sample_size % 4 or sample_size < 4:
            raise CourseError(f"sample_size must be a multiple of 4 (two halvings), got {sample_size}")
        if num_hiddens % norm_num_groups or num_hiddens % attention_heads:
            raise CourseError(
                f"num_hiddens ({num_hiddens}) must be a multiple of norm_num_groups ({norm_num_groups})"
                f" and attention_heads ({attention_heads})"
            )
        if num_classes is not None and num_classes < 1:
            raise CourseError(f"num_classes must be positive or None, got {num_classes}")
        d, g, side = num_hiddens, norm_num_groups, sample_size // 4
        self.resnet = block_type == "resnet"
        conditioned = time_embedding is not None or num_classes is not None
        emb = (embedding_dim or 4 * d) if self.resnet and conditioned else None
        time_in = {None: 0, "scalar": 1, "sinusoidal": d}[time_embedding]

        def block(cin: int, cout: int) -> nn.Module:  # a ConvBlock slot
            if self.resnet:
                return ResBlock(cin, cout, emb_dim=emb, groups=_groups(cin, g), groups_out=g)
            return ConvBlock(cin, cout, groups=g)

        # 1) conditioning: τ(t) and c → e (resnet) or → FiLM vectors at the bottleneck (2D) and the first up level (D)
        film = not self.resnet
        self.time_mlp = FCBlock(time_in, emb) if self.resnet and time_in else None  # (B, time_in) → (B, E)
        self.class_mlp = FCBlock(num_classes, emb) if self.resnet and num_classes else None  # (B, K) → (B, E)
        self.t1 = FCBlock(time_in, 2 * d) if film and time_in else None  # (B, time_in) → (B, 2D)
        self.t2 = FCBlock(time_in, d) if film and time_in else None  # (B, time_in) → (B, D)
        self.c1 = FCBlock(num_classes, 2 * d) if film and num_classes else None  # (B, K) → (B, 2D)
        self.c2 = FCBlock(num_classes, d) if film and num_classes else None  # (B, K) → (B, D)
        # 2) down: 8 → 4 → 2, then the bottleneck 2 → 1 → 2
        self.conv_in = block(in_channels, d)
        self.down1 = DownBlock(DownConv(d, d, groups=g), block(d, d))
        self.down2 = DownBlock(DownConv(d, 2 * d, groups=g), block(2 * d, 2 * d))
        self.flatten = Flatten(side)
        self.unflatten = Unflatten(2 * d, side, groups=g)
        # 3) attention where the conditioning enters, then up: 2 → 4 → 8 with the skips concatenated
        ctx, heads = cross_attention_dim, attention_heads
        self.attend_mid = _Attend(2 * d, attention=attention, context_dim=ctx, heads=heads, groups=g)
        self.up1 = UpBlock(UpConv(4 * d, d, groups=g), block(d, d))
        self.attend_up = _Attend(d, attention=attention, context_dim=ctx, heads=heads, groups=g)
        self.up2 = UpBlock(UpConv(2 * d, d, groups=g), block(d, d))
        self.conv_block_out = block(2 * d, d)
        self.conv_out = nn.Conv2d(d, out_channels, kernel_size=3, padding=1)

    # -- inputs ---------------------------------------------------------------------------------------------------

    def _time_input(self, timestep, batch: int, like: torch.Tensor) -> torch.Tensor | None:
        """τ(t): ``(B, 1)`` for ``"scalar"``, ``(B, D)`` for ``"sinusoidal"``, ``None`` without time."""
        kind = self.config.time_embedding
        if kind is None:
            if timestep is not None:
                raise CourseError("this CourseUNet has no time input (time_embedding=None); call it without timestep")
            return None
        if timestep is None:
            raise CourseError(f"this CourseUNet is time-conditioned (time_embedding={kind!r}); pass timestep")
        t = torch.as_tensor(timestep, device=like.device)
        t = t.reshape(-1).expand(batch) if t.numel() == 1 else t.reshape(batch)  # int, 0-d or (B,) → (B,)
        if kind == "scalar":
            return (t.to(like.dtype) / self.config.num_train_timesteps)[:, None]  # (B,) → (B, 1), t/T in [0, 1)
        return sinusoidal_embedding(t, self.config.num_hiddens).to(like.dtype)  # (B,) → (B, D)

    def _class_input(self, class_labels, like: torch.Tensor) -> torch.Tensor | None:
        """One-hot classes ``(B, K)`` (zero rows: no class), ``None`` for a network without classes."""
        k = self.config.num_classes
        if k is None:
            if class_labels is not None:
                raise CourseError("this CourseUNet has no class input (num_classes=None); call it without class_labels")
            return None
        if class_labels is None:
            raise CourseError(f"this CourseUNet is class-conditioned ({k} classes); pass class_labels")
        if not class_labels.is_floating_point():
            class_labels = class_vectors(class_labels, num_classes=k)  # (B,) → (B, K)
        if class_labels.shape != (like.shape[0], k):
            raise CourseError(f"class vectors must have shape (B, {k}), got {tuple(class_labels.shape)}")
        return class_labels.to(device=like.device, dtype=like.dtype)

    def _context(self, encoder_hidden_states: torch.Tensor | None) -> torch.Tensor | None:
        if (encoder_hidden_states is None) != (self.config.cross_attention_dim is None):
            raise CourseError(
                "pass encoder_hidden_states (B, L, D_ctx) exactly when the CourseUNet has cross_attention_dim"
                f" (here {self.config.cross_attention_dim})"
            )
        return encoder_hidden_states

    # -- forward --------------------------------------------------------------------------------------------------

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int | None = None,
        class_labels: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> UNet2DOutput | tuple[torch.Tensor]:
        """``(B, C, H, W)`` → the network's estimate ``(B, C_out, H, W)`` (ε̂, or x̂ for the single-step denoiser).

        Args:
            sample: ``x_t`` (or ``z``), ``(B, C, H, W)``.
            timestep: ``t``: an int, a 0-d tensor or ``(B,)``; required exactly when ``time_embedding`` is set.
            class_labels: ``(B,)`` long in ``0..K`` (``K`` = no class) or ``(B, K)`` one-hot (zero rows: no class).
            encoder_hidden_states: the context ``(B, L, D_ctx)`` for cross-attention.
        """
        b = sample.shape[0]
        tau = self._time_input(timestep, b, sample)  # (B, 1) or (B, D) or None
        c = self._class_input(class_labels, sample)  # (B, K) or None
        context = self._context(encoder_hidden_states)  # (B, L, D_ctx) or None
        # 1) the embedding e (resnet) goes into every block; CS180's blocks take none (cond = ())
        cond: tuple[torch.Tensor, ...] = ()
        if self.resnet and (tau is not None or c is not None):
            parts = [mlp(v) for mlp, v in ((self.time_mlp, tau), (self.class_mlp, c)) if v is not None]
            cond = (sum(parts[1:], parts[0]),)  # (B, E): FC_t(τ(t)) + FC_c(c), as diffusers adds its class embedding
        # 2) down path, keeping each level's output for its skip
        x0 = self.conv_in(sample, *cond)  # (B, C, 8, 8) → (B, D, 8, 8)
        x1 = self.down1(x0, *cond)  # (B, D, 8, 8) → (B, D, 4, 4)
        x2 = self.down2(x1, *cond)  # (B, D, 4, 4) → (B, 2D, 2, 2)
        # 3) bottleneck: one vector per image, then back to 2×2; conditioning and attention enter here
        h = self.unflatten(self.flatten(x2))  # (B, 2D, 2, 2) → (B, 2D, 1, 1) → (B, 2D, 2, 2)
        h = self._film(h, tau, c, shift=self.t1, scale=self.c1)  # (B, 2D, 2, 2): c₁ ⊙ h + t₁ (cs180)
        h = self.attend_mid(h, context)  # (B, 2D, 2, 2)
        # 4) up path: concatenate the skip of the same size, then up
        h = self.up1(torch.cat([h, x2], dim=1), *cond)  # (B, 4D, 2, 2) → (B, D, 4, 4)
        h = self._film(h, tau, c, shift=self.t2, scale=self.c2)  # (B, D, 4, 4): c₂ ⊙ h + t₂ (cs180)
        h = self.attend_up(h, context)  # (B, D, 4, 4)
        h = self.up2(torch.cat([h, x1], dim=1), *cond)  # (B, 2D, 4, 4) → (B, D, 8, 8)
        h = self.conv_block_out(torch.cat([h, x0], dim=1), *cond)  # (B, 2D, 8, 8) → (B, D, 8, 8)
        out = self.conv_out(h)  # (B, D, 8, 8) → (B, C_out, 8, 8)
        return UNet2DOutput(sample=out) if return_dict else (out,)

    @staticmethod
    def _film(h: torch.Tensor, tau, c, *, shift: FCBlock | None, scale: FCBlock | None) -> torch.Tensor:
        """CS180's conditioning, ``h ← c_i ⊙ h + t_i``, each term only where the network has it (never in resnet)."""
        if scale is not None:
            h = scale(c)[:, :, None, None] * h  # (B, K) → (B, C, 1, 1): scales each channel
        if shift is not None:
            h = h + shift(tau)[:, :, None, None]  # (B, time_in) → (B, C, 1, 1): shifts each channel
        return h


def parameters_per_block(model: nn.Module) -> dict[str, int]:
    """Trainable parameter count of each top-level block of ``model`` (in definition order), and ``"total"``.

    Counts come from the modules themselves (``p.numel()``), so they follow any configuration.
    """
    counts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    counts = {name: n for name, n in counts.items() if n}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
