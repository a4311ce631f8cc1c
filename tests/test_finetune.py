"""Week 5's fine-tuning recipe: DreamBooth's loss, LoRA through peft, new words, validation and early stopping,
adapter-only checkpoints, a SIGKILLed run resumed to the same adapter, and LoRA weights that load into a fresh
pipeline with diffusers' own ``load_lora_weights``."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from killing import kill_after_checkpoint
from PIL import Image
from safetensors.torch import load_file

from course_utils.course.paths import ROOT
from course_utils.data import shapes
from course_utils.errors import CourseError
from course_utils.training import finetuning
from course_utils.training.finetuning import (
    VALIDATION_TIMESTEPS,
    FinetuneConfig,
    attach_lora,
    finetune,
    load_base,
    load_finetuned,
    new_words,
    prior_preservation_loss,
    trainable_parameters,
    validation_loss,
)

SHAPES_SD = str(ROOT / "data" / "models" / "shapes-sd")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}


@pytest.fixture(scope="module")
def instance_dir(tmp_path_factory) -> Path:
    """Six renders of one subject (a large yellow plus) in varied places, as instance images."""
    folder = tmp_path_factory.mktemp("instances")
    rng = np.random.default_rng(0)
    places = [("left", "grey"), ("right", "black"), ("top", "beige"), ("bottom", "grey"), ("centre", "black")]
    for i, (position, background) in enumerate([*places, ("left", "beige")]):
        scene = shapes.Scene((shapes.ShapeSpec("plus", "yellow", "large", position),), background)
        Image.fromarray(shapes.render(scene, rng=rng)).save(folder / f"{i}.png")
    return folder


def small(tmp_path: Path, instance_dir: Path, **overrides) -> FinetuneConfig:
    settings = dict(
        method="lora",
        output_dir=str(tmp_path / "run"),
        pretrained_model_name_or_path=SHAPES_SD,
        instance_data_dir=str(instance_dir),
        max_train_steps=12,
        validation_steps=4,
        checkpointing_steps=4,
        learning_rate=1e-3,
        train_batch_size=2,
    )
    return FinetuneConfig(**{**settings, **overrides})


# ---------------------------------------------------------------------------------------------- the pieces


def test_prior_preservation_loss_is_instance_plus_weighted_prior():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(6, 4, 8, 8, generator=g), torch.randn(6, 4, 8, 8, generator=g)
    out = prior_preservation_loss(pred, target, num_instance=2, prior_loss_weight=0.5)
    instance = ((pred[:2] - target[:2]) ** 2).mean()
    prior = ((pred[2:] - target[2:]) ** 2).mean()
    torch.testing.assert_close(out["instance"], instance)
    torch.testing.assert_close(out["prior"], prior)
    torch.testing.assert_close(out["loss"], instance + 0.5 * prior)
    alone = prior_preservation_loss(pred, target, num_instance=6, prior_loss_weight=0.5)
    torch.testing.assert_close(alone["loss"], ((pred - target) ** 2).mean())
    with pytest.raises(CourseError, match="num_instance"):
        prior_preservation_loss(pred, target, num_instance=0, prior_loss_weight=1.0)


def test_lora_adds_r_times_in_plus_out_per_adapted_linear_and_starts_as_the_base():
    base = load_base(SHAPES_SD).unet
    adapted = load_base(SHAPES_SD).unet
    attach_lora(adapted, rank=4, lora_alpha=8, lora_dropout=0.0, target_modules=("to_k", "to_v"), seed=0)
    linears = [m for name, m in base.named_modules() if name.endswith(("to_k", "to_v"))]
    assert linears
    assert trainable_parameters(adapted) == sum(4 * (m.in_features + m.out_features) for m in linears)
    g = torch.Generator().manual_seed(1)
    z, t, cond = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([10, 700]), torch.randn(2, 32, 64, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(
            adapted(z, t, encoder_hidden_states=cond).sample, base(z, t, encoder_hidden_states=cond).sample
        )
    with pytest.raises(CourseError, match="target modules"):
        attach_lora(load_base(SHAPES_SD).unet, rank=4, lora_alpha=8, lora_dropout=0.0, target_modules=("nope",), seed=0)


def test_new_words_are_those_the_tokenizer_can_only_spell():
    tokenizer = load_base(SHAPES_SD).tokenizer
    assert new_words(tokenizer, ["a sks shape on the left", "a shape", "a red circle"]) == ["sks", "shape"]
    assert new_words(tokenizer, ["a large blue square on a black background"]) == []


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"method": "textual-inversion"}, "method"),
        ({"report_to": "tensorboard", "hub_token": "hf_secret"}, "token"),
        ({"method": "full"}, "train_data_dir"),
        ({"rank": 0}, "rank"),
        ({"lora_dropout": 1.0}, "lora_dropout"),
        ({"report_to": "mlflowx"}, "report_to"),
    ],
)
def test_bad_settings_are_one_line(tmp_path, instance_dir, overrides, message):
    with pytest.raises(CourseError, match=message) as err:
        small(tmp_path, instance_dir, **overrides)
    assert "hf_secret" not in str(err.value)


def test_validation_loss_depends_on_the_weights_alone():
    unet = load_base(SHAPES_SD).unet
    g = torch.Generator().manual_seed(0)
    z, cond = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 32, 64, generator=g)
    abar = torch.linspace(0.999, 0.01, 1000)
    torch.manual_seed(5)
    first = validation_loss(unet, z, cond, alphas_cumprod=abar, prediction_type="epsilon", seed=3)
    state = torch.get_rng_state()
    again = validation_loss(unet, z, cond, alphas_cumprod=abar, prediction_type="epsilon", seed=3)
    assert first == again
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is not touched
    assert validation_loss(unet, z, cond, alphas_cumprod=abar, prediction_type="epsilon", seed=4) != first
    pairs = validation_loss(unet, z, cond, alphas_cumprod=abar, prediction_type="epsilon", seed=3, reduction="none")
    assert pairs.shape == (3 * VALIDATION_TIMESTEPS,)  # each (image, level) pair, image by image
    assert float(pairs.mean()) == pytest.approx(first, rel=1e-6)
    with pytest.raises(CourseError, match="unknown reduction 'sum'; valid reductions: mean, none"):
        validation_loss(unet, z, cond, alphas_cumprod=abar, prediction_type="epsilon", seed=3, reduction="sum")


# ---------------------------------------------------------------------------------------------- runs


def test_dreambooth_with_prior_preservation_logs_both_losses_and_saves_a_pipeline(tmp_path, instance_dir):
    config = small(tmp_path, instance_dir, method="dreambooth", with_prior_preservation=True, num_class_images=4,
                   class_inference_steps=3, learning_rate=1e-4, max_train_steps=6, validation_steps=3)  # fmt: skip
    result = finetune(config, show_progress=False)
    assert len(result.parts["instance"]) == len(result.parts["prior"]) == len(result.losses) == 6
    assert all(p > 0 for p in result.parts["prior"])
    assert sorted(p.name for p in (tmp_path / "run" / "class_images").glob("*.png")) == [
        f"class_{i:04d}.png" for i in range(4)
    ]
    assert result.new_words == ["sks", "shape"]
    saved = load_finetuned(tmp_path / "run")  # a whole pipeline folder, new words included
    assert saved.tokenizer.tokenize("a sks shape") == ["a</w>", "sks", "shape"]
    for (name, a), b in zip(result.pipeline.unet.state_dict().items(), saved.unet.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    base = load_base(SHAPES_SD).unet.state_dict()
    assert any(not torch.equal(base[k], v) for k, v in saved.unet.state_dict().items())


def test_early_stopping_keeps_the_best_validation(tmp_path, instance_dir):
    # a learning rate this large makes the validation loss climb: the run stops and keeps an earlier step
    config = small(tmp_path, instance_dir, learning_rate=0.3, max_train_steps=40, validation_steps=2, patience=2,
                   checkpointing_steps=100)  # fmt: skip
    result = finetune(config, show_progress=False)
    assert result.stopped_early and result.step < 40
    steps, values = zip(*result.validations, strict=True)
    best = steps[int(np.argmin(values))]
    assert result.best_step == best
    assert sum(1 for s in steps if s > best) == 2  # exactly `patience` validations after the best
    data = finetuning._prepare_data(result.pipeline, config, 32, False)  # the same held-out set, the same words
    unet = result.pipeline.unet
    again = validation_loss(unet, data.val, data.val_embeds, alphas_cumprod=result.pipeline.scheduler.alphas_cumprod,
                            prediction_type="epsilon", seed=config.seed + 1)  # fmt: skip
    assert again == pytest.approx(min(values), rel=1e-6)


def test_lora_weights_load_into_a_fresh_pipeline_and_reproduce_its_images(tmp_path, instance_dir):
    config = small(tmp_path, instance_dir, lora_dropout=0.0, max_train_steps=8)
    result = finetune(config, show_progress=False)
    folder = tmp_path / "run"
    assert (folder / "pytorch_lora_weights.safetensors").is_file()
    assert json.loads((folder / "finetune.json").read_text())["trainable_parameters"] > 0
    fresh = load_finetuned(folder)  # base + load_textual_inversion + load_lora_weights
    base = load_base(SHAPES_SD)
    g = torch.Generator().manual_seed(2)
    z, t = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([50, 600])
    ids = fresh.tokenizer(["a sks shape", "a sks shape on the left"], padding="max_length", return_tensors="pt")
    with torch.no_grad():
        cond = fresh.text_encoder(ids.input_ids)[0]
        tuned = result.pipeline.unet(z, t, encoder_hidden_states=cond).sample
        reloaded = fresh.unet(z, t, encoder_hidden_states=cond).sample
        untuned = base.unet(z, t, encoder_hidden_states=cond).sample
    assert not torch.allclose(tuned, untuned, atol=1e-5)  # the adapter changed something…
    torch.testing.assert_close(reloaded, tuned, rtol=0, atol=1e-6)  # …and α/r = 2 came back with it
    images = [
        p("a sks shape", num_inference_steps=5, generator=torch.Generator().manual_seed(0), output_type="np").images
        for p in (result.pipeline, fresh)
    ]
    np.testing.assert_allclose(images[0], images[1], atol=1e-5)


def test_full_finetuning_on_a_captioned_imagefolder(tmp_path):
    data = shapes.make_dataset(6, seed=3)
    shapes.export_imagefolder(data, tmp_path / "captions")
    config = FinetuneConfig(method="full", output_dir=str(tmp_path / "run"), pretrained_model_name_or_path=SHAPES_SD,
                            train_data_dir=str(tmp_path / "captions"), max_train_steps=4, validation_steps=2,
                            checkpointing_steps=2, learning_rate=1e-4)  # fmt: skip
    result = finetune(config, show_progress=False)
    assert result.new_words == [] and result.step == 4
    assert (tmp_path / "run" / "model_index.json").is_file()
    with pytest.raises(CourseError, match="caption_column"):
        finetune(FinetuneConfig(**{**config.__dict__, "caption_column": "nope", "output_dir": str(tmp_path / "b")}),
                 show_progress=False)  # fmt: skip


# ---------------------------------------------------------------------------------------------- the command


def command(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "course_utils.training.finetune", *args],
        env=ENV,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_a_sigkilled_lora_run_resumes_to_the_same_adapter(tmp_path, instance_dir):
    args = ["lora", "--instance_data_dir", str(instance_dir), "--max_train_steps", "30", "--checkpointing_steps",
            "10", "--validation_steps", "5", "--patience", "4", "--learning_rate", "1e-3", "--train_batch_size",
            "2", "--with_prior_preservation", "--num_class_images", "4"]  # fmt: skip
    whole = command([*args, "--output_dir", str(tmp_path / "whole")])
    assert whole.wait(timeout=600) == 0, whole.stderr.read()
    # the same command killed at a seeded random moment after its first checkpoint, then started again
    killed_dir = tmp_path / "killed"
    killed = command([*args, "--output_dir", str(killed_dir)])
    kill_after_checkpoint(killed, killed_dir, step=10, delay=random.Random(0).uniform(0.0, 0.5), timeout=600)
    assert not (killed_dir / "finetune.json").exists()
    state = json.loads(sorted(killed_dir.glob("checkpoint-*/loop_state.json"))[-1].read_text())
    assert state["step"] < 30
    checkpoint = sorted(killed_dir.glob("checkpoint-*[0-9]"))[-1]
    assert (checkpoint / "adapter.safetensors").is_file() and not list(checkpoint.glob("model*.safetensors"))
    resumed = command([*args, "--output_dir", str(killed_dir)])
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    a = load_file(tmp_path / "whole" / "pytorch_lora_weights.safetensors")
    b = load_file(killed_dir / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    records = [json.loads((d / "finetune.json").read_text()) for d in (tmp_path / "whole", killed_dir)]
    assert records[0]["validations"] == records[1]["validations"]
    assert records[0]["best_step"] == records[1]["best_step"]
    assert len(records[1]["runs"]) == 2  # two sessions trained
    again = command([*args, "--output_dir", str(killed_dir)])
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0 and "nothing to do" in out


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dreambooth", "full"])
def test_a_sigkilled_run_of_the_whole_unet_resumes_to_the_same_weights(tmp_path, instance_dir, method):
    """DreamBooth and full fine-tuning, killed at a seeded random moment after their first checkpoint and started
    again: the final U-Net equals an uninterrupted run's, bit for bit, and no checkpoint is half written."""
    if method == "full":
        shapes.export_imagefolder(shapes.make_dataset(6, seed=3), tmp_path / "captions")
        data = ["--train_data_dir", str(tmp_path / "captions")]
    else:
        data = ["--instance_data_dir", str(instance_dir)]
    args = [method, *data, "--max_train_steps", "12", "--checkpointing_steps", "4", "--validation_steps", "4",
            "--learning_rate", "1e-4", "--train_batch_size", "2"]  # fmt: skip
    whole = command([*args, "--output_dir", str(tmp_path / "whole")])
    assert whole.wait(timeout=600) == 0, whole.stderr.read()
    killed_dir = tmp_path / "killed"
    killed = command([*args, "--output_dir", str(killed_dir)])
    kill_after_checkpoint(killed, killed_dir, step=4, delay=random.Random(method).uniform(0.0, 0.5), timeout=600)
    assert not (killed_dir / "finetune.json").exists()
    resumed = command([*args, "--output_dir", str(killed_dir)])
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    a = load_file(tmp_path / "whole" / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(killed_dir / "unet" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    records = [json.loads((d / "finetune.json").read_text()) for d in (tmp_path / "whole", killed_dir)]
    assert records[0]["validations"] == records[1]["validations"] and len(records[1]["runs"]) == 2
    assert not list(killed_dir.rglob("*.tmp")) and not list(killed_dir.rglob("*.part*"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["textual-inversion", "--output_dir", "X"], "unknown method"),
        (["lora", "--output_dir", "X", "--rnak", "4"], "unknown option '--rnak'"),
        (["lora", "--output_dir", "X", "--pretrained_model_name_or_path", "course/digits-ddpm"], "course-digits"),
        (["lora", "--output_dir", "X", "--report_to", "tensorboard", "--hub_token", "hf_x"], "HF_TOKEN"),
    ],
)
def test_the_command_refuses_bad_input_in_one_line(tmp_path, args, message):
    args = [a if a != "X" else str(tmp_path / "out") for a in args]
    process = command(args)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert "hf_x" not in err
