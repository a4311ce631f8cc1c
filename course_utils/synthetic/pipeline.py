"""The pipeline: titles → caption variations → images, in two durable stages (seed 000, task D step 1).

    config = SyntheticConfig(input="data/synthetic/shapes_concepts.csv", output_dir="outputs/synthetic")
    print(describe(prepare(config)))       # the plan, no model loaded (``--dry-run``)
    summary = run(config)                  # resumable: kill it, run it again, nothing lost or repeated

Stage 1 gives title ``t`` (row ``t`` of the input) the captions ``t-0 … t-(n−1)`` (:mod:`.captioners`), stage 2
draws caption ``c`` with seed ``stable_seed(seed, "image", c)`` in one pipeline call per title (its captions in
order: the batch depends on the title alone), and scores it with CLIP. Each item is committed on its own in the
journal (:mod:`.journal`); the CSV and ``metadata.jsonl`` are rebuilt from it (:mod:`.outputs`). Which process does
the work (this one, or Ray actors: :mod:`.engines`) changes nothing that is written.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from course_utils.course.registry import check_available, resolve_text_model
from course_utils.errors import CourseError, check_choice
from course_utils.sd.memory import MemoryPlan, override_plan, plan_memory
from course_utils.sd.support import GenerationSettings, check_request
from course_utils.sd.sweep_study import COURSE_CLIP, HUB_CLIP, check_clip
from course_utils.synthetic.captioners import MAX_CAPTION_CHARS, TemplateCaptioner, load_captioner
from course_utils.synthetic.engines import make_engine
from course_utils.synthetic.ids import caption_id, shard_of, stable_seed, title_id
from course_utils.synthetic.journal import (
    FORMAT,
    JOURNAL,
    MANIFEST,
    ImageRow,
    Journal,
    fingerprint,
    read_manifest,
    recorded_images,
    write_manifest,
    write_png,
)
from course_utils.synthetic.outputs import OUTPUT_FILES, publish

__all__ = [
    "ENGINES",
    "IMAGES",
    "Prepared",
    "RunSummary",
    "SyntheticConfig",
    "command_line",
    "describe",
    "kill_during",
    "measured_rate",
    "pending_renders",
    "prepare",
    "read_titles",
    "run",
    "start_paused",
]

ENGINES = ("local", "ray")
IMAGES = "images"
AUTO_CLIP = "auto"
NO_CLIP = "none"
# rough seconds per image for --dry-run before a folder has its own measured rate: (family, device kind) → s/step
_SECONDS_PER_STEP = {("course-sd", "cpu"): 0.004, ("sd", "cuda"): 0.05, ("sdxl", "cuda"): 0.12, ("sd3", "cuda"): 0.15}


@dataclass(frozen=True)
class SyntheticConfig:
    """One ``diffusion-course synthetic`` call (``None``: the model's default, as in ``generate``).

    ``extend`` allows a folder made with the same settings to take titles it has not planned yet (a longer input,
    a larger ``limit``); ``overwrite`` deletes what a folder holds and starts again. ``threads`` sets
    ``torch.set_num_threads`` where images are drawn (Ray's workers use one unless told). ``token`` loads gated
    models only: never printed or written.
    """

    input: str | Path
    output_dir: str | Path = "outputs/synthetic"
    title_column: str = "title"
    variations: int = 3
    captioner: str = "template"
    model_id: str = "course/shapes-sd"
    scheduler: str | None = None
    guidance_scale: float | None = None
    num_inference_steps: int | None = None
    height: int | None = None
    width: int | None = None
    negative_prompt: str | None = None
    seed: int = 0
    limit: int | None = None
    shard: tuple[int, int] | None = None
    engine: str = "local"
    clip_model: str = AUTO_CLIP
    min_clip_score: float | None = None
    retries: int = 2
    device: str = "auto"
    dtype: str | None = None
    workers: int = 2
    gpus_per_worker: float = 0.0
    threads: int | None = None
    extend: bool = False
    overwrite: bool = False
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Prepared:
    """A checked config and its plan; nothing loaded."""

    config: SyntheticConfig
    settings: GenerationSettings
    plan: MemoryPlan  # dtype, device and memory options the images are drawn with
    clip_model: str
    titles: tuple[tuple[str, str], ...]  # (title id, title) this run is responsible for
    manifest: dict[str, Any]
    state: str  # "new" | "resume" | "extend" | "overwrite"
    sample_captions: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RunSummary:
    output_dir: Path
    titles: int
    failed: int
    captions: int
    images: int
    rendered_now: int
    seconds_per_image: float | None
    seconds_per_score: float | None
    mean_clip_score: float | None


# ---------------------------------------------------------------------------------------------- input


def read_titles(path: str | Path, *, column: str = "title") -> list[str]:
    """The ``column`` of a UTF-8 CSV with a header row, one title per row (empty ones kept: they fail visibly)."""
    path = Path(path)
    if not path.is_file():
        raise CourseError(f"input {path} does not exist (a CSV file with a header row)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            if column not in header:
                found = ", ".join(repr(h) for h in header) or "no header"
                raise CourseError(f"input {path} has no column {column!r} (found {found}); pass --title_column")
            titles = [(row.get(column) or "").strip() for row in reader]
    except UnicodeDecodeError as err:
        raise CourseError(
            f"input {path} is not UTF-8 text (byte {err.start}: {err.object[err.start : err.start + 1]!r});"
            " save it as UTF-8 (in a spreadsheet: CSV UTF-8)"
        ) from None
    except csv.Error as err:
        raise CourseError(f"input {path} is not a readable CSV: {err}") from None
    if titles and not any(titles):  # one empty title fails visibly in its row; all of them is the wrong column
        found = ", ".join(repr(h) for h in header)
        raise CourseError(
            f"input {path}: all {len(titles)} rows have an empty {column!r} (columns: {found}); pass the column of"
            " titles as --title_column, or fill it in"
        )
    return titles


def _file_sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- checking


def _check_numbers(config: SyntheticConfig) -> None:
    check_choice("engine", config.engine, ENGINES)
    if not isinstance(config.variations, int) or not 1 <= config.variations <= 50:
        raise CourseError(f"--variations must be a whole number in 1 … 50, got {config.variations!r}")
    if config.limit is not None and config.limit < 1:
        raise CourseError(f"--limit must be ≥ 1, got {config.limit}")
    if not 0 <= config.retries <= 10:
        raise CourseError(f"retries must lie in 0 … 10, got {config.retries}")
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or config.seed < 0:
        raise CourseError(f"--seed must be a whole number ≥ 0, got {config.seed!r}")
    if config.min_clip_score is not None and not 0 <= config.min_clip_score <= 100:
        raise CourseError(f"--min_clip_score is a CLIP score in 0 … 100, got {config.min_clip_score}")
    if config.threads is not None and not 1 <= config.threads <= 256:
        raise CourseError(f"--threads must lie in 1 … 256, got {config.threads}")
    if config.workers < 1 or config.gpus_per_worker < 0:
        raise CourseError("--workers must be ≥ 1 and --gpus_per_worker ≥ 0")
    if config.extend and config.overwrite:
        raise CourseError("--extend and --overwrite exclude each other: add titles, or start again")


def _clip_model(config: SyntheticConfig, settings: GenerationSettings) -> str:
    if config.clip_model == AUTO_CLIP:
        return COURSE_CLIP if settings.family == "course-sd" else HUB_CLIP
    if config.clip_model in (NO_CLIP, COURSE_CLIP) or Path(config.clip_model).expanduser().is_dir():
        return config.clip_model
    return resolve_text_model(config.clip_model, family="clip").model_id


def _generation_record(config: SyntheticConfig, settings: GenerationSettings, *, dtype: str, device: str) -> dict:
    """Everything that decides which captions and which pixels are drawn: the fingerprint's input."""
    return {
        "title_column": config.title_column,
        "variations": config.variations,
        "captioner": config.captioner,
        "retries": config.retries,
        "max_caption_chars": MAX_CAPTION_CHARS,
        "model_id": settings.model_id,
        "scheduler": settings.scheduler,
        "num_inference_steps": settings.steps,
        "guidance_scale": settings.guidance_scale,
        "height": settings.height,
        "width": settings.width,
        "negative_prompt": settings.negative_prompt,
        "seed": config.seed,
        "dtype": dtype,
        "device": device,
    }


def _differences(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k} {old.get(k)!r} → {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))


def _check_models(config: SyntheticConfig, settings: GenerationSettings, clip_model: str) -> None:
    """Offline (``HF_HUB_OFFLINE``), every Hub model the run loads must be in the local cache: one line now, rather
    than a failure once the output folder has been started."""
    check_available(settings.resolved)
    if config.captioner != "template" and not Path(config.captioner).expanduser().is_dir():
        check_available(resolve_text_model(config.captioner), what="captioner")
    if clip_model != NO_CLIP:
        check_clip(clip_model)


def prepare(config: SyntheticConfig, *, loading: bool = True) -> Prepared:
    """Check ``config`` and plan its run against what ``output_dir`` already holds; load no model. ``loading``: the
    run will load its models, so offline they must be in the local cache (a dry run passes ``False``).

    Raises:
        CourseError: one line, for a bad value, an unreadable input, a folder made with other settings (unless
            ``overwrite``), or a folder that plans other titles (unless ``extend`` adds titles to it).
    """
    _check_numbers(config)
    settings, _warnings = check_request(
        config.model_id,
        scheduler=config.scheduler,
        steps=config.num_inference_steps,
        guidance_scale=config.guidance_scale,
        height=config.height,
        width=config.width,
        negative_prompt=config.negative_prompt,
    )
    plan = override_plan(plan_memory(settings, device=config.device), family=settings.family, dtype=config.dtype)
    clip_model = _clip_model(config, settings)
    load_captioner(config.captioner)  # checks the name (a chat model loads only when stage 1 needs it)
    if loading:
        _check_models(config, settings, clip_model)
    # the titles: rows of the input, the first `limit`, those of this shard
    rows = read_titles(config.input, column=config.title_column)
    if not rows:
        raise CourseError(f"input {config.input} has no rows under its header")
    titles = [(title_id(i), t) for i, t in enumerate(rows[: config.limit])]
    if config.shard is not None:
        index, count = config.shard
        titles = [(tid, t) for tid, t in titles if shard_of(tid, count) == index]
    generation = _generation_record(config, settings, dtype=plan.dtype, device=plan.device)
    manifest = {
        "format": FORMAT,
        "fingerprint": fingerprint(generation),
        "settings": generation,
        "plan": {
            "input": str(config.input),
            "input_sha256": _file_sha(Path(config.input)),
            "limit": config.limit,
            "shard": list(config.shard) if config.shard else None,
            "titles": len(titles),
        },
        "clip_model": clip_model,
        "min_clip_score": config.min_clip_score,
    }
    state = _state(Path(config.output_dir), manifest, titles, config)
    sample = _sample_captions(config, titles)
    return Prepared(config, settings, plan, clip_model, tuple(titles), manifest, state, sample)


def _state(folder: Path, manifest: dict, titles: Sequence[tuple[str, str]], config: SyntheticConfig) -> str:
    if folder.exists() and not folder.is_dir():
        raise CourseError(f"--output_dir {folder} exists and is not a folder")
    if not folder.exists() or not any(folder.iterdir()):
        return "new"
    if config.overwrite:
        return "overwrite"
    if not (folder / MANIFEST).is_file():
        raise CourseError(
            f"--output_dir {folder} holds files but no {MANIFEST}: not an output folder of this pipeline;"
            " choose an empty or new folder"
        )
    old = read_manifest(folder)
    if old["fingerprint"] != manifest["fingerprint"]:
        changes = _differences(old["settings"], manifest["settings"])
        raise CourseError(
            f"--output_dir {folder} was made with other settings ({changes});"
            " run them in another folder, or pass --overwrite to start this one again"
        )
    with Journal(folder / JOURNAL) as journal:
        held = {tid: row[0] for tid, row in journal.titles().items()}
    planned = dict(titles)
    changed = [tid for tid in held if tid in planned and planned[tid] != held[tid]]
    if changed:
        raise CourseError(
            f"row {int(changed[0])} of the input changed since {folder} was made ({held[changed[0]]!r} →"
            f" {planned[changed[0]]!r}); use another folder, or --overwrite"
        )
    missing = [tid for tid in held if tid not in planned]
    if missing:
        raise CourseError(
            f"{folder} holds {len(missing)} titles this run does not plan (another --limit, --shard or input);"
            " rerun with the folder's own settings, use another folder, or --overwrite"
        )
    new = len(planned) - len(held)
    if new and not config.extend:
        raise CourseError(f"this run plans {new} titles {folder} does not hold; pass --extend to add them")
    return "extend" if new else "resume"


def _sample_captions(config: SyntheticConfig, titles: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Up to three titles' first caption, for the dry run (template captioner only: a model would have to load)."""
    if config.captioner != "template":
        return ()
    out = []
    for tid, title in titles[:3]:
        if title:
            first = TemplateCaptioner().variations(title, n=1, seed=stable_seed(config.seed, "caption", tid, 0))
            out.append((title, first[0]))
    return tuple(out)


def describe(prepared: Prepared, *, measured: float | None = None) -> str:
    """The plan in a few lines: counts, sample captions, a rough time (``measured`` s/image when known)."""
    c, s = prepared.config, prepared.settings
    images = len(prepared.titles) * c.variations
    shard = f", shard {c.shard[0]}/{c.shard[1]}" if c.shard else ""
    lines = [
        f"plan ({prepared.state}): {len(prepared.titles)} titles{shard} × {c.variations} variations = {images} images",
        f"  captioner {c.captioner}; images {s.model_id} ({s.scheduler}, {s.steps} steps, guidance"
        f" {s.guidance_scale:g}, {s.height}×{s.width}, {prepared.plan.dtype} on {prepared.plan.device}); CLIP"
        f" {prepared.clip_model}; engine {c.engine}",
    ]
    lines += [f"  {title!r} → {text!r}" for title, text in prepared.sample_captions]
    per_image = measured
    source = "measured in this folder"
    if per_image is None:
        rate = _SECONDS_PER_STEP.get((s.family, prepared.plan.device))
        per_image = None if rate is None else rate * s.steps
        source = "a rough figure for this model family and device"
    if per_image is not None:
        total = images * per_image
        took = f"{total / 60:.1f} min" if total >= 60 else f"{total:.0f} s"
        lines.append(f"  time: about {took} ({per_image:.3f} s per image, {source})")
    else:
        lines.append("  time: no estimate for this model and device until a first run measures one")
    lines.append(f"  output: {c.output_dir}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- running


def _start(prepared: Prepared) -> Journal:
    folder = Path(prepared.config.output_dir)
    if prepared.state == "overwrite":
        for name in (IMAGES, JOURNAL, MANIFEST):
            path = folder / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        for name in OUTPUT_FILES:
            (folder / name).unlink(missing_ok=True)
    (folder / IMAGES).mkdir(parents=True, exist_ok=True)
    if prepared.state in ("new", "overwrite", "extend"):
        write_manifest(folder, prepared.manifest)
    elif read_manifest(folder).get("min_clip_score") != prepared.config.min_clip_score:
        write_manifest(folder, prepared.manifest)  # a new filter: same images, another metadata.jsonl
    journal = Journal(folder / JOURNAL)
    journal.plan(prepared.titles)
    _sweep(folder, journal)
    return journal


def _sweep(folder: Path, journal: Journal) -> None:
    """Remove what a killed run can leave: temporary files, and images whose row was never committed (they are
    drawn again, to the same bytes)."""
    recorded = {row.file for row in journal.images().values()}
    for path in (folder / IMAGES).iterdir():
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            path.unlink()
        elif f"{IMAGES}/{path.name}" not in recorded:
            path.unlink()
    for path in folder.glob(".*.tmp"):
        path.unlink()


def pending_renders(journal: Journal) -> list[dict[str, Any]]:
    """Stage 2's work, one item per title with captions still to draw: all its captions (the batch is the
    title's, whatever is done already), and which of them to keep."""
    done = journal.images()
    by_title: dict[str, dict[str, Any]] = {}
    for row in journal.captions():
        item = by_title.setdefault(
            row.title_id, {"title_id": row.title_id, "caption_ids": [], "captions": [], "seeds": [], "todo": []}
        )
        item["caption_ids"].append(row.caption_id)
        item["captions"].append(row.caption)
        item["seeds"].append(row.seed)
        if row.caption_id not in done:
            item["todo"].append(row.caption_id)
    return [item for item in by_title.values() if item["todo"]]


def _progress(total: int, *, desc: str, unit: str, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr, disable=not show or not total)


def run(config: SyntheticConfig, *, prepared: Prepared | None = None, progress: bool = True) -> RunSummary:
    """Run (or resume) both stages, then rebuild the CSV and ``metadata.jsonl``; return the counts. ``progress``:
    a bar per stage (items/s, time left) on stderr.

    A ``KeyboardInterrupt`` stops the run where it is; everything committed stays, the outputs are rebuilt, and the
    interrupt is raised again for the caller to report. (With ``DIFFUSION_COURSE_PAUSE_AT_IMAGE`` set the process
    stops itself at a known point: :func:`start_paused`.)
    """
    pause_at = _pause_point()
    prepared = prepared or prepare(config)
    folder = Path(config.output_dir)
    journal = _start(prepared)
    engine = make_engine(prepared)
    rendered = 0
    render_seconds: list[float] = []
    score_seconds: list[float] = []
    try:
        # stage 1: titles → captions
        todo = [(tid, t[0]) for tid, t in journal.titles().items() if t[1] == "planned"]
        with _progress(len(todo), desc="captions", unit="title", show=progress) as bar:
            for tid, result in engine.captions(todo):
                if result.failed:
                    journal.record_failure(tid, result.failed, attempts=result.attempts)
                else:
                    rows = [
                        (caption_id(tid, k), k, text, stable_seed(config.seed, "image", caption_id(tid, k)))
                        for k, text in enumerate(result.captions)
                    ]
                    journal.record_captions(tid, rows, attempts=result.attempts)
                bar.update()
        # stage 2: captions → images, each written then committed
        work = pending_renders(journal)
        committed = journal.counts()["images"]
        with _progress(sum(len(w["todo"]) for w in work), desc="images", unit="img", show=progress) as bar:
            for out in engine.images(work):
                file = f"{IMAGES}/{out['caption_id']}.png"
                sha = write_png(folder / file, out["png"])
                if committed == pause_at:
                    _pause()
                committed += 1
                journal.record_image(ImageRow(out["caption_id"], file, sha, out["clip_score"], out["seconds"]))
                rendered += 1
                render_seconds.append(out["seconds"])
                if out.get("score_seconds") is not None:
                    score_seconds.append(out["score_seconds"])
                bar.update()
    finally:
        engine.close()
        publish(folder, journal)
        counts = journal.counts()
        scores = [r.clip_score for r in journal.images().values() if r.clip_score is not None]
        journal.close()
    return RunSummary(
        folder,
        counts["titles"],
        counts["failed"],
        counts["captions"],
        counts["images"],
        rendered,
        sum(render_seconds) / len(render_seconds) if render_seconds else None,
        sum(score_seconds) / len(score_seconds) if score_seconds else None,
        sum(scores) / len(scores) if scores else None,
    )


def measured_rate(folder: str | Path) -> float | None:
    """Mean seconds per image recorded in ``folder``'s journal (``None`` without one)."""
    path = Path(folder) / JOURNAL
    if not path.is_file():
        return None
    with Journal(path) as journal:
        seconds = [r.seconds for r in journal.images().values() if r.seconds]
    return sum(seconds) / len(seconds) if seconds else None


# ---------------------------------------------------------------------------------------------- the command line

_FLAGS = {  # SyntheticConfig field → its flag (fields left at their default are not written)
    "title_column": "--title_column", "variations": "--variations", "captioner": "--captioner",
    "model_id": "--model_id", "scheduler": "--scheduler", "guidance_scale": "--guidance_scale",
    "num_inference_steps": "--num_inference_steps", "height": "--height", "width": "--width",
    "negative_prompt": "--negative_prompt", "seed": "--seed", "limit": "--limit", "engine": "--engine",
    "clip_model": "--clip_model", "min_clip_score": "--min_clip_score", "retries": "--retries", "device": "--device",
    "dtype": "--dtype", "workers": "--workers", "gpus_per_worker": "--gpus_per_worker", "threads": "--threads",
}  # fmt: skip


def command_line(config: SyntheticConfig) -> list[str]:
    """The ``diffusion-course synthetic`` arguments that make ``config`` (the token left out)."""
    defaults = SyntheticConfig(input="")
    args = ["--input", str(config.input), "--output_dir", str(config.output_dir)]
    for name, flag in _FLAGS.items():
        value = getattr(config, name)
        if value != getattr(defaults, name):
            args += [flag, str(value)]
    if config.shard is not None:
        args += ["--shard", f"{config.shard[0]}/{config.shard[1]}"]
    args += [flag for flag, on in (("--extend", config.extend), ("--overwrite", config.overwrite)) if on]
    return args


PAUSE_VARIABLE = "DIFFUSION_COURSE_PAUSE_AT_IMAGE"


def _pause_point() -> int | None:
    value = os.environ.get(PAUSE_VARIABLE)
    if value is None:
        return None
    if not value.isdigit():
        raise CourseError(f"{PAUSE_VARIABLE} must be a whole number of images, not {value!r}")
    return int(value)


def _pause() -> None:
    """Stop this process (SIGSTOP) until another one continues (SIGCONT), interrupts or kills it."""
    os.kill(os.getpid(), signal.SIGSTOP)


def _terminal_like() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C raises KeyboardInterrupt even if the parent ignores it


def start_paused(command: Sequence[str], *, images: int, env: dict[str, str] | None = None,
                 stderr: IO[bytes] | None = None, timeout: float = 600.0) -> subprocess.Popen:  # fmt: skip
    """Start a ``synthetic`` ``command`` (an argv) and return once it has stopped itself at a known point: its journal
    holds ``images`` images and the next image's file is written but not yet committed — the moment at which a
    crash leaves an orphan file behind. The caller then kills it (SIGKILL), interrupts it (SIGINT, then SIGCONT) or
    lets it go on (SIGCONT). ``stderr``: a binary file that receives the command's messages (a temporary one by
    default). A run that ends before that point raises :class:`CourseError`.

    The point is given by ``DIFFUSION_COURSE_PAUSE_AT_IMAGE`` in the child's environment, so that a demonstration
    or a test interrupts at the same place on every machine, however fast it draws.
    """
    import tempfile

    env = {**(os.environ if env is None else env), PAUSE_VARIABLE: str(images)}
    log = stderr if stderr is not None else tempfile.TemporaryFile()
    process = subprocess.Popen(list(command), env=env, stdout=subprocess.DEVNULL, stderr=log,
                               preexec_fn=_terminal_like)  # fmt: skip
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        pid, status = os.waitpid(process.pid, os.WUNTRACED | os.WNOHANG)
        if pid and os.WIFSTOPPED(status):
            return process
        if pid:  # it ended before the point
            process.returncode = os.waitstatus_to_exitcode(status)
            log.seek(0)
            why = log.read().decode(errors="replace").strip()[-300:] if process.returncode else "it finished"
            raise CourseError(f"the run never reached image {images + 1} ({why}); choose a smaller number of images")
        time.sleep(0.01)
    process.kill()
    process.wait()
    raise CourseError(f"the run did not reach image {images + 1} within {timeout:.0f} s")


def kill_during(config: SyntheticConfig, *, images: int, timeout: float = 600.0) -> int:
    """Start ``config``'s run as a command (``python -m course_utils.synthetic.cli``), kill it with SIGKILL once its
    journal holds ``images`` images and the next image is written but not committed (:func:`start_paused`), and
    return how many images the journal holds then: a demonstration of what a crash leaves, the same on every
    machine."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2]),
                                                                     os.environ.get("PYTHONPATH")]))}  # fmt: skip
    command = [sys.executable, "-m", "course_utils.synthetic.cli", *command_line(config)]
    process = start_paused(command, images=images, env=env, timeout=timeout)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return recorded_images(config.output_dir)
