"""Fine-tune a text-to-image model: ``diffusion-course finetune`` (also ``python -m course_utils.training.finetune``).

    diffusion-course finetune lora --output_dir runs/star-lora
    diffusion-course finetune dreambooth --output_dir runs/star-db --with_prior_preservation
    diffusion-course finetune lora --output_dir runs/style --train_data_dir data/my_captions
    diffusion-course finetune full --output_dir runs/full --train_data_dir data/my_captions --max_train_steps 800
    accelerate launch -m course_utils.training.finetune lora --output_dir runs/star-lora

Methods (:mod:`course_utils.training.finetuning`): ``dreambooth`` (the whole U-Net on instance images, prior
preservation optional), ``lora`` (a peft adapter; on instance images, or on a captioned imagefolder with
``--train_data_dir``), ``full`` (the whole U-Net on a captioned imagefolder). Options keep the names of diffusers'
training scripts; every one but ``--output_dir`` has an offline default: the course's ``course/shapes-sd``, and
the offline concept (a red heart the shapes world never drew) with its instance images, written into
``OUTPUT/instance_images`` on the first run, and its prompts ``"a sks shape"`` / ``"a shape"``.

Running the same command again after an interruption resumes from the newest ``checkpoint-{step}/`` and ends with
the weights of an uninterrupted run; once the run is finished it does nothing and says so; a folder of another
configuration is refused in one line (exit 2). A LoRA run leaves ``OUTPUT/pytorch_lora_weights.safetensors``
(``pipe.load_lora_weights(OUTPUT)``), the others a ``StableDiffusionPipeline`` folder; both leave ``loss.png`` and
``finetune.json`` (written last).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path

from course_utils.errors import ArgumentParser, CourseError, main_guard
from course_utils.training.finetuning import METHODS, RECORD_FILE, REPORTERS, FinetuneConfig

__all__ = ["build_parser", "config_from_args", "main"]

DEFAULT_MODEL = "course/shapes-sd"
DEFAULTS = {f.name: f.default for f in fields(FinetuneConfig)}


def build_parser(prog: str | None = None) -> ArgumentParser:
    prog = prog or "python -m course_utils.training.finetune"
    parser = ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("method", help=f"one of {', '.join(METHODS)}")
    add("--output_dir", "--output-dir", dest="output_dir", required=True, help="the run's folder")
    add("--pretrained_model_name_or_path", default=DEFAULT_MODEL, help=f"base model id or folder ({DEFAULT_MODEL})")
    add("--max_train_steps", "--max-steps", "--max_steps", dest="max_train_steps", type=int,
        default=DEFAULTS["max_train_steps"], help="steps at most (early stopping may end sooner)")  # fmt: skip
    add("--seed", type=int, default=DEFAULTS["seed"])
    add("--instance_data_dir", default=None, help="instance images (default: the offline concept's)")
    add("--instance_prompt", default=DEFAULTS["instance_prompt"])
    add("--class_prompt", default=DEFAULTS["class_prompt"])
    add("--with_prior_preservation", action="store_true", help="DreamBooth's prior-preservation loss")
    add("--prior_loss_weight", type=float, default=DEFAULTS["prior_loss_weight"])
    add("--num_class_images", type=int, default=DEFAULTS["num_class_images"])
    add("--class_data_dir", default=None, help="where class images are cached (default OUTPUT/class_images)")
    add("--train_data_dir", default=None, help="a captioned imagefolder (metadata.jsonl): full, or lora on captions")
    add("--caption_column", default=DEFAULTS["caption_column"])
    add("--resolution", type=int, default=None, help="training image side (default: the VAE's)")
    add("--rank", type=int, default=DEFAULTS["rank"], help="LoRA rank r")
    add("--lora_alpha", type=int, default=DEFAULTS["lora_alpha"], help="LoRA α (the update is scaled by α / r)")
    add("--lora_dropout", type=float, default=DEFAULTS["lora_dropout"])
    add("--target_modules", default=",".join(DEFAULTS["target_modules"]), help="comma-separated Linear names")
    add("--learning_rate", type=float, default=None, help="(default: 1e-4 for lora and dreambooth, 5e-5 full)")
    add("--train_batch_size", type=int, default=DEFAULTS["train_batch_size"])
    add("--validation_steps", type=int, default=DEFAULTS["validation_steps"], help="steps between validations")
    add("--patience", type=int, default=DEFAULTS["patience"], help="validations without improvement before stopping")
    add("--validation_images", type=int, default=DEFAULTS["validation_images"], help="images held out")
    add("--checkpointing_steps", type=int, default=DEFAULTS["checkpointing_steps"])
    add("--checkpoints_total_limit", type=int, default=DEFAULTS["checkpoints_total_limit"])
    add("--report_to", default="none", help=f"one of {', '.join(REPORTERS)}")
    add("--hub_token", default=None, help="refused with --report_to (use HF_TOKEN)")
    return parser


LEARNING_RATES = {"lora": 1e-4, "dreambooth": 1e-4, "full": 5e-5}


def config_from_args(args) -> FinetuneConfig:
    """The run's :class:`FinetuneConfig`: the model id resolved through the course registry (offline: it must be in
    the local cache), the offline concept's instance images (``OUTPUT/instance_images``, written by :func:`main`
    once the base model has loaded) when none are given. Writes nothing."""
    from course_utils.course.registry import check_available, resolve

    if args.method not in METHODS:
        raise CourseError(f"unknown method {args.method!r}; valid methods: {', '.join(METHODS)}")
    model = check_available(resolve(args.pretrained_model_name_or_path))
    if model.family not in ("sd", "course-sd"):
        raise CourseError(
            f"{args.pretrained_model_name_or_path} is a {model.family} model; fine-tuning takes Stable Diffusion"
            " 1.x/2.x family models (course/shapes-sd, stabilityai/stable-diffusion-2-1, stabilityai/sd-turbo)"
        )
    values = {k: v for k, v in vars(args).items() if k in DEFAULTS}
    values.update(
        pretrained_model_name_or_path=model.source,
        target_modules=tuple(m.strip() for m in args.target_modules.split(",") if m.strip()),
        learning_rate=args.learning_rate or LEARNING_RATES[args.method],
    )
    config = FinetuneConfig(**values)  # every setting checked before anything is written
    if config.uses_instances and config.instance_data_dir is None:
        config = replace(config, instance_data_dir=str(Path(args.output_dir) / OFFLINE_INSTANCES))
    return config


OFFLINE_INSTANCES = "instance_images"


def _offline_instances(output_dir: Path) -> Path:
    """The offline concept's instance images, written once into ``OUTPUT/instance_images``."""
    from course_utils.data.concepts import HEART, export_instance_images

    folder = output_dir / OFFLINE_INSTANCES
    if not folder.is_dir() or not any(folder.iterdir()):
        export_instance_images(HEART, folder, n=8)
    return folder


def _check_other_run(config: FinetuneConfig) -> None:
    """Refuse a folder holding the finished results of another configuration (another base model, method, adapter
    shape …): the run would overwrite them, e.g. a LoRA adapter for another architecture."""
    file = Path(config.output_dir) / RECORD_FILE
    if not file.is_file():
        return
    try:
        record = json.loads(file.read_text())
        old = record["config"]
    except (ValueError, KeyError, TypeError):
        raise CourseError(f"{file} is not a fine-tuning record; use another --output_dir") from None
    new = config.signature()
    if old != new:
        keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
        changes = "; ".join(f"{k} {old.get(k)!r} → {new.get(k)!r}" for k in keys[:3])
        more = f"; and {len(keys) - 3} more" if len(keys) > 3 else ""
        raise CourseError(
            f"{config.output_dir} holds a finished {record.get('method', '?')} run of another configuration"
            f" ({changes}{more}); use another --output_dir, or delete it to start afresh"
        )


def _finished(config: FinetuneConfig) -> dict | None:
    """The record of a finished run in ``config.output_dir`` whose newest checkpoint it matches, else ``None``."""
    from course_utils.training.checkpoints import read_progress

    file = Path(config.output_dir) / RECORD_FILE
    progress = read_progress(config.output_dir)
    if not file.is_file() or progress is None:
        return None
    record = json.loads(file.read_text())
    done = progress.stopped_early or progress.step >= config.max_train_steps
    return record if done and record.get("step") == progress.step else None


@main_guard
def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    from course_utils.training.finetuning import finetune, load_base

    args = build_parser(prog).parse_strict(argv)
    folder = Path(args.output_dir)
    if folder.exists() and not folder.is_dir():
        raise CourseError(f"--output_dir {folder} is a file, not a folder")
    config = config_from_args(args)
    done = _finished(config)
    if done is not None and done.get("config") == config.signature():
        step, best = done["step"], done["best_step"]
        print(f"finetune {config.method}: {folder} is finished (step {step}, best {best}); nothing to do")
        return 0
    _check_other_run(config)
    # nothing is written before the base model has loaded (and finetune writes nothing before the data is read)
    pipe = load_base(config.pretrained_model_name_or_path)
    if config.uses_instances and args.instance_data_dir is None:
        _offline_instances(folder)
    result = finetune(config, pipe=pipe)
    how = "stopped early" if result.stopped_early else "all steps done"
    best = f"best validation at step {result.best_step}" if result.validations else "no validation ran (fewer steps"
    best += "" if result.validations else " than --validation_steps): the last weights are kept"
    print(f"finetune {config.method}: step {result.step} ({how}), {best}, {result.seconds:.1f} s of optimisation;"
          f" results in {folder}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
