"""Text to image with the Stable Diffusion families: ``diffusion-course generate`` (also
``python -m course_utils.sd.generate``).

    diffusion-course generate --prompt "a large red circle left of a small blue square on a grey background"
    diffusion-course generate --prompt "Almond Horchata" --model_id stabilityai/stable-diffusion-2-1 \\
        --scheduler ddpm --guidance_scale 7.5 --number_inference_steps 50 --output_dir results/sd21
    diffusion-course generate --prompt "Almond Horchata" --model_id stabilityai/stable-diffusion-3.5-medium

The default model is the course's miniature Stable Diffusion (``course/shapes-sd``, offline, 32×32 shapes); any
registry id (:data:`course_utils.course.registry.MODELS`: SD 2.1, SD-Turbo, SDXL, SDXL-Turbo, SD 3.5 Medium and Large
Turbo) or a local diffusers folder of those classes works the same way. Everything is checked before a weight
loads (:func:`course_utils.sd.support.check_request`: scheduler × family, steps, guidance, size, prompt words;
:mod:`course_utils.sd.memory`: the memory plan), and a mistake is one line and exit code 2.

Each image is written as ``<output_dir>/<stem>.png`` with a JSON sidecar ``<stem>.json`` holding every setting,
the pipeline and scheduler classes that ran, the versions and the wall time. Image ``i`` of a request with seed
``s`` is drawn from ``torch.Generator("cpu").manual_seed(s + i)`` on its own, so it is reproduced exactly by
``--seed s+i`` alone, and its file name says ``seed<s+i>``.

The Hugging Face token (``--token``, else ``HF_TOKEN`` / a Colab secret / the saved login) is passed to
``from_pretrained`` for gated models and nowhere else: never printed, logged or written.

From Python, use :mod:`course_utils.sd.pipeline` (this module only parses the command line).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from course_utils.errors import ArgumentParser, main_guard
from course_utils.runtime import DEVICES, DTYPES
from course_utils.sd.memory import CPU_OFFLOADS
from course_utils.sd.pipeline import DEFAULT_MODEL_ID, DEFAULT_OUTPUT_DIR, GenerateRequest, generate
from course_utils.sd.support import DEFAULT_SCHEDULER, SCHEDULERS

__all__ = ["build_parser", "main"]


def build_parser(prog: str | None = None) -> ArgumentParser:
    """The command line's flags (the seed inference script's names, plus sizes, seeds and memory levers)."""
    parser = ArgumentParser(
        prog=prog or "python -m course_utils.sd.generate",
        description="Generate images with a Stable Diffusion model (SD 2.x, SDXL, SD 3.5, the course's miniature "
        "model); write each as PNG with a JSON sidecar of its settings.",
    )
    parser.add_argument("--prompt", required=True, help="what to draw")
    parser.add_argument("--negative_prompt", default=None, help="what to steer away from (needs guidance > 1)")
    parser.add_argument(
        "--model_id",
        default=DEFAULT_MODEL_ID,
        help=f"a registry id or a local diffusers folder (default {DEFAULT_MODEL_ID})",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        help=f"{', '.join(SCHEDULERS)}; the family decides which work (default: the model's, ddim for the course"
        f" model, else its own scheduler, also named {DEFAULT_SCHEDULER!r})",
    )
    parser.add_argument("--guidance_scale", type=float, default=None, help="classifier-free guidance (≤ 1: off)")
    parser.add_argument(
        "--number_inference_steps",
        "--num_inference_steps",
        dest="num_inference_steps",
        type=int,
        default=None,
        metavar="STEPS",
        help="denoising steps (default: the model's)",
    )
    parser.add_argument("--seed", type=int, default=0, help="image i is drawn with seed + i (default 0)")
    parser.add_argument("--num_images", type=int, default=1, help="images to write (default 1)")
    parser.add_argument("--height", type=int, default=None, help="pixels (default: the model's)")
    parser.add_argument("--width", type=int, default=None, help="pixels (default: the model's)")
    parser.add_argument("--output_dir", default=str(DEFAULT_OUTPUT_DIR), help=f"(default {DEFAULT_OUTPUT_DIR})")
    parser.add_argument(
        "--token",
        default=None,
        help="Hugging Face token for gated models (default: HF_TOKEN, a Colab secret or the saved login); "
        "used to load, never written anywhere",
    )
    memory = parser.add_argument_group("memory (default: chosen from the model and the GPU's memory)")
    memory.add_argument("--device", choices=DEVICES, default="auto", help="(default auto: CUDA, else MPS, else CPU)")
    memory.add_argument("--dtype", choices=list(DTYPES), default=None, help="(default: float16 on a GPU, else float32)")
    memory.add_argument("--attention_slicing", action="store_true", default=None, help="U-Net attention in slices")
    memory.add_argument("--no-attention_slicing", dest="attention_slicing", action="store_false")
    memory.add_argument(
        "--cpu_offload", choices=CPU_OFFLOADS, default=None, help="keep weights in CPU memory: per component or layer"
    )
    memory.add_argument("--vae_tiling", action="store_true", default=None, help="decode the image in tiles")
    memory.add_argument("--no-vae_tiling", dest="vae_tiling", action="store_false")
    return parser


@main_guard
def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``diffusion-course generate``: parse, :func:`generate`, exit 0 (2 with one line for a mistake)."""
    args = build_parser(prog).parse_strict(argv)
    request = GenerateRequest(**vars(args))
    generate(request)
    return 0


if __name__ == "__main__":
    sys.exit(main())
