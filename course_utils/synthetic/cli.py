"""Synthetic training data from titles: ``diffusion-course synthetic`` (also ``python -m course_utils.synthetic.cli``).

    diffusion-course synthetic --input data/synthetic/shapes_concepts.csv --output_dir outputs/synthetic
    diffusion-course synthetic --input data/synthetic/shapes_concepts.csv --output_dir outputs/synthetic --dry-run
    diffusion-course synthetic --input data/synthetic/dish_titles.csv --captioner google/gemma-3-1b-it \\
        --model_id stabilityai/stable-diffusion-2-1 --negative_prompt "blurry, low resolution" --output_dir out/dishes
    diffusion-course synthetic --input titles.csv --shard 0/4 --output_dir out/shard0    # … up to 3/4, anywhere
    diffusion-course synthetic merge out/all out/shard0 out/shard1 out/shard2 out/shard3
    diffusion-course synthetic verify out/all

Each title of ``--input`` (column ``--title_column``) gets ``--variations`` captions from ``--captioner``
(``template``: a seeded grammar, offline; or a chat model id), each caption an image from ``--model_id`` (the flags
of ``generate``) scored by CLIP. The run is resumable: stop it (Ctrl-C) or kill it, run the same command again, and
it goes on where it stopped, drawing exactly what it would have drawn (:mod:`course_utils.synthetic.pipeline`).
A folder made with other settings is refused unless ``--overwrite``; more titles are added with ``--extend``.

``verify DIR`` exits 0 when the folder holds everything the pipeline promises, 1 with the problems listed when it
does not, 2 when DIR is not an output folder. ``merge OUT SHARD…`` writes the folder an unsharded run would have.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import fields

from course_utils.errors import ArgumentParser, CourseError, main_guard
from course_utils.runtime import DEVICES, DTYPES
from course_utils.synthetic.ids import parse_shard
from course_utils.synthetic.pipeline import ENGINES, SyntheticConfig

__all__ = ["build_parser", "main"]

SUBCOMMANDS = ("verify", "merge")
DEFAULTS = {f.name: f.default for f in fields(SyntheticConfig)}


def build_parser(prog: str | None = None) -> ArgumentParser:
    prog = prog or "python -m course_utils.synthetic.cli"
    parser = ArgumentParser(
        prog=prog,
        description="Caption variations → images → CSV with CLIP scores; resumable, shardable. Subcommands:"
        f" {prog} verify DIR, {prog} merge OUT SHARD...",
    )
    add = parser.add_argument
    add("--input", required=True, help="a UTF-8 CSV with a header row, one title per row")
    add("--title_column", default=DEFAULTS["title_column"], help="(default title)")
    add("--variations", type=int, default=DEFAULTS["variations"], help="captions per title (default 3)")
    add("--captioner", default=DEFAULTS["captioner"], help="template (offline), a chat model id or folder")
    add("--output_dir", default=str(DEFAULTS["output_dir"]), help=f"(default {DEFAULTS['output_dir']})")
    add("--model_id", default=DEFAULTS["model_id"], help=f"image model (default {DEFAULTS['model_id']})")
    add("--scheduler", default=None, help="as for generate (default: the model's)")
    add("--guidance_scale", type=float, default=None)
    add("--number_inference_steps", "--num_inference_steps", dest="num_inference_steps", type=int, default=None)
    add("--height", type=int, default=None)
    add("--width", type=int, default=None)
    add("--negative_prompt", default=None)
    add("--seed", type=int, default=DEFAULTS["seed"], help="seeds of captions and images are hashed from it")
    add("--limit", type=int, default=None, help="the first N titles only")
    add("--shard", default=None, metavar="I/N", help="only the titles of shard I of N (I counts from 0)")
    add(
        "--engine",
        choices=ENGINES,
        default=DEFAULTS["engine"],
        help="local, or ray (pip install -r requirements-ray.txt)",
    )
    add("--workers", type=int, default=DEFAULTS["workers"], help="Ray actors (default 2)")
    add("--gpus_per_worker", type=float, default=DEFAULTS["gpus_per_worker"], help="GPUs per Ray actor")
    add("--clip_model", default=DEFAULTS["clip_model"], help="auto (the model's), none, a CLIP id or folder")
    add("--min_clip_score", type=float, default=None, help="metadata.jsonl keeps the images scoring at least this")
    add("--retries", type=int, default=DEFAULTS["retries"], help="new answers asked of a captioner that falls short")
    add("--threads", type=int, default=None, help="torch CPU threads where images are drawn (default: torch's)")
    add("--device", choices=DEVICES, default="auto")
    add("--dtype", choices=list(DTYPES), default=None)
    add("--dry-run", "--dry_run", dest="dry_run", action="store_true", help="print the plan; load no model")
    add("--extend", action="store_true", help="add titles to a folder made with the same settings")
    add("--overwrite", action="store_true", help="delete what --output_dir holds and start again")
    add("--token", default=None, help="Hugging Face token for gated models (default: HF_TOKEN); never written")
    return parser


def config_from_args(args) -> SyntheticConfig:
    values = {k: v for k, v in vars(args).items() if k in DEFAULTS}
    values["shard"] = parse_shard(args.shard)
    return SyntheticConfig(**values)


def _run(argv: Sequence[str], prog: str | None) -> int:
    from course_utils.synthetic.pipeline import describe, measured_rate, prepare, run

    args = build_parser(prog).parse_strict(argv)
    config = config_from_args(args)
    prepared = prepare(config, loading=not args.dry_run)
    if args.dry_run:
        print(describe(prepared, measured=measured_rate(config.output_dir)))
        return 0
    print(describe(prepared, measured=measured_rate(config.output_dir)).splitlines()[0], file=sys.stderr)
    try:
        summary = run(config, prepared=prepared)
    except KeyboardInterrupt:
        print(f"stopped; everything finished is kept in {config.output_dir}: run the same command to go on",
              file=sys.stderr)  # fmt: skip
        return 130
    score = "" if summary.mean_clip_score is None else f", mean CLIP score {summary.mean_clip_score:.1f}"
    rate = "" if summary.seconds_per_image is None else f" ({summary.seconds_per_image:.3f} s each)"
    failed = f", {summary.failed} titles failed (see failed_titles.csv)" if summary.failed else ""
    print(
        f"synthetic: {summary.images} images of {summary.titles} titles{failed}{score}; drawn now:"
        f" {summary.rendered_now}{rate}; results in {summary.output_dir}"
    )
    return 0


def _verify(argv: Sequence[str], prog: str) -> int:
    from course_utils.synthetic.outputs import verify

    parser = ArgumentParser(prog=f"{prog} verify", description="check an output folder (exit 0 holds, 1 does not)")
    parser.add_argument("folder")
    report = verify(parser.parse_strict(argv).folder)
    counts = ", ".join(f"{v} {k}" for k, v in report.counts.items())
    if report.ok:
        print(f"{report.folder}: holds ({counts})")
        return 0
    print(f"{report.folder}: {len(report.problems)} problems ({counts})")
    for problem in report.problems:
        print(f"  {problem}")
    return 1


def _merge(argv: Sequence[str], prog: str) -> int:
    from course_utils.synthetic.outputs import merge

    parser = ArgumentParser(prog=f"{prog} merge", description="combine shard folders into one new folder")
    parser.add_argument("out")
    parser.add_argument("shards", nargs="+")
    args = parser.parse_strict(argv)
    report = merge(args.out, args.shards)
    print(
        f"merged {len(args.shards)} shards into {args.out}: " + ", ".join(f"{v} {k}" for k, v in report.counts.items())
    )
    return 0 if report.ok else 1


@main_guard
def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or "python -m course_utils.synthetic.cli"
    if argv and not argv[0].startswith("-"):
        if argv[0] not in SUBCOMMANDS:
            raise CourseError(f"unknown subcommand {argv[0]!r}; valid: {', '.join(SUBCOMMANDS)} (or options only)")
        return (_verify if argv[0] == "verify" else _merge)(argv[1:], prog)
    return _run(argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())
