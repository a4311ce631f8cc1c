"""Cross-attention maps of a text-to-image U-Net: where in the picture each word of the prompt is attended to.

In Stable Diffusion's U-Net (Rombach et al. 2022, §3.3) every transformer block ends in a cross-attention layer:
the queries are the latent pixels, the keys and values the text encoder's token embeddings,

    A = softmax(Q Kᵀ / √d),    Q = W_Q · φ(z_t)  (pixels × d),   K = W_K · τ(y)  (tokens × d),

so row ``i`` of ``A`` (pixels × tokens) says how much latent pixel ``i`` reads each token, and column ``k``, laid out
on the latent grid, is token ``k``'s attention map (Hertz et al. 2022, "Prompt-to-Prompt", §3.1, fig. 4).

:class:`CrossAttentionRecorder` is a diffusers attention processor (``unet.set_attn_processor``) that computes ``A``
with ``attn.get_attention_scores`` beside the layer's own processor and returns that processor's result unchanged,
so the U-Net's output is bit for bit what it is without it. :func:`record_cross_attention` installs it on every
cross-attention layer for the length of a ``with`` block; :func:`capture_cross_attention` runs the pipeline with it
and keeps, under classifier-free guidance, the conditional half of the batch only (the pipeline stacks
``[unconditional, conditional]``).

Shapes (:class:`CrossAttentionMaps`): per layer ``(steps, batch, heads, H·W, tokens)``, ``H × W`` the layer's
resolution (for the shapes model 8×8 in ``down_blocks.0`` and ``up_blocks.1``, 4×4 in the mid block);
:func:`token_maps` averages steps, layers of one resolution and heads to ``(batch, tokens, H, W)``;
:func:`upsample_maps` enlarges them (nearest neighbour) to the picture's 32×32 for display.

Measured (:func:`attention_mass_study`): the share of a colour or shape word's attention mass that falls inside
its object's mask, against the share expected by chance (the mask's area fraction: a map spread evenly over the
picture puts that much inside any mask).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from course_utils.data.shapes import COLOURS, SHAPES, Scene, ShapesDataset, make_dataset, object_masks
from course_utils.errors import CourseError, check_choice
from course_utils.stats import Estimate, bootstrap_mean, difference

__all__ = [
    "DEFAULT_N",
    "HELD_OUT_SEED",
    "WORD_KINDS",
    "AttentionMassStudy",
    "CrossAttentionMaps",
    "CrossAttentionRecorder",
    "attention_mass_study",
    "capture_cross_attention",
    "cross_attention_layers",
    "downsample_mask",
    "mass_share",
    "record_cross_attention",
    "token_maps",
    "upsample_maps",
    "word_positions",
]

WORD_KINDS = ("colour", "shape")
DEFAULT_STEPS = 25  # the shapes model's defaults (course_utils.sd.support.MODEL_DEFAULTS["course/shapes-sd"])
DEFAULT_GUIDANCE = 7.5
HELD_OUT_SEED = 2027  # make_dataset's seed for the measured scenes (the models train on seed 0)
DEFAULT_N = 24


# ---------------------------------------------------------------------------------------------- the processor


class CrossAttentionRecorder:
    """A diffusers attention processor that records ``A = softmax(QKᵀ/√d)`` of a cross-attention layer and returns
    what ``default`` (the layer's own processor) returns.

    The probabilities are computed the way diffusers' classic ``AttnProcessor`` computes them (spatial and group
    norm, ``to_q`` / ``to_k``, ``norm_cross``, ``head_to_batch_dim``, ``attn.get_attention_scores``); the output is
    ``default``'s, untouched. Each call appends ``(batch, heads, H·W, tokens)`` (float32, on the CPU) to
    ``store[name]``; with ``conditional_half`` only the second half of the batch (the conditional one under
    classifier-free guidance) is kept. Self-attention calls (no ``encoder_hidden_states``) are passed through.
    """

    def __init__(self, default: Any, *, name: str, store: dict[str, list[torch.Tensor]], conditional_half: bool):
        self.default = default
        self.name = name
        self.store = store
        self.conditional_half = conditional_half

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        out = self.default(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        if encoder_hidden_states is not None:
            with torch.no_grad():
                self.store.setdefault(self.name, []).append(
                    self._probabilities(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
                )
        return out

    def _probabilities(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        temb: torch.Tensor | None,
    ) -> torch.Tensor:
        # 1) the layer's input as (B, H·W, C), normalised as the layer normalises it
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        if hidden_states.ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch, tokens, _ = encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, tokens, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        # 2) Q (B·heads, H·W, d) from the pixels, K (B·heads, tokens, d) from the text; A = softmax(QKᵀ·scale)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        probs = attn.get_attention_scores(query, key, attention_mask)  # (B·heads, H·W, tokens)
        probs = probs.reshape(batch, attn.heads, *probs.shape[1:])  # head_to_batch_dim is batch-major
        if self.conditional_half:
            if batch % 2:
                raise CourseError(f"{self.name}: conditional_half needs an even batch, got {batch}")
            probs = probs[batch // 2 :]
        return probs.float().cpu()


def cross_attention_layers(unet: torch.nn.Module) -> list[str]:
    """The names of ``unet``'s cross-attention layers (diffusers ``Attention`` modules with
    ``is_cross_attention``), e.g. ``down_blocks.0.attentions.0.transformer_blocks.0.attn2``, in module order."""
    return [
        name
        for name, module in unet.named_modules()
        if hasattr(module, "set_processor") and getattr(module, "is_cross_attention", False)
    ]


@contextmanager
def record_cross_attention(
    unet: torch.nn.Module, *, conditional_half: bool = False
) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Install a :class:`CrossAttentionRecorder` on every cross-attention layer of ``unet`` for the ``with`` block;
    yield the store (layer name → one ``(batch, heads, H·W, tokens)`` tensor per U-Net call). Every other layer keeps
    its processor, and every processor is restored on leaving, also on error."""
    originals = unet.attn_processors  # "<layer>.processor" → processor
    layers = set(cross_attention_layers(unet))
    if not layers:
        raise CourseError(f"{type(unet).__name__} has no cross-attention layers to record")
    store: dict[str, list[torch.Tensor]] = {}
    recorders = {
        key: (
            CrossAttentionRecorder(
                proc, name=key.removesuffix(".processor"), store=store, conditional_half=conditional_half
            )
            if key.removesuffix(".processor") in layers
            else proc
        )
        for key, proc in originals.items()
    }
    unet.set_attn_processor(recorders)
    try:
        yield store
    finally:
        unet.set_attn_processor(originals)


# ---------------------------------------------------------------------------------------------- the maps


@dataclass(frozen=True)
class CrossAttentionMaps:
    """Cross-attention probabilities of a sampling run.

    Attributes:
        probs: layer name → ``(steps, batch, heads, H·W, tokens)``; for each step, image, head and latent pixel the
            probabilities over the tokens sum to 1.
        sizes: layer name → its ``(H, W)`` (the latents' size divided by the layer's downsampling).
        tokens: per prompt, the tokenizer's tokens (``<|startoftext|>``, the words, ``<|endoftext|>`` padding).
        timesteps: the ``(steps,)`` timesteps ``t`` of the U-Net calls.
    """

    probs: dict[str, torch.Tensor] = field(repr=False)
    sizes: dict[str, tuple[int, int]]
    tokens: list[list[str]] = field(repr=False)
    timesteps: torch.Tensor = field(repr=False)

    @property
    def layers(self) -> list[str]:
        return list(self.probs)

    def layers_at(self, size: tuple[int, int]) -> list[str]:
        """The layers working at resolution ``size`` (``(H, W)``)."""
        return [name for name, s in self.sizes.items() if s == tuple(size)]

    @property
    def resolutions(self) -> list[tuple[int, int]]:
        """The layers' resolutions, largest first."""
        return sorted(set(self.sizes.values()), reverse=True)


def _layer_size(tokens_hw: int, latent: tuple[int, int], name: str) -> tuple[int, int]:
    h, w = latent
    factor = 1
    while (h // factor) * (w // factor) > tokens_hw and factor <= max(h, w):
        factor *= 2
    if (h // factor) * (w // factor) != tokens_hw:
        raise CourseError(f"{name}: {tokens_hw} query pixels do not tile latents of {h}×{w}")
    return h // factor, w // factor


@torch.no_grad()
def capture_cross_attention(
    pipe: Any,
    prompts: Sequence[str],
    *,
    seed: int = 0,
    num_inference_steps: int = DEFAULT_STEPS,
    guidance_scale: float = DEFAULT_GUIDANCE,
    batch_size: int = 64,
) -> tuple[torch.Tensor, CrossAttentionMaps]:
    """Sample one image per prompt with ``pipe`` (a diffusers ``StableDiffusionPipeline``) and record every
    cross-attention layer's probabilities at every step.

    Image ``i`` draws its noise from ``torch.Generator("cpu").manual_seed(seed + i)`` (as
    :func:`course_utils.sd.pipeline.sample_batch` does). Under classifier-free guidance (``guidance_scale > 1``)
    the U-Net sees ``[unconditional, conditional]`` and only the conditional half is kept.

    Returns:
        the images ``(N, 3, H, W)`` in ``[-1, 1]``, and the :class:`CrossAttentionMaps` of the N prompts.
    """
    prompts = list(prompts)
    if not prompts:
        raise CourseError("capture_cross_attention needs at least one prompt")
    if batch_size < 1:
        raise CourseError(f"batch_size must be at least 1, got {batch_size}")
    guided = guidance_scale > 1 and pipe.unet.config.time_cond_proj_dim is None  # the pipeline's own test
    pipe.set_progress_bar_config(disable=True)
    images, chunks = [], []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        with record_cross_attention(pipe.unet, conditional_half=guided) as store:
            out = pipe(
                prompt=chunk,
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                generator=[torch.Generator("cpu").manual_seed(seed + start + i) for i in range(len(chunk))],
                output_type="pt",
            )
        images.append(out.images * 2 - 1)  # the pipeline's [0, 1] → [-1, 1]
        chunks.append({name: torch.stack(calls) for name, calls in store.items()})  # (steps, chunk, heads, HW, tok)
    probs = {name: torch.cat([c[name] for c in chunks], dim=1) for name in chunks[0]}
    latent = images[0].shape[-2] // pipe.vae_scale_factor, images[0].shape[-1] // pipe.vae_scale_factor
    sizes = {name: _layer_size(p.shape[-2], latent, name) for name, p in probs.items()}
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length).input_ids
    tokens = [pipe.tokenizer.convert_ids_to_tokens(row) for row in ids]
    timesteps = pipe.scheduler.timesteps.detach().cpu().clone()
    return torch.cat(images), CrossAttentionMaps(probs, sizes, tokens, timesteps)


def token_maps(
    maps: CrossAttentionMaps,
    *,
    size: tuple[int, int] | None = None,
    layers: Sequence[str] | None = None,
    steps: Sequence[int] | slice | None = None,
) -> torch.Tensor:
    """Each token's attention map, averaged over ``steps`` (default all), heads and ``layers`` (default: every layer
    at resolution ``size``; default size: the largest): ``(batch, tokens, H, W)``.

    Entry ``[b, k, y, x]`` is how much latent pixel ``(y, x)`` attends to token ``k`` (for every pixel the tokens sum
    to 1); averaging keeps that.
    """
    if layers is None:
        size = tuple(size) if size is not None else maps.resolutions[0]
        layers = maps.layers_at(size)
        if not layers:
            raise CourseError(f"no cross-attention layer works at {size}; the layers work at {maps.resolutions}")
    for name in layers:
        check_choice("layer", name, maps.layers)
    sizes = {maps.sizes[name] for name in layers}
    if len(sizes) > 1:
        raise CourseError(f"layers of different resolutions cannot be averaged: {sorted(sizes)}")
    (h, w) = sizes.pop()
    chosen = slice(None) if steps is None else steps
    per_layer = [maps.probs[name][chosen].mean(dim=(0, 2)) for name in layers]  # each (batch, H·W, tokens)
    mean = torch.stack(per_layer).mean(dim=0)
    return mean.transpose(1, 2).reshape(mean.shape[0], mean.shape[2], h, w)


def upsample_maps(maps: torch.Tensor, *, size: int = 32) -> torch.Tensor:
    """Maps ``(..., H, W)`` enlarged to ``(..., size, size)`` by nearest neighbour (each latent pixel a block), for
    display over the picture."""
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    return F.interpolate(flat, size=(size, size), mode="nearest").reshape(*lead, size, size)


# ---------------------------------------------------------------------------------------------- words and masks


def _word(token: str) -> str:
    return token.removesuffix("</w>")


def word_positions(scene: Scene, tokens: Sequence[str]) -> dict[tuple[int, str], int]:
    """The token index of each object's colour and shape word in its caption's ``tokens``:
    ``{(object, "colour" | "shape"): index}``.

    Object ``j``'s shape is the ``j``-th shape word of the caption; its colour the word just before it (captions
    read ``a <size> <colour> <shape>``), where the caption names one. Words the tokenizer split into pieces are not
    found (the shapes tokenizer keeps every word whole).
    """
    words = [_word(t) for t in tokens]
    shape_at = [i for i, w in enumerate(words) if w in SHAPES]
    if len(shape_at) != len(scene.objects):
        raise CourseError(f"{len(scene.objects)} objects but {len(shape_at)} shape words in {' '.join(words)!r}")
    out = {}
    for j, (obj, i) in enumerate(zip(scene.objects, shape_at, strict=True)):
        if words[i] != obj.shape:
            raise CourseError(f"object {j} is a {obj.shape}, the caption says {words[i]!r}")
        out[(j, "shape")] = i
        if i > 0 and words[i - 1] in COLOURS:
            if words[i - 1] != obj.colour:
                raise CourseError(f"object {j} is {obj.colour}, the caption says {words[i - 1]!r}")
            out[(j, "colour")] = i - 1
    return out


def downsample_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Coverage masks ``(..., S, S)`` averaged over blocks to ``(..., H, W)``: each latent pixel holds the share of
    its picture pixels the object covers (so a share of the attention mass computed at ``H × W`` equals that of the
    maps upsampled by nearest neighbour against the full-size mask)."""
    h, w = size
    lead = mask.shape[:-2]
    if mask.shape[-2] % h or mask.shape[-1] % w:
        raise CourseError(f"a {tuple(mask.shape[-2:])} mask does not divide into {h}×{w} blocks")
    flat = mask.reshape(-1, 1, *mask.shape[-2:]).float()
    return F.adaptive_avg_pool2d(flat, (h, w)).reshape(*lead, h, w)


def mass_share(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The share of each map's mass inside its mask: ``Σ A·m / Σ A`` over the pixels, for maps ``A`` and masks ``m``
    in ``[0, 1]`` of the same shape ``(..., H, W)``; returns ``(...)``. A map spread evenly gets ``mean(m)``, the
    mask's area fraction (the share expected by chance)."""
    if maps.shape != masks.shape:
        raise CourseError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ in shape")
    return (maps * masks).sum(dim=(-2, -1)) / maps.sum(dim=(-2, -1))


# ---------------------------------------------------------------------------------------------- the study


@dataclass(frozen=True)
class AttentionMassStudy:
    """Attention-mass shares of colour and shape words inside object masks, one row per (scene, word, mask,
    resolution).

    Attributes:
        rows: dicts with ``scene`` (index), ``objects`` (1 or 2), ``kind`` (``colour`` / ``shape``), ``word_object``
            (whose word), ``mask_object`` (whose mask), ``resolution`` (``"8×8"``), ``share`` (of the word's mass
            inside the mask) and ``chance`` (the mask's area fraction).
        images: the generated pictures ``(N, 3, 32, 32)`` in ``[-1, 1]``.
        captions: the prompts.
        settings: steps, guidance, seed.
    """

    rows: list[dict[str, Any]] = field(repr=False)
    images: torch.Tensor = field(repr=False)
    captions: list[str] = field(repr=False)
    settings: dict[str, Any]

    def select(self, **where: Any) -> list[dict[str, Any]]:
        return [r for r in self.rows if all(r[k] == v for k, v in where.items())]

    def estimates(self, **where: Any) -> dict[str, Estimate]:
        """For the rows matching ``where`` (one per scene): the mean ``share`` and ``chance``, their paired
        difference, and the mean lift ``share / chance``, each with its 95 % bootstrap interval over scenes."""
        rows = self.select(**where)
        if not rows:
            raise CourseError(f"no rows match {where}")
        share = np.array([r["share"] for r in rows])
        chance = np.array([r["chance"] for r in rows])
        return {
            "share": bootstrap_mean(share),
            "chance": bootstrap_mean(chance),
            "share − chance": difference(share, chance),
            "lift": bootstrap_mean(share / chance),
        }

    def own_versus_other(self, **where: Any) -> Estimate:
        """Two-object scenes: a word's share inside its own object minus inside the other object, paired per scene."""
        own = self.select(objects=2, **where)
        own = [r for r in own if r["word_object"] == r["mask_object"]]
        other = {
            (r["scene"], r["word_object"], r["kind"], r["resolution"]): r["share"]
            for r in self.rows
            if r["objects"] == 2 and r["word_object"] != r["mask_object"]
        }
        a = np.array([r["share"] for r in own])
        b = np.array([other[(r["scene"], r["word_object"], r["kind"], r["resolution"])] for r in own])
        return difference(a, b)

    def table(self) -> list[dict[str, Any]]:
        """The report: per resolution, word kind and case (one object; object 1's / object 2's word in a two-object
        scene, inside its own and inside the other object), the share, chance, difference and lift."""
        out = []
        resolutions = list(dict.fromkeys(r["resolution"] for r in self.rows))
        cases = [
            ("one object", 1, 0, 0),
            ("2 objects: word 1 in object 1", 2, 0, 0),
            ("2 objects: word 1 in object 2", 2, 0, 1),
            ("2 objects: word 2 in object 2", 2, 1, 1),
            ("2 objects: word 2 in object 1", 2, 1, 0),
        ]
        for resolution in resolutions:
            for kind in WORD_KINDS:
                for label, objects, word, mask in cases:
                    where = dict(resolution=resolution, kind=kind, objects=objects, word_object=word, mask_object=mask)
                    if not self.select(**where):
                        continue
                    e = self.estimates(**where)
                    out.append(
                        {
                            "resolution": resolution,
                            "word": kind,
                            "case": label,
                            "n": e["share"].n,
                            "share": e["share"].percent(),
                            "chance": e["chance"].percent(),
                            "share − chance": e["share − chance"].percent(),
                            "lift": e["lift"].format(),
                        }
                    )
        return out


def attention_mass_study(
    pipe: Any,
    dataset: ShapesDataset | None = None,
    *,
    n: int | None = None,
    seed: int = 0,
    num_inference_steps: int = DEFAULT_STEPS,
    guidance_scale: float = DEFAULT_GUIDANCE,
    batch_size: int = 64,
) -> AttentionMassStudy:
    """Generate one picture per caption, record its cross-attention, and measure, for every colour and shape word
    and every object mask of its scene, the share of the word's attention mass (:func:`token_maps`: all steps,
    heads, and the layers of one resolution averaged) inside the mask, at each resolution of the U-Net.

    Args:
        pipe: a diffusers ``StableDiffusionPipeline`` of the shapes world.
        dataset: the scenes and captions; default ``make_dataset(n, seed=HELD_OUT_SEED)`` (new draws, not the
            training set's ``seed=0``; with 720 one-object captions, a one-object caption is rarely new, a
            two-object one usually is).
        n: how many scenes of the default data set (default :data:`DEFAULT_N`, a notebook cell's worth); only
            without ``dataset``.
        seed: image ``i`` draws its noise from ``seed + i``.

    The masks are :func:`course_utils.data.shapes.object_masks` of the canonical picture of each scene (where a
    model that obeys its caption draws the objects), block-averaged to each layer's resolution
    (:func:`downsample_mask`); the chance share is the mask's area fraction there. Prompts are sampled
    ``batch_size`` at a time and only the measured shares are kept, so memory does not grow with ``n``.
    """
    if dataset is not None and n is not None:
        raise CourseError("give a dataset or n (the size of the default held-out data set), not both")
    if dataset is None:
        dataset = make_dataset(DEFAULT_N if n is None else n, seed=HELD_OUT_SEED)
    if batch_size < 1:
        raise CourseError(f"batch_size must be at least 1, got {batch_size}")
    size = dataset.images.shape[1]
    rows, images = [], []
    for start in range(0, len(dataset), batch_size):
        chunk = range(start, min(start + batch_size, len(dataset)))
        pictures, maps = capture_cross_attention(
            pipe,
            [dataset.captions[i] for i in chunk],
            seed=seed + start,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            batch_size=batch_size,
        )
        images.append(pictures)
        attended = {res: token_maps(maps, size=res) for res in maps.resolutions}  # each (chunk, tokens, H, W)
        for j, i in enumerate(chunk):
            scene = dataset.scenes[i]
            masks = torch.from_numpy(object_masks(scene, size=size))  # (objects, S, S)
            positions = word_positions(scene, maps.tokens[j])
            for res, per_token in attended.items():
                small = downsample_mask(masks, res)  # (objects, H, W)
                for (word_object, kind), k in positions.items():
                    for mask_object in range(len(scene.objects)):
                        m = small[mask_object]
                        rows.append(
                            {
                                "scene": i,
                                "objects": len(scene.objects),
                                "kind": kind,
                                "word_object": word_object,
                                "mask_object": mask_object,
                                "resolution": f"{res[0]}×{res[1]}",
                                "share": float(mass_share(per_token[j, k], m)),
                                "chance": float(m.mean()),
                            }
                        )
    settings = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale, "seed": seed}
    return AttentionMassStudy(rows, torch.cat(images), list(dataset.captions), settings)
