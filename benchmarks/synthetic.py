"""Week 6's research study (``make bench ARGS="--only synthetic"``): does synthetic data help a downstream captioner
generalise when the real captions are narrow? :mod:`course_utils.synthetic.study` is the study; this runs it once:

1. the synthetic set: a pipeline's output folder (``--synthetic-dir``, ``imagefolder`` layout), or generated here by
   ``course/shapes-sd`` from ``--synthetic-per-title`` variations of each of the 24 titles ``"a {colour} {shape}"``
   (``--synthetic-titles all``) or of the 8 titles the real set shows (``seen``: the seed's pipeline run on the real
   data's own titles, whose variations change size, position and background but never the combination);
2. how often its pictures show what their captions ask for, read by the attribute judge (``data/models/shapes-judge``);
3. the study: three conditions × ``--study-seeds``, each a captioner trained from scratch; the table and a verdict;
   the records go to ``build/bench/synthetic-study[-seen].json``.

Each part's wall time is printed (the machine's load changes it; run on an otherwise idle machine). Everything runs
on one torch thread: with other work on the 2-core machine, two threads ran these small models 2–4 × slower than one
(OpenMP workers spinning against each other).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from course_utils.course.paths import MODELS_DIR, ROOT

OUT = ROOT / "build" / "bench"
TITLES = ("all", "seen")


def run(
    *,
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
    per_title: int | None = None,
    titles: str | None = None,
    synthetic_dir: str | None = None,
    short: bool = False,
    out: Path = OUT,
) -> None:
    """Run the study and print its table (see the module docstring); ``short`` is a smoke test, not a measurement."""
    import torch

    from course_utils.data.narrow import ALL_COMBINATIONS, SEEN_COMBINATIONS
    from course_utils.errors import CourseError, check_choice
    from course_utils.models.shapes_judge import load_shapes_judge
    from course_utils.synthetic.study import (
        StudyConfig,
        generate_synthetic,
        label_fidelity,
        load_synthetic_folder,
        research_study,
        synthetic_prompts,
    )

    if synthetic_dir and (per_title is not None or titles is not None):
        raise CourseError("--synthetic-per-title and --synthetic-titles shape a generated set, not --synthetic-dir's")
    titles = check_choice("title set", titles or "all", TITLES)
    per_title = 20 if per_title is None else per_title
    config = StudyConfig(n_real=48, n_test_unseen=48, n_test_seen=24, steps=20) if short else StudyConfig()
    if short:
        seeds, per_title = seeds[:2], min(per_title, 2)
    torch.set_num_threads(1)  # small models on a shared 2-core machine: two threads spin against other work
    # 1) the synthetic set
    started = time.perf_counter()
    if synthetic_dir:
        synthetic = load_synthetic_folder(synthetic_dir)
        source = f"read from {synthetic_dir}"
    else:
        combinations = ALL_COMBINATIONS if titles == "all" else SEEN_COMBINATIONS
        prompts = synthetic_prompts(per_title=per_title, seed=0, combinations=combinations)
        synthetic = generate_synthetic(prompts, seed=0)
        source = f"course/shapes-sd (DDIM 25 steps, guidance 7.5), {per_title} variations × {len(combinations)} titles"
    made = time.perf_counter() - started
    print(f"synthetic set: {len(synthetic)} pictures ({source}) in {made:.0f} s")
    # 2) do the pictures show what their captions ask for?
    judge_path = MODELS_DIR / "shapes-judge"
    if (judge_path / "config.json").is_file():
        fidelity = label_fidelity(load_shapes_judge(judge_path), synthetic)
        for group, per in fidelity.items():
            parts = ", ".join(f"{k} {e.percent()}" for k, e in per.items())
            print(f"  the judge reads as asked ({group} combinations): {parts}")
    # 3) the study
    result = research_study(synthetic=synthetic, seeds=seeds, config=config)
    models = 3 * len(seeds)
    print(f"study: {models} captioners, {config.steps} steps of batch {config.batch_size} each, in"
          f" {result.train_seconds:.0f} s ({result.train_seconds / models:.1f} s per model)")  # fmt: skip
    print(f"accuracy in % with 95 % intervals (crossed bootstrap over {config.n_test_unseen} unseen / "
          f"{config.n_test_seen} seen test pictures × {len(seeds)} seeds); differences in points, paired")  # fmt: skip
    print(result.table())
    print(result.verdict())
    if not short:
        path = out / ("synthetic-study.json" if titles == "all" or synthetic_dir else "synthetic-study-seen.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        records = {**result.records(), "synthetic_source": source, "synthetic_seconds": made}
        path.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
        print(f"records: {path}")
