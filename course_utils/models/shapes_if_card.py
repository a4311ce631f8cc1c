"""Measure the pixel-space shapes model (``course/shapes-if``) and write its card (``README.md``, ``metrics.json``).

    python -m course_utils.models.build --only shapes-if --eval-only     # measure the saved model, rewrite the card

Every number comes from sampling the saved :class:`~course_utils.models.shapes_if.ShapesIFPipeline` with a fixed seed
(DDPM over the strided timesteps 960, 930, …, 0 that weeks 1–2 use), scored by the attribute judge
(:mod:`course_utils.models.shapes_judge`) and the shapes CLIP: adherence (overall, every attribute right, per
attribute), CLIP score, diversity and the time per image at guidance 1, 3 and 7.5.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from course_utils.data.shapes import ShapesDataset
from course_utils.metrics import diversity
from course_utils.models.cards import write_metrics
from course_utils.models.shapes_card import guidance_section
from course_utils.models.shapes_clip import clip_score
from course_utils.models.shapes_if import ShapesIFPipeline
from course_utils.models.shapes_judge import ShapesJudge, adherence
from course_utils.stats import bootstrap_mean, proportion

__all__ = ["PixelCardSettings", "measure_pixel", "sample_prompts", "write_pixel_card"]


@dataclass(frozen=True)
class PixelCardSettings:
    """What :func:`measure_pixel` samples: ``prompts`` held-out captions (one sample each) and
    ``diversity_prompts`` × ``diversity_samples`` for diversity, at each of ``guidance_scales``, with ``steps``
    DDPM steps."""

    prompts: int = 120
    diversity_prompts: int = 8
    diversity_samples: int = 8
    guidance_scales: tuple[float, ...] = (1.0, 3.0, 7.5)
    steps: int = 33
    seed: int = 0
    batch_size: int = 60


def sample_prompts(
    pipe: ShapesIFPipeline, prompts: Sequence[str], *, guidance_scale: float, steps: int, seed: int, batch_size: int
) -> torch.Tensor:
    """Images ``(N, 3, 32, 32)`` in ``[-1, 1]``, one per prompt, in batches; batch ``b`` draws from
    ``torch.Generator().manual_seed(seed + b)``."""
    out = []
    for b, start in enumerate(range(0, len(prompts), batch_size)):
        gen = torch.Generator().manual_seed(seed + b)
        chunk = list(prompts[start : start + batch_size])
        out.append(
            pipe(chunk, num_inference_steps=steps, guidance_scale=guidance_scale, generator=gen, output_type="pt")
        )
    return torch.cat(out)


def measure_pixel(
    pipe: ShapesIFPipeline,
    *,
    judge: ShapesJudge,
    clip: tuple,
    held_out: ShapesDataset,
    settings: PixelCardSettings = PixelCardSettings(),
) -> dict:
    """Every model-card number for ``pipe`` (see the module docstring), as a JSON-able dict."""
    s = settings
    prompts = held_out.captions[: s.prompts]
    many = [p for p in held_out.captions[: s.diversity_prompts] for _ in range(s.diversity_samples)]
    rows = []
    for w in s.guidance_scales:
        started = time.perf_counter()
        images = sample_prompts(pipe, prompts, guidance_scale=w, steps=s.steps, seed=s.seed, batch_size=s.batch_size)
        seconds = time.perf_counter() - started
        score = adherence(judge, images, prompts)
        spread = sample_prompts(
            pipe, many, guidance_scale=w, steps=s.steps, seed=s.seed + 1000, batch_size=s.batch_size
        )
        rows.append(
            {
                "guidance": w,
                "adherence": bootstrap_mean(score.per_sample),  # per picture: the share of its attributes right
                "exact": proportion(score.per_sample == 1.0),
                **{f"adherence_{k}": proportion(v) for k, v in score.checks.items()},
                "clip_score": bootstrap_mean(clip_score(*clip, images, prompts)),
                "diversity": bootstrap_mean([diversity(g) for g in spread.split(s.diversity_samples)]),
                "seconds_per_image": seconds / len(prompts),
            }
        )
    return {
        "n_prompts": len(prompts),
        "steps": s.steps,
        "seed": s.seed,
        "batch_size": s.batch_size,
        "diversity": {"prompts": s.diversity_prompts, "samples": s.diversity_samples},
        "guidance": rows,
        "clip_score_real_images": bootstrap_mean(clip_score(*clip, held_out.images[: s.prompts], prompts)),
    }


def write_pixel_card(path: Path, metrics: dict, *, sizes: dict[str, int], train: dict) -> None:
    """``README.md`` beside the weights, from ``metrics`` (:func:`measure_pixel`) and the training facts."""
    g = metrics["guidance"]
    lines = [
        "# course/shapes-if",
        "",
        "A pixel-space, text-conditional denoiser for the course's captioned shapes world (32×32 RGB): the offline",
        "stand-in for DeepFloyd IF stage I in weeks 1–2, trained here from scratch by `make models`. It denoises",
        "pixels directly (no autoencoder), conditioned on the course's text encoder through cross-attention, on IF's",
        "cosine schedule with T = 1000.",
        "",
        "```python",
        "from course_utils.denoisers import load_denoiser",
        'den = load_denoiser("course/shapes-if")          # ε̂ = den(x_t, t, den.condition(prompts))',
        "from course_utils.models.shapes_if import ShapesIFPipeline",
        'pipe = ShapesIFPipeline.from_pretrained("data/models/shapes-if")',
        'image = pipe("a red circle on the left on a grey background").images[0]',
        "```",
        "",
        "| component | class | parameters |",
        "| --- | --- | --- |",
        f"| unet | `UNet2DConditionModel` (channels 32/64/128, cross-attention at 8×8; stored in float16) |"
        f" {sizes['unet'] / 1e6:.2f} M |",
        "| text_encoder | `CLIPTextModel` (shapes-sd's, tuned again with this U-Net) |"
        f" {sizes['text_encoder'] / 1e6:.2f} M |",
        "| tokenizer | `CLIPTokenizer` (vocabulary of the captions) | |",
        "| scheduler | `DDPMScheduler` (IF's `squaredcos_cap_v2`, T = 1000, ε-prediction, x̂₀ clipped) | |",
        "",
        f"Training: {train['summary']}",
        "",
        *guidance_section(metrics, stage="shapes-if", sampling=f"DDPM {metrics['steps']} strided steps"),
        "",
        f"Sampling time: {g[-1]['seconds_per_image'] * 1000:.0f} ms per image (DDPM {metrics['steps']} steps, guidance"
        f" {g[-1]['guidance']:g}, batches of {metrics['batch_size']}, CPU, `make models`' machine); training"
        f" {train['train_seconds'] / 60:.0f} min on the same machine.",
    ]
    (path / "README.md").write_text("\n".join(lines) + "\n")
    write_metrics(path, {**metrics, "train_seconds": train["train_seconds"]})
