"""Two-stage text to image and its step study: DeepFloyd IF stage I (64×64) then stage II (×4 super-resolution).

A cascade (Saharia et al. 2022, "Imagen"; DeepFloyd IF follows it) splits generation in two diffusion models:
stage I draws a small picture from the prompt, stage II draws a larger one *conditioned on* the small one (upscaled,
lightly noised: ``noise_level``) and on the same prompt embeddings. Each stage has its own number of denoising
steps; seed 002 compares (20, 20), (40, 50), (5, 5) and (10, 10) at seed 1213.

Stage II reuses stage I's T5 embeddings (it is loaded without a text encoder), as DeepFloyd's model card does.
On CUDA both stages use model CPU offload (IF-I-XL's 4.3 B-parameter U-Net and the 4.8 B T5 need about 18 GB in
fp16; a 15 GB T4 holds one component at a time).

Shapes: stage I pictures ``(N, 3, 64, 64)``, stage II ``(N, 3, 256, 256)`` (the tests' tiny pipelines: 16 → 32),
in ``[-1, 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from course_utils.course.registry import hf_token, resolve
from course_utils.denoisers import _from_pretrained
from course_utils.errors import CourseError
from course_utils.runtime import resolve_device, resolve_dtype
from course_utils.stats import bootstrap_mean
from course_utils.studies import Study

__all__ = ["load_two_stage", "two_stage_generate", "two_stage_study"]


def _load(cls: Any, model_id: str, *, dtype: torch.dtype, **kwargs: Any) -> Any:
    resolved = resolve(model_id)
    if resolved.family != "if":
        raise CourseError(f"{model_id} is a {resolved.family} model; the two-stage study takes DeepFloyd IF stages")
    token = None if resolved.local else hf_token()
    return _from_pretrained(cls, resolved, dtype=dtype, token=token, **kwargs)  # Hub failures: one line


def load_two_stage(stage_1: str, stage_2: str, *, device: str = "auto", dtype: str | None = None) -> tuple[Any, Any]:
    """``(IFPipeline, IFSuperResolutionPipeline)`` for two model ids or folders; stage II without a text encoder.

    ``dtype`` ``None``: float16 on CUDA, else float32. On CUDA both use model CPU offload.
    """
    from diffusers import IFPipeline, IFSuperResolutionPipeline

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype or ("float16" if torch_device.type == "cuda" else "float32"), torch_device)
    first = _load(IFPipeline, stage_1, dtype=torch_dtype)
    second = _load(IFSuperResolutionPipeline, stage_2, dtype=torch_dtype, text_encoder=None)
    for pipe in (first, second):
        pipe.set_progress_bar_config(disable=True)
        if torch_device.type == "cuda":
            pipe.enable_model_cpu_offload(device=torch_device)
        else:
            pipe.to(torch_device)
    return first, second


@torch.no_grad()
def two_stage_generate(
    stages: tuple[Any, Any], prompts: Sequence[str], *, steps: tuple[int, int], seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage I with ``steps[0]`` steps, then stage II with ``steps[1]``, for each prompt; returns the stage I and
    stage II pictures ``(N, 3, h, w)``, ``(N, 3, H, W)`` in ``[-1, 1]``. Prompt ``i`` draws its noise from
    ``torch.Generator("cpu").manual_seed(seed + i)`` in both stages."""
    first, second = stages
    if len(steps) != 2 or any(not isinstance(n, int) or n < 1 for n in steps):
        raise CourseError(f"steps must be two positive whole numbers (stage I, stage II), got {steps!r}")
    low, high = [], []
    for i, prompt in enumerate(prompts):
        cond, uncond = first.encode_prompt(prompt)
        image = first(
            prompt_embeds=cond,
            negative_prompt_embeds=uncond,
            num_inference_steps=steps[0],
            generator=torch.Generator("cpu").manual_seed(seed + i),
            output_type="pt",
        ).images
        upscaled = second(
            image=image,
            prompt_embeds=cond,
            negative_prompt_embeds=uncond,
            num_inference_steps=steps[1],
            generator=torch.Generator("cpu").manual_seed(seed + i),
            output_type="pt",
        ).images
        low.append(image.float().clamp(-1, 1).cpu())
        high.append(upscaled.float().clamp(-1, 1).cpu())
    return torch.cat(low), torch.cat(high)


def two_stage_study(
    stage_1: str,
    stage_2: str,
    *,
    prompts: Sequence[str],
    steps: Sequence[Sequence[int]],
    seed: int = 1213,
    device: str = "auto",
    dtype: str | None = None,
    clip_model: str | None = "openai/clip-vit-base-patch32",
) -> Study:
    """Every (stage I, stage II) step pair of ``steps`` on every prompt: a grid (rows: prompts; columns: pairs) of
    the stage II pictures and, with ``clip_model``, their mean CLIP score per pair with its 95 % interval
    (bootstrapped over prompts)."""
    pairs = [tuple(int(n) for n in pair) for pair in steps]
    if not pairs or not prompts:
        raise CourseError("the two-stage study needs at least one (stage I, stage II) pair and one prompt")
    stages = load_two_stage(stage_1, stage_2, device=device, dtype=dtype)
    results = [two_stage_generate(stages, prompts, steps=pair, seed=seed)[1] for pair in pairs]  # each (N, 3, H, W)
    table: dict[str, list[Any]] = {"steps (I, II)": [f"{a}, {b}" for a, b in pairs]}
    measures, samples = [], {}
    if clip_model is not None:
        from course_utils.metrics import clip_score
        from course_utils.sd.sweep_study import load_clip

        clip = load_clip(clip_model)
        scores = [clip_score(*clip, images, list(prompts)).numpy() for images in results]
        table["clip_score"] = [bootstrap_mean(per_prompt) for per_prompt in scores]
        samples["clip_score"] = scores
        measures = ["clip_score"]
    images = [results[c][r] for r in range(len(prompts)) for c in range(len(pairs))]  # row-major: prompt, pair
    labels = [f"steps {a}, {b}" if r == 0 else "" for r in range(len(prompts)) for a, b in pairs]
    return Study(
        "two stages",
        "steps (I, II)",
        table,
        images,
        labels,
        ncols=len(pairs),
        measures=measures,
        samples=samples,
        row_labels=[f"'{prompt}'" for prompt in prompts],
    )
