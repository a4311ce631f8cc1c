"""Week 5's committed adapters (``data/models/shapes-sd-heart``) and the ``finetuned`` stage that builds them."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from course_utils.course.paths import MODELS_DIR
from course_utils.data import shapes
from course_utils.data.concepts import HEART, instance_images, instance_prompt
from course_utils.errors import CourseError
from course_utils.models.finetuned import (
    FOLDER,
    MEASURES,
    FinetunedRun,
    adapter_exercise,
    build_finetuned_stage,
    instance_latents,
    load_adapter,
)
from course_utils.training.finetuning import LORA_FILE, load_base, prepare_words


def test_an_unknown_adapter_is_one_line_naming_the_committed_ones():
    with pytest.raises(CourseError, match="lora, lora-prior"):
        load_adapter("dreambooth")


@pytest.mark.parametrize("name", ["lora", "lora-prior"])
def test_the_committed_adapters_load_with_their_alpha_and_change_the_unet(name):
    folder = MODELS_DIR / FOLDER / name
    with safe_open(str(folder / LORA_FILE), "pt") as f:
        metadata = json.loads(f.metadata()["lora_adapter_metadata"])
    assert metadata["unet.lora_alpha"] == 16 and metadata["unet.r"] == 8  # α / r = 2 survives a reload
    tuned, base = load_adapter(name), load_base(str(MODELS_DIR / "shapes-sd"))
    ids = tuned.tokenizer(["a sks shape"], padding="max_length", return_tensors="pt").input_ids
    assert tuned.tokenizer.convert_ids_to_tokens(ids[0, 1:4].tolist()) == ["a</w>", "sks", "shape"]
    g = torch.Generator().manual_seed(0)
    z, t = torch.randn(1, 4, 8, 8, generator=g), torch.tensor([400])
    with torch.no_grad():
        cond = tuned.text_encoder(ids)[0]
        assert not torch.allclose(
            tuned.unet(z, t, encoder_hidden_states=cond).sample, base.unet(z, t, encoder_hidden_states=cond).sample
        )


def test_instance_latents_are_the_pictures_the_vae_decodes_back_and_the_prompt_with_its_new_words():
    pipe = load_base(str(MODELS_DIR / "shapes-sd"))
    prepare_words(pipe, [instance_prompt(HEART)], seed=0)
    latents, cond = instance_latents(pipe, n=3, seed=1)
    assert latents.shape == (3, 4, 8, 8) and cond.shape == (3, pipe.tokenizer.model_max_length, 64)
    pictures = shapes.to_tensor(instance_images(HEART, n=3, seed=1).images)
    with torch.no_grad():
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
        ids = pipe.tokenizer([instance_prompt(HEART)], padding="max_length", return_tensors="pt").input_ids
        assert torch.equal(cond[2], pipe.text_encoder(ids)[0][0])
    assert ((decoded - pictures) ** 2).mean() < ((decoded - pictures.roll(1, 0)) ** 2).mean()  # each its own picture
    assert not torch.equal(instance_latents(pipe, n=3, seed=2)[0], latents)


def test_the_adapter_exercise_trains_only_its_adapter_and_measures_the_held_out_pictures():
    exercise = adapter_exercise(rank=2, n=5, held_out=2, seed=0)
    (z, cond), (z_val, cond_val) = exercise.train, exercise.held_out
    assert z.shape == (3, 4, 8, 8) and cond.shape[0] == 3 and z_val.shape == (2, 4, 8, 8) and cond_val.shape[0] == 2
    latents, _ = instance_latents(exercise.pipe, n=5, seed=0)
    assert torch.equal(torch.cat([z, z_val]), latents)  # the last two pictures are the held-out ones
    trainable = [name for name, p in exercise.unet.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert exercise.unet.peft_config["default"].r == 2
    exercise.unet.train()
    pairs = exercise.held_out_loss(reduction="none")
    assert pairs.shape == (2 * 8,) and exercise.unet.training  # its mode is given back
    assert exercise.held_out_loss() == pytest.approx(float(pairs.mean()), rel=1e-6)
    with torch.no_grad():
        for name, p in exercise.unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    assert exercise.held_out_loss() != pytest.approx(float(pairs.mean()), rel=1e-3)  # it measures these weights
    with pytest.raises(CourseError, match="hold out between 1 and n − 1 = 4 of the 5 pictures, got 5"):
        adapter_exercise(n=5, held_out=5)


@pytest.mark.slow
def test_the_stage_trains_measures_commits_and_describes(tmp_path):
    for name in ("shapes-sd", "shapes-judge-unseen"):
        (tmp_path / name).symlink_to(MODELS_DIR / name)
    runs = (FinetunedRun("tiny", "lora", True, 1e-3, 4, commit=True), FinetunedRun("db", "dreambooth", False, 1e-4, 2))
    custom = {"n_scenes": 30, "steps": 2, "n_measured": 4}
    metrics = build_finetuned_stage(tmp_path, runs=runs, n_seeds=2, custom=custom, runs_dir=tmp_path / "runs")
    assert metrics["custom"]["captions_measured"] == 4 and metrics["custom"]["steps"] == 2
    folder = tmp_path / FOLDER
    assert set(metrics["runs"]) == {"tiny", "db"} and set(MEASURES) <= set(metrics["base"])
    assert (folder / "tiny" / LORA_FILE).is_file() and not (folder / "db").exists()  # only adapters committed
    assert str(tmp_path) not in (folder / "tiny" / "finetune.json").read_text()
    card = (folder / "README.md").read_text()
    assert "| tiny |" in card and "| db |" in card
    assert json.loads((folder / "metrics.json").read_text())["runs"]["tiny"]["steps"] == 4
