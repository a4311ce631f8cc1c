"""Measure the miniature Stable Diffusion and write its model card (``README.md`` and ``metrics.json``).

    python -m course_utils.models.build --only shapes-sd --eval-only     # measure the saved model, rewrite the card

Every number comes from sampling the saved pipeline through ``StableDiffusionPipeline.__call__`` with a fixed
seed, scored by the attribute judge (:mod:`course_utils.models.shapes_judge`) and the shapes CLIP:

- adherence (and per attribute, and CLIP score, and diversity) at guidance 1, 3 and 7.5, DDIM 25 steps;
- adherence with DDIM at 10, 25 and 50 steps against DDPM at 1000 steps, guidance 7.5;
- a negative prompt naming a colour: how often that colour appears with and without it;
- the sampling time per image.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DDPMScheduler, StableDiffusionPipeline

from course_utils.data.shapes import COLOURS, ShapesDataset, caption
from course_utils.metrics import diversity
from course_utils.models.shapes_clip import clip_score
from course_utils.models.shapes_judge import SCORED, ShapesJudge, adherence
from course_utils.stats import Estimate, bootstrap_mean, proportion

__all__ = ["CardSettings", "generate", "guidance_section", "measure", "write_card"]


@dataclass(frozen=True)
class CardSettings:
    """What :func:`measure` samples: ``prompts`` held-out captions (one sample each), the first ``step_prompts``
    of them for the step-count table, ``diversity_prompts`` × ``diversity_samples`` for diversity, and
    ``negative_prompts`` colourless prompts per negative-prompt row."""

    prompts: int = 240
    step_prompts: int = 60
    diversity_prompts: int = 8
    diversity_samples: int = 8
    negative_prompts: int = 96
    guidance_scales: tuple[float, ...] = (1.0, 3.0, 7.5)
    ddim_steps: tuple[int, ...] = (10, 25, 50)
    ddpm_steps: int = 1000
    seed: int = 0
    batch_size: int = 120


def generate(
    pipe: StableDiffusionPipeline,
    prompts: Sequence[str],
    *,
    guidance_scale: float,
    num_inference_steps: int,
    seed: int,
    negative_prompt: str | None = None,
    batch_size: int = 120,
) -> torch.Tensor:
    """Images ``(N, 3, H, W)`` in ``[-1, 1]`` for ``prompts``, one each, in batches; batch ``b`` draws its noise
    from ``torch.Generator().manual_seed(seed + b)``."""
    out = []
    for b, start in enumerate(range(0, len(prompts), batch_size)):
        chunk = list(prompts[start : start + batch_size])
        images = pipe(
            chunk,
            negative_prompt=None if negative_prompt is None else [negative_prompt] * len(chunk),
            guidance_scale=guidance_scale,
            num_inference_steps=num_inference_steps,
            generator=torch.Generator().manual_seed(seed + b),
            output_type="pt",
        ).images  # (B, 3, H, W) in [0, 1]
        out.append(images * 2 - 1)
    return torch.cat(out)


def _open_prompt_images(pipe, prompts: list[str], s: CardSettings, negative: str | None) -> torch.Tensor:
    return generate(
        pipe,
        prompts,
        guidance_scale=7.5,
        num_inference_steps=25,
        seed=s.seed,
        negative_prompt=negative,
        batch_size=s.batch_size,
    )


def _full_ddpm(pipe: StableDiffusionPipeline) -> StableDiffusionPipeline:
    """``pipe`` with a ``DDPMScheduler`` that can run all T steps: "trailing" spacing gives T − 1, …, 0 (SD's
    "leading" spacing with ``steps_offset=1`` would ask for timestep T)."""
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    components = {**pipe.components, "scheduler": scheduler}
    swapped = StableDiffusionPipeline(**components, requires_safety_checker=False)
    swapped.set_progress_bar_config(disable=True)
    return swapped


def measure(
    pipe: StableDiffusionPipeline,
    *,
    judge: ShapesJudge,
    clip: tuple,
    held_out: ShapesDataset,
    settings: CardSettings = CardSettings(),
) -> dict:
    """Every model-card number for ``pipe`` (see the module docstring), as a JSON-able dict."""
    s = settings
    pipe.set_progress_bar_config(disable=True)
    prompts = held_out.captions[: s.prompts]
    result: dict = {
        "n_prompts": len(prompts),
        "seed": s.seed,
        "batch_size": s.batch_size,
        "diversity": {"prompts": s.diversity_prompts, "samples": s.diversity_samples},
    }

    # 1) guidance: adherence, per attribute, CLIP score, diversity (DDIM 25 steps)
    rows = []
    many = [p for p in held_out.captions[: s.diversity_prompts] for _ in range(s.diversity_samples)]
    for w in s.guidance_scales:
        started = time.perf_counter()
        images = generate(pipe, prompts, guidance_scale=w, num_inference_steps=25, seed=s.seed, batch_size=s.batch_size)
        seconds = time.perf_counter() - started
        score = adherence(judge, images, prompts)
        spread = generate(pipe, many, guidance_scale=w, num_inference_steps=25, seed=s.seed + 1000)
        groups = spread.split(s.diversity_samples)
        rows.append(
            {
                "guidance": w,
                "adherence": bootstrap_mean(score.per_sample),  # per picture: the share of its attributes right
                "exact": proportion(score.per_sample == 1.0),
                **{f"adherence_{k}": proportion(v) for k, v in score.checks.items()},
                "clip_score": bootstrap_mean(clip_score(*clip, images, prompts)),
                "diversity": bootstrap_mean([diversity(g) for g in groups]),  # per prompt
                "seconds_per_image": seconds / len(prompts),
            }
        )
    result["guidance"] = rows
    result["clip_score_real_images"] = bootstrap_mean(clip_score(*clip, held_out.images[: s.prompts], prompts))

    # 2) steps: DDIM 10/25/50 against DDPM 1000 (guidance 7.5)
    few = prompts[: s.step_prompts]
    steps = []
    for sampler, n in [("DDIM", n) for n in s.ddim_steps] + [("DDPM", s.ddpm_steps)]:
        runner = pipe if sampler == "DDIM" else _full_ddpm(pipe)
        started = time.perf_counter()
        images = generate(runner, few, guidance_scale=7.5, num_inference_steps=n, seed=s.seed, batch_size=s.batch_size)
        seconds = time.perf_counter() - started
        steps.append(
            {
                "sampler": sampler,
                "steps": n,
                "adherence": bootstrap_mean(adherence(judge, images, few).per_sample),
                "seconds_per_image": seconds / len(few),
            }
        )
    result["steps"], result["n_step_prompts"] = steps, len(few)

    # 3) a negative prompt naming a colour, on prompts that leave the colours open
    colourless = [caption(scene, omit=("colour", "colour_2")) for scene in held_out.scenes[: s.negative_prompts]]
    plain = adherence(judge, _open_prompt_images(pipe, colourless, s, None), colourless)
    negative = []
    for colour in COLOURS:
        avoided = adherence(judge, _open_prompt_images(pipe, colourless, s, colour), colourless)
        negative.append(
            {
                "colour": colour,
                "without": proportion(plain.found_as("colour", colour)),
                "with": proportion(avoided.found_as("colour", colour)),
            }
        )
    result["negative_prompt"] = {"chance": 1 / len(COLOURS), "n_prompts": len(colourless), "rows": negative}
    return result


def write_card(path: Path, metrics: dict, *, clip_metrics: dict, sizes: dict[str, int], train: dict) -> None:
    """``README.md`` beside the weights, from ``metrics`` (:func:`measure`) and the CLIP and training facts."""
    g = metrics["guidance"]
    lines = [
        "# course/shapes-sd",
        "",
        "A miniature Stable Diffusion for the course's captioned shapes world (32×32 RGB), trained here from scratch",
        "by `make models`. Every part is the class Stable Diffusion uses, so the same calls load it:",
        "",
        "```python",
        'pipe = DiffusionPipeline.from_pretrained("data/models/shapes-sd")   # StableDiffusionPipeline',
        'image = pipe("a large red circle left of a small blue square on a grey background").images[0]',
        "```",
        "",
        "| component | class | parameters |",
        "| --- | --- | --- |",
    ]
    for name, cls in (("unet", "UNet2DConditionModel"), ("vae", "AutoencoderKL"), ("text_encoder", "CLIPTextModel")):
        lines.append(f"| {name} | `{cls}` | {sizes[name] / 1e6:.2f} M |")
    lines += [
        "| tokenizer | `CLIPTokenizer` (vocabulary of the captions) | |",
        "| scheduler | `DDIMScheduler` (SD's scaled-linear β, T = 1000) | |",
        "",
        f"Training: {train['summary']}",
        "",
        *guidance_section(metrics, stage="shapes-sd", sampling="DDIM 25 steps"),
    ]
    lines += [
        "",
        f"### Steps (the first {metrics['n_step_prompts']} of those captions, guidance 7.5)",
        "",
        "| sampler | steps | adherence | seconds per image |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['sampler']} | {r['steps']} | {r['adherence']} | {r['seconds_per_image']:.4f} |" for r in metrics["steps"]
    ]
    neg = metrics["negative_prompt"]
    lines += [
        "",
        "### A negative prompt naming a colour (guidance 7.5, DDIM 25 steps)",
        "",
        f'Prompts are {neg["n_prompts"]} held-out captions with the colours left out ("a large circle in the centre',
        'on a grey background"), sampled without a negative prompt and with one naming a single colour; the table',
        f"gives how often the judge reads that colour on the first object (uniform would be {neg['chance']:.3f}).",
        "",
        "| negative prompt | frequency without | frequency with |",
        "| --- | --- | --- |",
    ]
    lines += [f'| "{r["colour"]}" | {r["without"]} | {r["with"]} |' for r in neg["rows"]]
    lines += [
        "",
        "### The shapes CLIP (`data/models/shapes-clip`)",
        "",
        f"Held-out text → image top-1 retrieval among {clip_metrics['n_held_out']} images:"
        f" {_estimate(clip_metrics['retrieval_top1'])} (chance {clip_metrics['retrieval_chance']:.4f}).",
        "",
        f"Sampling time: {g[-1]['seconds_per_image'] * 1000:.1f} ms per image (DDIM 25 steps, guidance 7.5, batches of"
        f" {metrics['batch_size']}, CPU, `make models`' machine).",
    ]
    (path / "README.md").write_text("\n".join(lines) + "\n")
    (path / "metrics.json").write_text(json.dumps(metrics, indent=2, default=Estimate.record) + "\n")


def guidance_section(metrics: dict, *, stage: str, sampling: str) -> list[str]:
    """The card's "Measured" heading and guidance table (adherence, per attribute, CLIP score, diversity per guidance
    scale), with what the measures mean; shared by the shapes models' cards. ``sampling`` names the sampler."""
    g = metrics["guidance"]
    attrs = [k for k in SCORED if f"adherence_{k}" in g[0]]
    lines = [
        "## Measured",
        "",
        f"`python -m course_utils.models.build --only {stage} --eval-only` (seed {metrics['seed']}). Adherence is",
        "the share of the attributes a prompt names that the attribute judge (`data/models/shapes-judge`, trained",
        "on ground-truth renders) reads in the picture; one sample per held-out caption.",
        "",
        f"### Guidance ({metrics['n_prompts']} held-out captions, {sampling})",
        "",
        "| guidance | adherence | every attribute right | " + " | ".join(attrs) + " | CLIP score | diversity |",
        "| --- " * (5 + len(attrs)) + "|",
    ]
    for row in g:
        cells = [f"{row['guidance']:g}", *(str(row[k]) for k in ("adherence", "exact"))]
        cells += [str(row[f"adherence_{k}"]) for k in attrs]
        cells += [str(row["clip_score"]), str(row["diversity"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [
        "",
        f"CLIP score of the real held-out pictures with their captions: {metrics['clip_score_real_images']}.",
        "Every measure with its 95 % interval: bootstrap over prompts for means (adherence: the share of a picture's"
        " named attributes the judge reads right, averaged over pictures), Wilson for shares.",
        f"Diversity: mean pairwise RMS distance (in [-1, 1] pixels) between {metrics['diversity']['samples']} samples"
        f" of one prompt, over {metrics['diversity']['prompts']} prompts.",
    ]


def _estimate(record: dict) -> Estimate:
    return Estimate(**record)
