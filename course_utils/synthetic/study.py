"""Does synthetic data help when the real captions are narrow? The study behind week 6's research question.

Seed 000 (task C) asks how synthetic pictures from Stable Diffusion and generated captions can "improve
generalisation in image captioning" when the real data set is "highly single-case specific". Offline the question
gets a number:

1. **Narrow real data** (:mod:`course_utils.data.narrow`): one-object shapes scenes in which each shape appears in
   only two of the six colours (8 of 24 (shape, colour) combinations); the other 16 are never seen by the downstream
   model.
2. **A downstream captioner** trained from scratch (:mod:`course_utils.models.shapes_captioner`: attribute heads whose
   arg-max the caption grammar turns into text), under three conditions (:data:`CONDITIONS`), with the same steps,
   batch and seeds, so the conditions differ only in their data:

   - ``real``: the narrow real set only;
   - ``real+synthetic``: the same set plus the synthetic pictures;
   - ``real+extra-real`` (the control): the same set plus as many *extra real* pictures of the seen combinations,
     so a gain of the synthetic condition over it is a gain of *what* the synthetic pictures show, not of having
     more pictures.

3. **Held-out accuracy on the unseen combinations** (exact caption, shape and colour both right, each alone), and on
   held-out pictures of the seen ones as a sanity row, with 95 % intervals; the differences synthetic − real-only
   and synthetic − control with theirs (:data:`DIFFERENCES`).

The synthetic pictures' labels are **what was asked for, not what was drawn**: each label is parsed from the caption
the picture was rendered from (:func:`course_utils.data.shapes.parse_caption`), as in any real synthetic-data
pipeline, so every picture the generator got wrong is a wrong label. :func:`label_fidelity` measures how often that
happens with the attribute judge (trained on ground-truth renders of the whole world).

**What "unseen" means here.** The generator, ``course/shapes-sd``, was trained on the whole shapes world, every
combination included; the combinations are unseen only by the downstream model. The study therefore asks whether a
generator that knows more than the narrow real set can hand that knowledge to a downstream model through pictures,
the situation of a web-scale Stable Diffusion and a small real data set (He et al. 2023, "Is synthetic data from
generative models ready for image recognition?", ICLR: synthetic data helps most in zero- and few-shot settings;
Azizi et al. 2023, "Synthetic data from diffusion models improves ImageNet classification": gains when synthetic
data *augments* real data, losses when it replaces it; Sariyildiz et al. 2023, "Fake it till you make it"). It does
not show that synthetic data can create knowledge the generator lacks.

**Intervals.** Each condition's hits form a ``(test pictures, seeds)`` matrix; its accuracy is the mean with the
crossed ("pigeonhole") percentile bootstrap of :func:`course_utils.stats.bootstrap_mean`, resampling pictures and
seeds independently, so both the test sample and training randomness (initial weights, batches and the draw of the
narrow real set, all from the seed) widen it. Differences are paired (:func:`course_utils.stats.difference`: the same
pictures and seeds resampled on both sides). With 5 seeds the seed dimension of the bootstrap is coarse (it tends to
be a little narrow); the synthetic set is drawn once, so its own draw is not in the intervals.

The synthetic set arrives as a :class:`~course_utils.data.shapes.ShapesDataset` of full one-object captions, read
from the week's pipeline's output folder (:func:`load_synthetic_folder`, the Hugging Face ``imagefolder`` layout;
:func:`pipeline_synthetic` runs the pipeline for the study). Which titles the pipeline is run on is the question's
hinge: on every concept ``"a {colour} {shape}"`` of the world (:data:`TITLES` ``all``), or on the real set's own 8
(``seen``: the seed's pipeline varies each title of its input CSV), whose variations change size, position and
background but never the combination. ``make models ARGS="--only synthetic-study"`` runs both.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from course_utils.data.narrow import (
    ALL_COMBINATIONS,
    SEEN_COMBINATIONS,
    UNSEEN_COMBINATIONS,
    NarrowSplit,
    combination,
    narrow_split,
    title,
)
from course_utils.data.shapes import (
    SHAPES,
    Scene,
    ShapesDataset,
    load_imagefolder,
    parse_caption,
)
from course_utils.errors import CourseError
from course_utils.models.shapes_captioner import caption_hits, train_shapes_captioner
from course_utils.stats import Estimate, bootstrap_mean, difference, proportion
from course_utils.synthetic.journal import write_atomic
from course_utils.training.loop import TrainConfig

__all__ = [
    "CONDITIONS",
    "CONDITION_LABELS",
    "DIFFERENCES",
    "MEASURES",
    "StudyConfig",
    "SyntheticStudy",
    "label_fidelity",
    "load_synthetic_folder",
    "points",
    "research_study",
    "synthetic_labels",
]

CONDITIONS = ("real", "real+synthetic", "real+extra-real")
CONDITION_LABELS = {
    "real": "narrow real only",
    "real+synthetic": "real + synthetic",
    "real+extra-real": "real + extra real (control)",
}
MEASURES = {
    "unseen_exact": "unseen: caption exact",
    "unseen_shape_colour": "unseen: shape + colour",
    "unseen_shape": "unseen: shape",
    "unseen_colour": "unseen: colour",
    "seen_exact": "seen (sanity): caption exact",
}
"""Each measure's key and table heading: accuracy on the unseen combinations' test pictures, and on the seen ones'."""
DIFFERENCES = {
    "synthetic − real only": ("real+synthetic", "real"),
    "synthetic − control": ("real+synthetic", "real+extra-real"),
}
HEADLINE = "unseen_exact"


@dataclass(frozen=True)
class StudyConfig:
    """Sizes and training of :func:`research_study` (the defaults: about 12 s a model, 3 min for 5 seeds on 2 cores).

    Attributes:
        n_real: pictures in the narrow real set (balanced over the 8 seen combinations).
        n_test_unseen, n_test_seen: held-out pictures of the unseen and the seen combinations (balanced).
        test_seed: the held-out sets' seed, the same for every training seed.
        steps, batch_size, lr, warmup_steps: every model's training (:class:`course_utils.training.loop.TrainConfig`;
            the same steps in every condition, so each condition costs the same compute).
        width, hidden: the captioner's size (:class:`course_utils.models.shapes_captioner.ShapesCaptioner`).
        threads: torch's CPU threads while the study trains (restored after): one is the fastest for models this
            small on a shared 2-core machine (two OpenMP workers spinning against other work ran 3–4 × slower
            here); ``None`` leaves torch's setting.
    """

    n_real: int = 480
    n_test_unseen: int = 480
    n_test_seen: int = 240
    test_seed: int = 0
    steps: int = 400
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    width: int = 16
    hidden: int = 128
    threads: int | None = 1

    def __post_init__(self) -> None:
        for name in ("n_real", "n_test_unseen", "n_test_seen", "steps", "batch_size", "width", "hidden"):
            if getattr(self, name) < 1:
                raise CourseError(f"StudyConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise CourseError(f"StudyConfig.threads must be at least 1 or None, got {self.threads}")

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            warmup_steps=min(self.warmup_steps, self.steps),
            use_ema=False,
            seed=seed,
        )


@dataclass
class SyntheticStudy:
    """The study's result.

    Attributes:
        config, seeds: what ran.
        n_synthetic: synthetic pictures added (and extra real ones in the control).
        synthetic_unseen_share: share of the synthetic pictures whose caption asks for an unseen combination.
        train_sizes: pictures each condition trains on.
        hits: per condition and measure of :data:`MEASURES`, booleans ``(test pictures, seeds)``.
        estimates: per condition and measure, the accuracy with its interval (crossed bootstrap).
        differences: per name of :data:`DIFFERENCES` and measure, the paired difference with its interval.
        train_seconds: wall time of all the training (and scoring) runs.
    """

    config: StudyConfig
    seeds: tuple[int, ...]
    n_synthetic: int
    synthetic_unseen_share: float
    train_sizes: dict[str, int]
    hits: dict[str, dict[str, np.ndarray]] = field(repr=False)
    estimates: dict[str, dict[str, Estimate]]
    differences: dict[str, dict[str, Estimate]]
    train_seconds: float

    def table(self) -> str:
        """A Markdown table: one row per condition (training pictures, each measure), then one per difference."""
        head = ["", "train pictures", *MEASURES.values()]
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for cond in CONDITIONS:
            cells = [CONDITION_LABELS[cond], str(self.train_sizes[cond])]
            cells += [points(self.estimates[cond][m]) for m in MEASURES]
            lines.append("| " + " | ".join(cells) + " |")
        for name in DIFFERENCES:
            cells = [name, ""] + [points(self.differences[name][m], signed=True) for m in MEASURES]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def verdict(self) -> str:
        """One plain sentence on the headline measure (exact captions of the unseen combinations): does synthetic data
        help over the control (as many extra real pictures), and over the narrow real set alone. An interval that
        contains 0 is "not significant here"."""
        control = self.differences["synthetic − control"][HEADLINE]
        alone = self.differences["synthetic − real only"][HEADLINE]
        lead = {1: "Synthetic data helps here", 0: "Synthetic data does not help here", -1: "Synthetic data hurts here"}
        significance = {1: "", 0: ", not significant here", -1: ""}

        def said(d: Estimate) -> str:
            return f"{points(d, signed=True)} points{significance[d.sign]}"

        return (
            f"{lead[control.sign]}: on the exact captions of the unseen combinations, real + synthetic − control is"
            f" {said(control)}, and real + synthetic − narrow real only is {said(alone)}"
            f" ({len(self.seeds)} seeds × {self.config.n_test_unseen} test pictures)."
        )

    def records(self) -> dict:
        """JSON-able: the configuration, the sizes, every estimate and difference (``Estimate.record``)."""
        from dataclasses import asdict

        return {
            "config": asdict(self.config),
            "seeds": list(self.seeds),
            "n_synthetic": self.n_synthetic,
            "synthetic_unseen_share": self.synthetic_unseen_share,
            "train_sizes": self.train_sizes,
            "estimates": {c: {m: e.record() for m, e in ms.items()} for c, ms in self.estimates.items()},
            "differences": {d: {m: e.record() for m, e in ms.items()} for d, ms in self.differences.items()},
            "train_seconds": self.train_seconds,
            "verdict": self.verdict(),
        }


def points(e: Estimate, *, signed: bool = False) -> str:
    """A share (or, ``signed``, a difference of shares) in percentage points at the interval's precision,
    ``37 [31, 44]`` (:meth:`course_utils.stats.Estimate.format` with ``scale=100``, a sign on request, never ``-0``)."""
    d = max(0, e.decimals - 2) if e.half_width > 0 else 0
    sign = "+" if signed else ""
    v, lo, hi = (round(x * 100, d) + 0.0 for x in (e.value, e.low, e.high))  # + 0.0: no "-0"
    return f"{v:{sign}.{d}f} [{lo:{sign}.{d}f}, {hi:{sign}.{d}f}]"


# ---------------------------------------------------------------------------------------------- the synthetic set


def synthetic_labels(synthetic: ShapesDataset) -> list[Scene]:
    """The label of each synthetic picture: the scene its caption asks for (:func:`parse_caption`), whatever the
    generator drew. Refuses captions that are not full one-object captions of the training world's shapes."""
    scenes = []
    for i, text in enumerate(synthetic.captions):
        try:
            scene = parse_caption(text)
        except CourseError as err:
            raise CourseError(f"synthetic caption {i} is not a full caption of the shapes world: {err}") from None
        if len(scene.objects) != 1:
            raise CourseError(f"synthetic caption {i} ({text!r}) names two objects; the study reads one-object scenes")
        if scene.objects[0].shape not in SHAPES:
            raise CourseError(f"synthetic caption {i} ({text!r}) names a shape outside the world ({', '.join(SHAPES)})")
        scenes.append(scene)
    return scenes


def load_synthetic_folder(folder: str | Path, *, size: int = 32) -> ShapesDataset:
    """A pipeline's output folder in the Hugging Face ``imagefolder`` layout: ``metadata.jsonl`` lines
    ``{"file_name": "images/xxx.png", "text": caption}`` (other columns are kept out) and the PNGs they name.

    Pictures of another side than ``size`` are box-resampled to it (a Hub model's 512 px pictures for the 32 px
    captioner); the captions must be full one-object captions of the shapes world (:func:`synthetic_labels`).
    """
    from PIL import Image

    folder = Path(folder)
    try:
        data = load_imagefolder(folder)
    except CourseError as err:
        raise CourseError(f"cannot read the synthetic folder {folder}: {err}") from None
    synthetic_labels(data)
    if data.images.shape[1:3] != (size, size):
        resized = [np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BOX)) for im in data.images]
        data = ShapesDataset(np.stack(resized).astype(np.uint8), data.captions, data.scenes)
    return data


def label_fidelity(judge, synthetic: ShapesDataset) -> dict[str, dict[str, Estimate]]:
    """How often each synthetic picture shows what its caption asks for, as the attribute judge reads it
    (:func:`course_utils.models.shapes_judge.adherence`): per attribute and ``all`` (every attribute right), Wilson
    intervals, over ``all`` pictures, those of ``unseen`` combinations and of ``seen`` ones (the downstream model's
    view). The judge is a model too: its own held-out accuracy bounds what this can say (its card)."""
    from course_utils.models.shapes_judge import adherence

    found = adherence(judge, synthetic.images, synthetic.captions)
    unseen = np.array([combination(s) in UNSEEN_COMBINATIONS for s in synthetic_labels(synthetic)])
    everything = np.logical_and.reduce([found.checks[k] for k in ("shape", "colour", "size", "position", "background")])
    out = {}
    for group, mask in {"all": np.ones_like(unseen), "unseen": unseen, "seen": ~unseen}.items():
        if mask.any():
            per = {k: proportion(found.checks[k][mask]) for k in ("shape", "colour", "size", "position", "background")}
            out[group] = {**per, "all": proportion(everything[mask])}
    return out


# ---------------------------------------------------------------------------------------------- the study


def _join(a: ShapesDataset, b: ShapesDataset, b_scenes: Sequence[Scene]) -> tuple[np.ndarray, list[Scene]]:
    return np.concatenate([a.images, b.images]), [*a.scenes, *b_scenes]


def _condition_data(split: NarrowSplit, synthetic: ShapesDataset, labels: list[Scene]):
    real = split.real
    return {
        "real": (real.images, list(real.scenes)),
        "real+synthetic": _join(real, synthetic, labels),
        "real+extra-real": _join(real, split.extra_real, split.extra_real.scenes),
    }


def _train_and_score(
    seed: int,
    config: StudyConfig,
    synthetic: ShapesDataset,
    labels: list[Scene],
    hits,
    sizes,
    *,
    progress: bool,
    cache: Path | None,
) -> None:
    """Train one captioner per condition on seed ``seed``'s draw and append its hits (``(test pictures,)`` each).

    With ``cache``, each (seed, condition)'s hits are written there whole (a temporary file, renamed) as soon as they
    are measured and read back instead of training again: a study killed half-way resumes at the next model."""
    split = narrow_split(
        n_real=config.n_real,
        n_extra=len(synthetic),
        n_test_unseen=config.n_test_unseen,
        n_test_seen=config.n_test_seen,
        seed=seed,
        test_seed=config.test_seed,
    )
    for cond, (images, scenes) in _condition_data(split, synthetic, labels).items():
        file = None if cache is None else cache / f"seed{seed}-{cond}.npz"
        if file is not None and file.is_file():
            with np.load(file) as saved:
                measured = {m: saved[m] for m in MEASURES}
        else:
            model, _ = train_shapes_captioner(
                images, scenes, config=config.train_config(seed), width=config.width, hidden=config.hidden
            )
            unseen = caption_hits(model, split.test_unseen.images, split.test_unseen.scenes)
            seen = caption_hits(model, split.test_seen.images, split.test_seen.scenes)
            measured = {f"unseen_{k}": unseen[k] for k in ("exact", "shape_colour", "shape", "colour")}
            measured["seen_exact"] = seen["exact"]
            if file is not None:
                tmp = file.with_name(f".{file.stem}.tmp.npz")
                np.savez(tmp, **measured)
                tmp.replace(file)
        for m in MEASURES:
            hits[cond][m].append(measured[m])
        sizes[cond] = len(images)
        if progress:
            u, s = measured["unseen_exact"].mean(), measured["seen_exact"].mean()
            print(f"seed {seed} {cond}: unseen exact {u:.2f}, seen exact {s:.2f}")


def _cache_folder(root: Path, config: StudyConfig, synthetic: ShapesDataset) -> Path:
    """``root/<hash of the configuration and the synthetic set>``: a cache never answers for another study."""
    import hashlib
    import json
    from dataclasses import asdict

    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode())
    digest.update(synthetic.images.tobytes())
    digest.update("\n".join(synthetic.captions).encode())
    folder = Path(root) / digest.hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def research_study(
    *,
    synthetic: ShapesDataset,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    config: StudyConfig = StudyConfig(),
    progress: bool = False,
    cache: str | Path | None = None,
) -> SyntheticStudy:
    """Train the downstream captioner under each of :data:`CONDITIONS` for every seed and score it (module docstring).

    Args:
        synthetic: the synthetic pictures ``uint8 (N, 32, 32, 3)`` and the captions they were rendered from (their
            labels, :func:`synthetic_labels`); the control adds ``N`` extra real pictures.
        seeds: training seeds; seed ``s`` draws the narrow real set and the control's extra pictures
            (:func:`course_utils.data.narrow.narrow_split`), the initial weights and the batches, the same in every
            condition (paired). The test pictures are the same for every seed (``config.test_seed``).
        config: sizes and training (:class:`StudyConfig`).
        progress: print one line per trained model.
        cache: a folder where each trained model's scores are kept (under a hash of ``config`` and ``synthetic``), so
            a killed study resumes at the next model; ``None``: nothing kept.

    Returns:
        :class:`SyntheticStudy`; ``.table()`` and ``.verdict()`` say what it found.
    """
    # 1) check the synthetic set and its labels
    seeds = tuple(int(s) for s in seeds)
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise CourseError(f"the study needs at least two distinct seeds (its intervals are over seeds), got {seeds}")
    if len(synthetic) < 1:
        raise CourseError("the synthetic set is empty")
    if synthetic.images.shape[1:] != (32, 32, 3):
        raise CourseError(f"the captioner reads 32×32 pictures; the synthetic set's are {synthetic.images.shape[1:3]}")
    labels = synthetic_labels(synthetic)
    unseen_share = float(np.mean([combination(s) in UNSEEN_COMBINATIONS for s in labels]))
    # 2) train and score every (condition, seed)
    hits: dict[str, dict[str, list[np.ndarray]]] = {c: {m: [] for m in MEASURES} for c in CONDITIONS}
    sizes: dict[str, int] = {}
    folder = None if cache is None else _cache_folder(Path(cache), config, synthetic)
    started = time.perf_counter()
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        for seed in seeds:
            _train_and_score(seed, config, synthetic, labels, hits, sizes, progress=progress, cache=folder)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - started
    # 3) intervals: crossed bootstrap over (test pictures, seeds); paired differences
    matrices = {c: {m: np.stack(v, axis=1) for m, v in ms.items()} for c, ms in hits.items()}  # (pictures, seeds)
    estimates = {c: {m: bootstrap_mean(a) for m, a in ms.items()} for c, ms in matrices.items()}
    differences = {
        name: {m: difference(matrices[a][m], matrices[b][m]) for m in MEASURES} for name, (a, b) in DIFFERENCES.items()
    }
    return SyntheticStudy(
        config=config,
        seeds=seeds,
        n_synthetic=len(synthetic),
        synthetic_unseen_share=unseen_share,
        train_sizes=sizes,
        hits=matrices,
        estimates=estimates,
        differences=differences,
        train_seconds=seconds,
    )


# ---------------------------------------------------------------------------------------------- make models

STUDY_FOLDER = "synthetic-study"
PIPELINE_VARIATIONS = 20  # captions (and pictures) per title: 24 titles × 20 = 480 synthetic pictures
TITLES = {"all": ALL_COMBINATIONS, "seen": SEEN_COMBINATIONS}
"""The pipeline's titles in the two runs of the study: every (colour, shape) concept of the world (``all``: the input
``data/synthetic/shapes_concepts.csv``), or only the narrow real set's own (``seen``: varying what the real set
already shows)."""


def pipeline_synthetic(titles: str, work: Path, *, seed: int = 0) -> ShapesDataset:
    """The synthetic pictures of the study, made by the week's pipeline itself (``diffusion-course synthetic``, the
    template captioner, ``course/shapes-sd``, 20 variations a title) into ``work/<titles>`` — resumable like any
    run — and read back from its ``metadata.jsonl``."""
    import csv

    from course_utils.course.paths import ROOT
    from course_utils.synthetic.pipeline import SyntheticConfig, read_titles, run

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    source = ROOT / "data" / "synthetic" / "shapes_concepts.csv"  # the week's own input: every concept
    if titles != "all":
        source = work / f"{titles}_titles.csv"
        with open(source, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["title"])
            writer.writerows([title(combo)] for combo in TITLES[titles])
    if sorted(read_titles(source)) != sorted(title(c) for c in TITLES[titles]):
        raise CourseError(f"{source} does not hold the {titles!r} titles of the study")
    config = SyntheticConfig(input=source, output_dir=work / titles, variations=PIPELINE_VARIATIONS, seed=seed,
                             threads=1)  # fmt: skip
    run(config)
    return load_synthetic_folder(work / titles)


def build_study_stage(out: Path, *, train: bool = True, seeds: Sequence[int] = (0, 1, 2, 3, 4)) -> str:
    """``make models`` stage ``synthetic-study``: run the pipeline on every concept (``all``) and on the narrow real
    set's own (``seen``), run :func:`research_study` on each, measure the labels with the judge, and write
    ``out/synthetic-study/metrics.json`` and its card. The pipeline's folders stay under ``build/`` (git-ignored).
    ``train=False`` re-reads the committed metrics, writes the card from them and prints the verdict."""
    import json

    from course_utils.course.paths import MODELS_DIR, ROOT
    from course_utils.models.cards import write_metrics
    from course_utils.models.shapes_judge import load_shapes_judge

    folder = Path(out) / STUDY_FOLDER
    if not train:  # the committed numbers, and the card written from them again
        metrics = json.loads((folder / "metrics.json").read_text())
        write_atomic(folder / "README.md", _card(metrics).encode())
        return f"synthetic study: {metrics['all']['verdict']}"
    folder.mkdir(parents=True, exist_ok=True)
    judge = load_shapes_judge(MODELS_DIR / "shapes-judge")
    metrics: dict = {}
    started = time.perf_counter()
    for titles in TITLES:
        work = ROOT / "build" / "models" / STUDY_FOLDER  # the pipeline's folders and the trained models' scores
        synthetic = pipeline_synthetic(titles, work)
        study = research_study(synthetic=synthetic, seeds=seeds, progress=True, cache=work / "scores")
        metrics[titles] = {
            **study.records(),
            "label_fidelity": label_fidelity(judge, synthetic),
            "table": study.table(),
        }
    metrics["train_seconds"] = time.perf_counter() - started
    write_metrics(folder, metrics)
    write_atomic(folder / "README.md", _card(json.loads((folder / "metrics.json").read_text())).encode())
    return f"synthetic study: {metrics['all']['verdict']}"


def _card(metrics: dict) -> str:
    fidelity = metrics["all"]["label_fidelity"]["unseen"]["all"]
    return f"""# Week 6's study: does synthetic data help when the real captions are narrow?

Made by `make models ARGS="--only synthetic-study"` (`course_utils.synthetic.study.build_study_stage`), from scratch
and seeded; the numbers are in `metrics.json`. No weights are kept: the study trains {3 * len(metrics["all"]["seeds"])}
small captioners per run (`course_utils.models.shapes_captioner`) and scores them.

- **Real data**: {metrics["all"]["config"]["n_real"]} one-object shapes scenes in which each shape appears in only two
  of the six colours (8 of 24 combinations, `course_utils.data.narrow`).
- **Synthetic data**: the week's pipeline (`diffusion-course synthetic`, template captions, `course/shapes-sd`),
  {PIPELINE_VARIATIONS} variations of each title, labelled by the caption they were drawn from (what was asked for,
  not what was drawn). Titles `all`: the 24 concepts of `data/synthetic/shapes_concepts.csv`; titles `seen`: the
  real set's own 8. The judge reads every attribute as asked in {Estimate(**fidelity).format(scale=100)} % of the unseen
  combinations' pictures.
- **Control**: as many extra real pictures of the seen combinations.
- **Measure**: held-out accuracy on the 16 combinations the real data never shows, 95 % crossed-bootstrap intervals
  over test pictures × {len(metrics["all"]["seeds"])} seeds, paired differences.

The generator has seen every combination; they are unseen only by the downstream model. The study shows whether a
generator that knows more than the real data can hand that knowledge on through pictures — not that synthetic data
creates knowledge the generator lacks.

## Titles `all` (every concept)

{metrics["all"]["table"]}

{metrics["all"]["verdict"]}

## Titles `seen` (the real set's own concepts, varied)

{metrics["seen"]["table"]}

{metrics["seen"]["verdict"]}
"""
