"""Who does the work: this process (``local``) or actors on Ray Data (``ray``), running the same two workers.

- :class:`CaptionWorker` turns titles into :class:`.captioners.CaptionResult`\\ s;
- :class:`RenderWorker` loads the pipeline and the CLIP once, then draws one title's captions per call (one
  pipeline call, a generator per image) and scores them.

Both engines only compute: they hand each result back to :func:`.pipeline.run`, the one process that writes files
and commits them to the journal, so a killed worker, actor or driver loses at most the item in flight. On Ray,
``map_batches`` runs the workers as actors (``concurrency`` of them, ``num_gpus`` each on a cluster), one title per
batch, and the driver streams the results back in order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from course_utils.errors import CourseError
from course_utils.synthetic.captioners import CaptionResult, caption_title, load_captioner, readable_by
from course_utils.synthetic.journal import png_bytes

__all__ = ["CaptionWorker", "LocalEngine", "RayEngine", "RenderWorker", "make_engine"]


class CaptionWorker:
    """Stage 1 for any engine: ``{"title_id", "title"}`` items → results (the captioner loads at the first one)."""

    def __init__(self, prepared: Any) -> None:
        config = prepared.config
        self.config = config
        self.readable = readable_by(prepared.settings)
        device = prepared.plan.device
        self.captioner = load_captioner(config.captioner, device=device, token=config.token)

    def __call__(self, items: Sequence[dict[str, str]]) -> list[CaptionResult]:
        c = self.config
        return [
            caption_title(
                self.captioner,
                item["title"],
                n=c.variations,
                seed=c.seed,
                tid=item["title_id"],
                retries=c.retries,
                readable=self.readable,
            )
            for item in items
        ]


class RenderWorker:
    """Stage 2 for any engine: loads the image pipeline and the CLIP once; each item (one title's captions) → one
    row per caption still to draw: ``{"caption_id", "png", "clip_score", "seconds", "score_seconds"}``."""

    def __init__(self, prepared: Any) -> None:
        import torch

        from course_utils.sd.pipeline import load_pipeline

        config = prepared.config
        if config.threads:
            torch.set_num_threads(config.threads)
        self.settings = prepared.settings
        plan = prepared.plan
        self.loaded = load_pipeline(self.settings, plan=plan, token=config.token)
        self.clip = None
        if prepared.clip_model != "none":
            from course_utils.sd.sweep_study import load_clip

            self.clip = load_clip(prepared.clip_model)
            self.clip[0].to(plan.device)

    def __call__(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        from course_utils.metrics import clip_score
        from course_utils.sd.pipeline import sample_batch

        started = time.perf_counter()
        n = len(item["captions"])
        images, _ = sample_batch(
            self.loaded,
            self.settings,
            prompts=list(item["captions"]),
            seeds=[int(s) for s in item["seeds"]],
            batch_size=n,
        )
        seconds = (time.perf_counter() - started) / n
        scores: list[float | None] = [None] * n
        score_seconds = None
        if self.clip is not None:
            started = time.perf_counter()
            scores = [float(s) for s in clip_score(*self.clip, images, list(item["captions"]))]
            score_seconds = (time.perf_counter() - started) / n
        todo = set(item["todo"])
        return [
            {
                "caption_id": cid,
                "png": png_bytes(image),
                "clip_score": score,
                "seconds": seconds,
                "score_seconds": score_seconds,
            }
            for cid, image, score in zip(item["caption_ids"], images, scores, strict=True)
            if cid in todo
        ]


class LocalEngine:
    """Both workers in this process, created when first needed (a resumed run with no images to draw never loads
    the image model)."""

    def __init__(self, prepared: Any) -> None:
        self.prepared = prepared
        self._captioner: CaptionWorker | None = None
        self._renderer: RenderWorker | None = None

    def captions(self, todo: Sequence[tuple[str, str]]) -> Iterator[tuple[str, CaptionResult]]:
        for tid, title in todo:
            self._captioner = self._captioner or CaptionWorker(self.prepared)
            yield tid, self._captioner([{"title_id": tid, "title": title}])[0]

    def images(self, work: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in work:
            self._renderer = self._renderer or RenderWorker(self.prepared)
            yield from self._renderer(item)

    def close(self) -> None:
        self._captioner = self._renderer = None


# ---------------------------------------------------------------------------------------------- Ray


def _ray():
    try:
        import ray
    except ImportError:
        raise CourseError(
            "--engine ray needs Ray: pip install -r requirements-ray.txt (or use --engine local)"
        ) from None
    return ray


class _RayCaptions:
    """Ray actor: a :class:`CaptionWorker` over pandas batches."""

    def __init__(self, prepared: Any) -> None:
        self.worker = CaptionWorker(prepared)

    def __call__(self, batch):
        import pandas as pd

        items = batch.to_dict("records")
        results = self.worker(items)
        return pd.DataFrame(
            {
                "title_id": [item["title_id"] for item in items],
                "captions": [list(r.captions) for r in results],
                "attempts": [r.attempts for r in results],
                "failed": [r.failed or "" for r in results],
            }
        )


class _RayRenders:
    """Ray actor: a :class:`RenderWorker` (the pipeline loaded once per actor) over pandas batches."""

    def __init__(self, prepared: Any) -> None:
        self.worker = RenderWorker(prepared)

    def __call__(self, batch):
        import pandas as pd

        rows = []
        for item in batch.to_dict("records"):
            item = {k: list(v) if k != "title_id" else v for k, v in item.items()}
            rows += self.worker(item)
        return pd.DataFrame(rows)


class RayEngine:
    """The workers as Ray Data actors: ``map_batches(…, concurrency=workers, num_gpus=gpus_per_worker)``, one title
    per batch. Starts a local Ray (``num_cpus=workers``) unless one is running or ``RAY_ADDRESS`` names a cluster."""

    def __init__(self, prepared: Any) -> None:
        self.prepared = prepared
        ray = _ray()
        self.started = False
        if not ray.is_initialized():
            import os

            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if not os.environ.get("RAY_ADDRESS"):
                kwargs["num_cpus"] = prepared.config.workers
            ray.init(**kwargs)
            self.started = True

    def _map(self, rows: list[dict[str, Any]], actor: type):
        import ray.data

        c = self.prepared.config
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))  # one block per title: every actor works
        mapped = dataset.map_batches(
            actor,
            fn_constructor_kwargs={"prepared": self.prepared},
            batch_size=1,
            batch_format="pandas",
            concurrency=c.workers,
            num_cpus=1,
            num_gpus=c.gpus_per_worker or None,
        )
        return mapped.iter_rows()

    def captions(self, todo: Sequence[tuple[str, str]]) -> Iterator[tuple[str, CaptionResult]]:
        if not todo:
            return
        rows = [{"title_id": tid, "title": title} for tid, title in todo]
        for out in self._map(rows, _RayCaptions):
            result = CaptionResult(tuple(out["captions"]), int(out["attempts"]), failed=out["failed"] or None)
            yield str(out["title_id"]), result

    def images(self, work: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        if not work:
            return
        for out in self._map(list(work), _RayRenders):
            score = out["clip_score"]
            yield {
                "caption_id": str(out["caption_id"]),
                "png": bytes(out["png"]),
                "clip_score": None if score is None or score != score else float(score),
                "seconds": float(out["seconds"]),
                "score_seconds": None if out["score_seconds"] is None else float(out["score_seconds"]),
            }

    def close(self) -> None:
        if self.started:
            _ray().shutdown()
            self.started = False


def make_engine(prepared: Any) -> LocalEngine | RayEngine:
    return RayEngine(prepared) if prepared.config.engine == "ray" else LocalEngine(prepared)
