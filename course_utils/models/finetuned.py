"""Week 5's fine-tuned shapes models: the heart concept taught to ``shapes-sd`` by DreamBooth and by LoRA, each with
and without prior preservation, measured by the concept reader (``shapes-judge-unseen``); ``make models`` stage
``finetuned`` (``data/models/shapes-sd-heart``).

The measures (:func:`concept_measures`), each a share with its Wilson interval over prompts × seeds, or a
bootstrap mean — the course's reader standing in for the DreamBooth paper's DINO and CLIP scores (Ruiz et al.
2023, Table 2 and §4.3):

- ``concept``: how often the reader sees a heart for the instance prompt ``"a sks shape"``;
- ``composed``: for ``"a sks shape <position> on a <background> background"`` (three placements), how often the
  heart, its position and its background are all read right;
- ``class_heart``: how often a heart appears for the class prompt ``"a shape"`` — the class noun drifting onto the
  concept (DreamBooth's *language drift*; prior preservation is there to keep it low);
- ``ordinary``: exact adherence on ordinary shapes-world prompts (every attribute read right) — drift beyond the
  class noun;
- ``diversity``: mean pairwise RMS distance between the instance prompt's images (DreamBooth's DIV, in pixels).

Only the LoRA adapters are committed (about 0.2 MB each with their words); the two DreamBooth U-Nets (12.6 MB each)
are trained, measured and left in the stage's run folder :data:`RUNS_DIR` (under the git-ignored ``build/``).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from course_utils.course.paths import ROOT
from course_utils.data.concepts import (
    HEART,
    Concept,
    class_prompt,
    concept_prompt,
    export_instance_images,
    instance_images,
    instance_prompt,
)
from course_utils.data.shapes import to_tensor
from course_utils.errors import CourseError
from course_utils.models.cards import write_metrics
from course_utils.models.shapes_judge import ShapesJudge, adherence, concept_hits, concept_rate, load_shapes_judge
from course_utils.stats import Estimate, bootstrap_mean, proportion
from course_utils.training.finetuning import (
    LORA_FILE,
    RECORD_FILE,
    WORDS_FILE,
    FinetuneConfig,
    attach_lora,
    embed_prompts,
    encode_latents,
    finetune,
    load_base,
    prepare_words,
    validation_loss,
)

__all__ = [
    "COMPOSITIONS",
    "FOLDER",
    "ORDINARY_PROMPTS",
    "RUNS",
    "FinetunedRun",
    "build_finetuned_stage",
    "composed_prompts",
    "concept_images",
    "concept_measures",
    "custom_dataset_run",
    "draw_images",
    "AdapterExercise",
    "adapter_exercise",
    "instance_latents",
    "read_concept",
    "load_adapter",
]

FOLDER = "shapes-sd-heart"
RUNS_DIR = ROOT / "build" / "models" / FOLDER
"""Where the stage's runs train (checkpoints, class images, the DreamBooth U-Nets): beside the build outputs, never
under ``data/models``."""
ORDINARY_PROMPTS = (
    "a blue square on the right on a grey background",
    "a small green triangle at the top on a beige background",
    "a large purple circle on the left on a black background",
    "a yellow plus in the centre on a grey background",
)
COMPOSITIONS = (("left", "black"), ("right", "beige"), ("top", "grey"))
MEASURES = ("concept", "composed", "class_heart", "ordinary", "diversity")


@dataclass(frozen=True)
class FinetunedRun:
    """One fine-tuning of the stage: its name (the folder), the recipe's method, prior preservation, learning
    rate and steps, and whether its result is committed (adapters only)."""

    name: str
    method: str
    prior: bool
    learning_rate: float
    steps: int
    commit: bool = False


RUNS = (
    FinetunedRun("dreambooth", "dreambooth", False, 1e-3, 400),
    FinetunedRun("dreambooth-prior", "dreambooth", True, 1e-3, 400),
    FinetunedRun("lora", "lora", False, 3e-3, 600, commit=True),
    FinetunedRun("lora-prior", "lora", True, 3e-3, 600, commit=True),
)


def draw_images(pipe, prompts: list[str], *, n_seeds: int, steps: int, guidance: float, seed: int) -> torch.Tensor:
    """``len(prompts) × n_seeds`` images ``(P·S, 3, H, W)`` in ``[-1, 1]``; image ``(p, s)`` from seed
    ``seed·1000 + s``, so every model draws from the same noise."""
    images = []
    for prompt in prompts:
        generators = [torch.Generator().manual_seed(seed * 1000 + s) for s in range(n_seeds)]
        out = pipe([prompt] * n_seeds, num_inference_steps=steps, guidance_scale=guidance, generator=generators,
                   output_type="pt").images  # fmt: skip
        images.append(out * 2 - 1)
    return torch.cat(images)


def _pairwise_rms(images: torch.Tensor) -> np.ndarray:
    """Per image, its mean RMS distance to the others ``(N,)`` (their mean is ``metrics.diversity``)."""
    flat = images.float().flatten(1)
    d = torch.cdist(flat, flat) / flat.shape[1] ** 0.5
    return (d.sum(1) / (len(flat) - 1)).numpy()


def concept_images(
    pipe, *, concept: Concept = HEART, n_seeds: int = 24, steps: int = 20, guidance: float = 7.5, seed: int = 0
) -> dict[str, torch.Tensor]:
    """What :func:`read_concept` reads, by prompt group: ``instance`` (the instance prompt), ``composed`` (the
    :data:`COMPOSITIONS`, prompt by prompt), ``class`` (the class prompt) and ``ordinary``
    (:data:`ORDINARY_PROMPTS`), each ``(prompts · n_seeds, 3, H, W)`` in ``[-1, 1]`` (``pipe`` must know the
    concept's words)."""
    if n_seeds < 2:
        raise CourseError(f"concept_images needs at least 2 seeds per prompt, got {n_seeds}")
    kw = dict(n_seeds=n_seeds, steps=steps, guidance=guidance, seed=seed)
    return {
        "instance": draw_images(pipe, [instance_prompt(concept)], **kw),
        "composed": draw_images(pipe, composed_prompts(concept), **kw),
        "class": draw_images(pipe, [class_prompt(concept)], **kw),
        "ordinary": draw_images(pipe, list(ORDINARY_PROMPTS), **kw),
    }


def instance_latents(pipe, *, concept: Concept = HEART, n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The concept's ``n`` instance pictures (:func:`~course_utils.data.concepts.instance_images`) as the training
    loop sees them: scaled VAE latents ``z = s·E(x)`` ``(n, C, h, w)`` and the instance prompt's ``τ(y)``
    ``(n, L, D)``. ``pipe`` must know the prompt's new words (:func:`~course_utils.training.finetuning.prepare_words`).
    """
    pictures = instance_images(concept, n=n, seed=seed)
    latents = encode_latents(pipe.vae, to_tensor(pictures.images))
    return latents, embed_prompts(pipe, [instance_prompt(concept)] * n)


@dataclass
class AdapterExercise:
    """Week 5's hearts ready for a LoRA loop written by hand (assignment 5's q5): ``pipe`` (``shapes-sd`` with the
    instance prompt's new words), its ``unet`` with a fresh adapter (only the adapter requires gradients), the
    training pictures' latents and ``τ(y)`` in ``train``, the held-out ones in ``held_out``."""

    pipe: object
    unet: torch.nn.Module
    train: tuple[torch.Tensor, torch.Tensor]
    held_out: tuple[torch.Tensor, torch.Tensor]

    def held_out_loss(self, *, reduction: str = "mean") -> float | torch.Tensor:
        """:func:`~course_utils.training.finetuning.validation_loss` of the held-out pictures (the number the
        recipe's early stopping watches), in eval mode; the U-Net's mode is left as it was."""
        training = self.unet.training
        try:
            return validation_loss(
                self.unet.eval(), *self.held_out, alphas_cumprod=self.pipe.scheduler.alphas_cumprod,
                prediction_type=self.pipe.scheduler.config.prediction_type, seed=0, reduction=reduction,
            )  # fmt: skip
        finally:
            self.unet.train(training)


def adapter_exercise(
    *, rank: int = 4, n: int = 8, held_out: int = 2, seed: int = 0, root: str | Path | None = None
) -> AdapterExercise:
    """:class:`AdapterExercise` on a fresh ``shapes-sd`` from ``root`` (default ``data/models``): the heart's ``n``
    instance pictures (:func:`instance_latents`), the last ``held_out`` of them held out, and a rank-``rank`` LoRA
    adapter (``α = r``, no dropout) on every attention projection, seeded."""
    from course_utils.course.paths import MODELS_DIR

    if not 0 < held_out < n:
        raise CourseError(f"hold out between 1 and n − 1 = {n - 1} of the {n} pictures, got {held_out}")
    pipe = load_base(str(Path(root or MODELS_DIR) / "shapes-sd"))
    prepare_words(pipe, [instance_prompt(HEART)], seed=seed)
    latents, cond = instance_latents(pipe, n=n, seed=seed)
    unet = attach_lora(pipe.unet, rank=rank, lora_alpha=rank, lora_dropout=0.0,
                       target_modules=FinetuneConfig.target_modules, seed=seed)  # fmt: skip
    keep = n - held_out
    return AdapterExercise(pipe, unet, (latents[:keep], cond[:keep]), (latents[keep:], cond[keep:]))


def composed_prompts(concept: Concept = HEART) -> list[str]:
    """The instance prompt placed at each of :data:`COMPOSITIONS`."""
    return [concept_prompt(concept, position=p, background=b) for p, b in COMPOSITIONS]


def read_concept(
    images: dict[str, torch.Tensor], *, judge: ShapesJudge, concept: Concept = HEART
) -> dict[str, Estimate]:
    """The module docstring's measures of :func:`concept_images`' output, read by ``judge``."""
    n_seeds = len(images["instance"])
    composed = composed_prompts(concept)
    hits = concept_hits(judge, images["composed"], [p for p in composed for _ in range(n_seeds)], concept)
    all_right = np.logical_and.reduce([hits[k] for k in ("shape", "position", "background")])
    read = adherence(judge, images["ordinary"], [p for p in ORDINARY_PROMPTS for _ in range(n_seeds)])
    return {
        "concept": proportion(concept_rate(judge, images["instance"], concept)),
        "composed": proportion(all_right),
        "class_heart": proportion(concept_rate(judge, images["class"], concept)),
        "ordinary": proportion(read.per_sample == 1.0),
        "diversity": bootstrap_mean(_pairwise_rms(images["instance"])),
    }


def concept_measures(pipe, *, judge: ShapesJudge, concept: Concept = HEART, **settings) -> dict[str, Estimate]:
    """:func:`read_concept` of :func:`concept_images` (``settings``: its ``n_seeds``, ``steps``, ``guidance``,
    ``seed``)."""
    return read_concept(concept_images(pipe, concept=concept, **settings), judge=judge, concept=concept)


def load_adapter(name: str = "lora-prior", *, root: str | Path | None = None):
    """A committed adapter of the stage on a fresh ``shapes-sd``: the pipeline with its words and LoRA weights."""
    from course_utils.course.paths import MODELS_DIR
    from course_utils.training.finetuning import load_finetuned

    folder = Path(root or MODELS_DIR) / FOLDER / name
    if not (folder / LORA_FILE).is_file():
        valid = [r.name for r in RUNS if r.commit]
        raise CourseError(f"no committed adapter {name!r} at {folder} (committed: {', '.join(valid)})")
    return load_finetuned(folder, base=load_base(str(Path(root or MODELS_DIR) / "shapes-sd")))


def build_finetuned_stage(out: Path, *, train: bool = True, runs: tuple[FinetunedRun, ...] = RUNS,
                          n_seeds: int = 24, seed: int = 0, custom: dict | None = None,
                          runs_dir: Path | None = None) -> dict:  # fmt: skip
    """Fine-tune ``out/shapes-sd`` on the heart with every run of ``runs`` (resumable: each run's folder is
    ``runs_dir/<name>``, by default :data:`RUNS_DIR`, outside the committed models), measure base and runs, commit
    the adapters, run :func:`custom_dataset_run` (``custom``: its settings), write the card."""
    folder = out / FOLDER
    runs_dir = Path(runs_dir or RUNS_DIR)
    judge = load_shapes_judge(out / "shapes-judge-unseen")
    base_path = str(out / "shapes-sd")
    instances = export_instance_images(HEART, runs_dir / "instance_images", n=8, seed=seed)
    metrics: dict = {"n_seeds": n_seeds, "runs": {}}
    base = load_base(base_path)
    from course_utils.training.finetuning import prepare_words

    prepare_words(base, [instance_prompt(HEART), class_prompt(HEART)], seed=seed)
    metrics["base"] = concept_measures(base, judge=judge, n_seeds=n_seeds, seed=seed)
    for run in runs:
        run_dir = runs_dir / run.name
        if not train and not (run_dir / RECORD_FILE).is_file():
            raise CourseError(f"--eval-only: {run_dir} holds no finished run; train the stage first")
        config = FinetuneConfig(
            method=run.method, output_dir=str(run_dir), pretrained_model_name_or_path=base_path,
            instance_data_dir=str(instances), with_prior_preservation=run.prior, num_class_images=32,
            learning_rate=run.learning_rate, max_train_steps=run.steps, train_batch_size=2, validation_steps=50,
            patience=3, checkpointing_steps=100, seed=seed,
        )  # fmt: skip
        started = time.perf_counter()
        result = finetune(config, show_progress=True)
        record = json.loads((run_dir / RECORD_FILE).read_text())
        measures = concept_measures(result.pipeline, judge=judge, n_seeds=n_seeds, seed=seed)
        metrics["runs"][run.name] = {
            **measures,
            "method": run.method,
            "prior_preservation": run.prior,
            "learning_rate": run.learning_rate,
            "steps": result.step,
            "best_step": result.best_step,
            "stopped_early": result.stopped_early,
            "train_seconds": record["seconds"],
            "wall_seconds": time.perf_counter() - started,
            "trainable_parameters": record["trainable_parameters"]
            or sum(p.numel() for p in result.pipeline.unet.parameters()),
        }
        if run.commit:
            target = folder / run.name
            target.mkdir(parents=True, exist_ok=True)
            for name in (LORA_FILE, WORDS_FILE, "loss.png"):
                shutil.copy2(run_dir / name, target / name)
            (target / RECORD_FILE).write_text(_portable(record, out))
        print(f"finetuned {run.name}: " + ", ".join(f"{k} {measures[k]}" for k in MEASURES), flush=True)
    metrics["custom"] = custom_dataset_run(out, judge=judge, train=train, seed=seed, runs_dir=runs_dir,
                                           **(custom or {}))  # fmt: skip
    write_metrics(folder, metrics)
    _write_card(folder, metrics)
    return metrics


def custom_dataset_run(out: Path, *, judge: ShapesJudge, runs_dir: Path, train: bool = True, seed: int = 0,
                       n_scenes: int = 400, category: str = "circle", steps: int = 200,
                       n_measured: int = 48) -> dict:  # fmt: skip
    """Seed 001's task 4 end to end: the shapes world exported as COCO (captions + instances), the images showing
    a ``category`` chosen by :func:`course_utils.data.coco.coco_to_imagefolder`, the whole U-Net fine-tuned on that
    imagefolder (``method="full"``), and exact adherence on ``n_measured`` of its captions before and after."""
    from course_utils.data import shapes
    from course_utils.data.coco import SubsetOptions, coco_to_imagefolder

    export, subset, run_dir = runs_dir / "coco", runs_dir / f"coco-{category}", runs_dir / f"full-{category}"
    if not (export / "instances.json").is_file():
        shapes.export_coco(shapes.make_dataset(n_scenes, seed=seed + 7), export, instances=True)
    if not (subset / "metadata.jsonl").is_file():
        coco_to_imagefolder(export / "captions.json", instances=export / "instances.json", images_dir=export,
                            output_dir=subset, options=SubsetOptions(categories=(category,)))  # fmt: skip
    rows = [json.loads(line) for line in (subset / "metadata.jsonl").read_text().splitlines() if line.strip()]
    captions = [row["text"] for row in rows][:n_measured]
    if not train and not (run_dir / RECORD_FILE).is_file():
        raise CourseError(f"--eval-only: {run_dir} holds no finished run; train the stage first")
    base_path = str(out / "shapes-sd")
    config = FinetuneConfig(method="full", output_dir=str(run_dir), pretrained_model_name_or_path=base_path,
                            train_data_dir=str(subset), learning_rate=5e-5, max_train_steps=steps, train_batch_size=4,
                            validation_images=8, validation_steps=50, patience=3, checkpointing_steps=100,
                            seed=seed)  # fmt: skip

    def exact(pipe) -> Estimate:
        generators = [torch.Generator().manual_seed(seed * 1000 + i) for i in range(len(captions))]
        images = pipe(captions, num_inference_steps=20, guidance_scale=7.5, generator=generators,
                      output_type="pt").images * 2 - 1  # fmt: skip
        return proportion(adherence(judge, images, captions).per_sample == 1.0)

    before = exact(load_base(base_path))
    result = finetune(config, show_progress=True)
    after = exact(result.pipeline)
    print(
        f"finetuned full on {len(rows)} COCO-selected {category} images: exact adherence on {len(captions)} of"
        f" their captions {before} → {after}",
        flush=True,
    )
    return {"category": category, "images": len(rows), "captions_measured": len(captions), "before": before,
            "after": after, "steps": result.step, "best_step": result.best_step}  # fmt: skip


def _portable(record: dict, out: Path) -> str:
    """A run's ``finetune.json`` with the stage's folder written as ``data/models`` (no machine's own paths)."""
    text = json.dumps(record, indent=2)
    return text.replace(str(out.resolve()), "data/models").replace(str(out), "data/models") + "\n"


def _write_card(folder: Path, metrics: dict) -> None:
    header = "| model | concept | composed | class → heart | ordinary | diversity | steps (best) | train s |"
    lines = [header, "|" + " --- |" * 8]
    rows = [("base (shapes-sd)", metrics["base"], None), *((k, v, v) for k, v in metrics["runs"].items())]
    for name, m, run in rows:
        extra = f"{run['steps']} ({run['best_step']}) | {run['train_seconds']:.0f}" if run else "— | —"
        lines.append(f"| {name} | " + " | ".join(str(m[k]) for k in MEASURES) + f" | {extra} |")
    text = f"""# shapes-sd-heart: the heart concept taught to shapes-sd (week 5)

Built by `make models ARGS="--only finetuned"` (course_utils.models.finetuned). Instance prompt
`{instance_prompt(HEART)}`, class prompt `{class_prompt(HEART)}`, 8 instance pictures (2 of them held out for
the validation loss: one every 50 steps, early stopping after 3 without improvement, the best weights kept), 32
class pictures for prior preservation, batch 2 (+ 2 class pictures). Measured by the concept reader
(`shapes-judge-unseen`) on {metrics["n_seeds"]} seeds per prompt, 20 DDIM steps, guidance 7.5; 95 % intervals
(Wilson for shares, bootstrap for diversity).

{chr(10).join(lines)}

Committed: the LoRA adapters `lora/` and `lora-prior/` (`pytorch_lora_weights.safetensors`, the new words'
`learned_embeds.safetensors`, `finetune.json`, `loss.png`); load one with
`course_utils.models.finetuned.load_adapter("lora-prior")` or diffusers' `pipe.load_lora_weights(folder)` after
`pipe.load_textual_inversion`. The DreamBooth U-Nets stay in `build/models/shapes-sd-heart/` (not committed).

A custom caption dataset (seed 001, task 4): the shapes world exported as COCO, the
{metrics["custom"]["images"]} images showing a {metrics["custom"]["category"]} selected by
`course_utils.data.coco`, the whole U-Net fine-tuned on that imagefolder ({metrics["custom"]["steps"]} steps, best
{metrics["custom"]["best_step"]}); exact adherence on {metrics["custom"]["captions_measured"]} of its captions,
before {metrics["custom"]["before"]} → after {metrics["custom"]["after"]}.
"""
    (folder / "README.md").write_text(text)
