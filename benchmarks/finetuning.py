"""LoRA against full fine-tuning of the U-Net (DreamBooth) at equal steps, as ratios (``make bench ARGS="--only
finetuning"``): trainable parameters, seconds per optimisation step, peak memory, what is saved on disk, and the
concept rate the reader measures after.

Each method runs in a process of its own (``python -m benchmarks.finetuning --child …``), so its peak resident
memory (``ru_maxrss``) is its own; the memory reported is that peak minus the process's resident memory once the
base pipeline is loaded, i.e. what training adds (the data's latents, gradients, optimizer state, activations).
Same seed, same instance pictures, same batch; no early stopping (every step runs).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

METHODS = ("lora", "dreambooth")


def _rss_mb() -> float:
    """This process's resident memory now, MB (Linux ``/proc/self/status``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(method: str, folder: Path, steps: int, learning_rate: float, n_seeds: int) -> dict:
    """Fine-tune with ``method`` for ``steps`` steps in ``folder``; return its measurements."""
    import torch

    from course_utils.course.paths import MODELS_DIR
    from course_utils.data.concepts import HEART, export_instance_images, instance_prompt
    from course_utils.models.shapes_judge import concept_rate, load_shapes_judge
    from course_utils.training.finetuning import LORA_FILE, FinetuneConfig, finetune, load_base, trainable_parameters

    instances = export_instance_images(HEART, folder / "instances", n=8, seed=0)
    config = FinetuneConfig(method=method, output_dir=str(folder / method), pretrained_model_name_or_path=str(
        MODELS_DIR / "shapes-sd"), instance_data_dir=str(instances), learning_rate=learning_rate,
        max_train_steps=steps, train_batch_size=2, validation_steps=steps, patience=None,
        checkpointing_steps=steps)  # fmt: skip
    pipe = load_base(config.pretrained_model_name_or_path)
    loaded = _rss_mb()
    result = finetune(config, pipe=pipe, show_progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = Path(config.output_dir)
    saved = out / LORA_FILE if method == "lora" else out / "unet" / "diffusion_pytorch_model.safetensors"
    judge = load_shapes_judge(MODELS_DIR / "shapes-judge-unseen")
    generators = [torch.Generator().manual_seed(s) for s in range(n_seeds)]
    images = result.pipeline([instance_prompt(HEART)] * n_seeds, num_inference_steps=20, guidance_scale=7.5,
                             generator=generators, output_type="pt").images * 2 - 1  # fmt: skip
    return {
        "method": method,
        "trainable": trainable_parameters(result.pipeline.unet),
        "seconds_per_step": result.seconds / result.step,
        "training_memory_mb": peak - loaded,
        "saved_mb": saved.stat().st_size / 2**20,
        "concept": concept_rate(judge, images, HEART).tolist(),
    }


def run(*, steps: int = 200, learning_rate: float = 1e-3, n_seeds: int = 24) -> None:
    """Run both methods, each in its own process, and print the table and the ratios LoRA / full."""
    from course_utils.stats import proportion

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in METHODS:
            cmd = [sys.executable, "-m", "benchmarks.finetuning", "--child", method, tmp, str(steps),
                   str(learning_rate), str(n_seeds)]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"finetuning bench: {method} failed:\n{done.stderr[-2000:]}")
            rows[method] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"LoRA (r 8) vs full U-Net (DreamBooth), {steps} steps, batch 2, lr {learning_rate:g}, no prior preservation")
    print(f"{'method':<11} {'trainable':>10} {'s/step':>7} {'train MB':>9} {'saved MB':>9} {'concept':>18}")
    for method, r in rows.items():
        print(f"{method:<11} {r['trainable']:>10,} {r['seconds_per_step']:>7.3f} {r['training_memory_mb']:>9.0f}"
              f" {r['saved_mb']:>9.2f} {str(proportion(r['concept'])):>18}")  # fmt: skip
    lora, full = rows["lora"], rows["dreambooth"]
    print(
        f"ratios LoRA / full: trainable {lora['trainable'] / full['trainable']:.4f}, s/step"
        f" {lora['seconds_per_step'] / full['seconds_per_step']:.2f}, training memory"
        f" {lora['training_memory_mb'] / max(full['training_memory_mb'], 1e-9):.2f}, on disk"
        f" {lora['saved_mb'] / full['saved_mb']:.4f}"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        method, folder, steps, lr, n = sys.argv[2:7]
        print(json.dumps(child(method, Path(folder), int(steps), float(lr), int(n))))
    else:
        run()
