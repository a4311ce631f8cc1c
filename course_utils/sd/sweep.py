"""``diffusion-course sweep`` (also ``python -m course_utils.sd.sweep``): vary one generation setting, everything
else fixed and seeded, and measure every image.

    diffusion-course sweep --vary guidance_scale --values 1 3 5 7.5 10 15 \\
        --prompt "a large red circle left of a small blue square on a grey background" --seeds 0 1 2

Writes ``grid.png``, ``metrics.csv`` and ``summary.csv`` under ``<output_dir>/<setting>/``; what is measured is
described in :mod:`course_utils.sd.sweep_study`, the core this command line calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from course_utils.errors import ArgumentParser, main_guard
from course_utils.sd.pipeline import DEFAULT_MODEL_ID
from course_utils.sd.sweep_study import SETTINGS, run_sweep, save_sweep

__all__ = ["build_parser", "main"]


def build_parser(prog: str | None = None) -> ArgumentParser:
    parser = ArgumentParser(prog=prog or "python -m course_utils.sd.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--vary", required=True, help=f"the setting that varies: {', '.join(SETTINGS)}")
    parser.add_argument("--values", required=True, nargs="+", help='its values, e.g. 1 3 7.5, or "" none "blurry"')
    parser.add_argument("--prompt", required=True, action="append", help="a prompt (repeat for several)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one image per prompt and seed")
    parser.add_argument("--model_id", default=DEFAULT_MODEL_ID)
    parser.add_argument("--scheduler")
    parser.add_argument("--guidance_scale", type=float)
    parser.add_argument("--number_inference_steps", "--num_inference_steps", dest="num_inference_steps", type=int)
    parser.add_argument("--negative_prompt")
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clip_model", default="auto", help="auto, none, a Hub id or a folder")
    parser.add_argument("--output_dir", default="outputs/sweep")
    return parser


@main_guard
def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    args = build_parser(prog).parse_strict(argv)
    result = run_sweep(
        setting=args.vary,
        values=args.values,
        prompts=args.prompt,
        seeds=args.seeds,
        model_id=args.model_id,
        scheduler=args.scheduler,
        guidance_scale=args.guidance_scale,
        num_inference_steps=args.num_inference_steps,
        negative_prompt=args.negative_prompt,
        height=args.height,
        width=args.width,
        device=args.device,
        clip_model=None if args.clip_model == "none" else args.clip_model,
    )
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(result.study.text())
    for name, path in save_sweep(result, Path(args.output_dir) / args.vary).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
