"""The miniature Stable Diffusion: a real StableDiffusionPipeline (tiny random weights here, the committed model
at the end), its training prompts and loop, offline loading, determinism, scheduler swaps, img2img and inpainting."""

import copy
import json

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
)

from course_utils.course.paths import MODELS_DIR
from course_utils.data.shapes import attributes, make_dataset, prompt_attributes, to_tensor
from course_utils.errors import CourseError
from course_utils.models.shapes_card import generate
from course_utils.models.shapes_sd import (
    UNetConfig,
    build_shapes_scheduler,
    build_shapes_unet,
    load_shapes_sd,
    min_snr_weights,
    prompt_embeds,
    train_shapes_unet,
    training_prompts,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread

PROMPT = "a large red circle left of a small blue square on a grey background"
COMMITTED = MODELS_DIR / "shapes-sd"


@pytest.fixture(scope="module")
def pipe(tiny_shapes_sd_path):
    return load_shapes_sd(tiny_shapes_sd_path)


def sample(pipe, seed=0, **kwargs):
    kwargs = {"num_inference_steps": 4, "guidance_scale": 3.0, "output_type": "np", **kwargs}
    return pipe(PROMPT, generator=torch.Generator().manual_seed(seed), **kwargs).images


def test_prompt_embeds_are_what_the_pipeline_feeds_its_unet(pipe):
    ours = prompt_embeds(pipe.text_encoder, pipe.tokenizer, [PROMPT, ""])
    theirs, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False)
    empty, _ = pipe.encode_prompt("", "cpu", 1, False)
    assert ours.shape == (2, pipe.tokenizer.model_max_length, pipe.text_encoder.config.hidden_size)
    torch.testing.assert_close(ours, torch.cat([theirs, empty]))
    with pytest.raises(CourseError, match="does not know: 'dog'"):
        prompt_embeds(pipe.text_encoder, pipe.tokenizer, ["a red dog"])


def test_training_prompts_drop_captions_and_attributes_reproducibly():
    scenes = make_dataset(400, seed=1).scenes
    first = training_prompts(scenes, torch.Generator().manual_seed(0))
    assert first == training_prompts(scenes, torch.Generator().manual_seed(0))
    assert 0.05 < np.mean([p == "" for p in first]) < 0.15  # P_UNCOND = 0.1
    for scene, prompt in zip(scenes, first, strict=True):
        if prompt:
            named = prompt_attributes(prompt)  # a subset of the truth, keeping the shapes and the relation
            assert named.items() <= attributes(scene).items() and named["shape"] == scene.objects[0].shape
    full = training_prompts(scenes, torch.Generator().manual_seed(0), p_uncond=0.0, p_omit=0.0)
    assert all(prompt_attributes(p) == attributes(s) for p, s in zip(full, scenes, strict=True))
    assert training_prompts(scenes[:50], torch.Generator().manual_seed(0), p_uncond=1.0) == [""] * 50


def test_saves_and_loads_offline_like_a_hub_model(tiny_shapes_sd_path, monkeypatch, pipe):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = DiffusionPipeline.from_pretrained(tiny_shapes_sd_path)
    assert type(loaded) is StableDiffusionPipeline
    assert type(loaded.scheduler) is DDIMScheduler and loaded.safety_checker is None
    index = json.loads((tiny_shapes_sd_path / "model_index.json").read_text())
    assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(index)
    assert not list(tiny_shapes_sd_path.rglob("*.bin")) and list(tiny_shapes_sd_path.rglob("*.safetensors"))
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(sample(loaded), sample(pipe))
    with pytest.raises(CourseError, match="run `make models`"):
        load_shapes_sd(tiny_shapes_sd_path / "missing")


def test_the_same_seed_gives_the_same_image(pipe):
    a, b, c = sample(pipe, seed=3), sample(pipe, seed=3), sample(pipe, seed=4)
    assert a.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


@pytest.mark.parametrize(
    "scheduler",
    [
        DDPMScheduler,
        DDIMScheduler,
        EulerDiscreteScheduler,
        EulerAncestralDiscreteScheduler,
        DPMSolverMultistepScheduler,
    ],
)
def test_schedulers_swap_in_from_the_saved_config(pipe, scheduler):
    swapped = StableDiffusionPipeline(**{**pipe.components, "scheduler": scheduler.from_config(pipe.scheduler.config)})
    swapped.set_progress_bar_config(disable=True)
    images = sample(swapped, num_inference_steps=5)
    np.testing.assert_array_equal(images, sample(swapped, num_inference_steps=5))
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()
    assert swapped.scheduler.config.beta_schedule == "scaled_linear" and len(swapped.scheduler.timesteps) == 5


def test_img2img_and_inpainting_pipelines_take_the_same_components(pipe):
    picture = to_tensor(make_dataset(1, seed=0).images) * 0.5 + 0.5  # (1, 3, 32, 32) in [0, 1]
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    img2img.set_progress_bar_config(disable=True)
    out = img2img(PROMPT, image=picture, strength=0.5, num_inference_steps=4, output_type="np").images
    assert out.shape == (1, 32, 32, 3)
    inpaint = StableDiffusionInpaintPipeline(**pipe.components)
    inpaint.set_progress_bar_config(disable=True)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :, 16:] = 1  # repaint the right half
    out = inpaint(PROMPT, image=picture, mask_image=mask, num_inference_steps=4, output_type="np").images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()


def test_training_lowers_the_loss_reproducibly(pipe):
    from course_utils.training.loop import TrainConfig

    scenes = make_dataset(64, seed=2).scenes
    latents = torch.randn(64, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    config = TrainConfig(steps=30, batch_size=16, lr=3e-3, warmup_steps=3, ema_decay=0.5, seed=0)
    tiny = UNetConfig(block_out_channels=(32, 32), attention_heads=4, cross_attention_dim=32, norm_num_groups=8)

    def run(**kwargs):
        text_encoder = copy.deepcopy(pipe.text_encoder)
        return train_shapes_unet(
            build_shapes_unet(tiny),
            latents,
            scenes,
            text_encoder=text_encoder,
            tokenizer=pipe.tokenizer,
            config=config,
            **kwargs,
        )

    ema, losses = run()
    assert losses == run()[1]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    frozen = ema["text_encoder"].state_dict()
    assert all(torch.equal(v, pipe.text_encoder.state_dict()[k]) for k, v in frozen.items())
    tuned, tuned_losses = run(train_text_encoder=True, snr_gamma=5.0)
    assert tuned_losses != losses  # the weights change the loss
    changed = tuned["text_encoder"].state_dict()
    assert any(not torch.equal(v, pipe.text_encoder.state_dict()[k]) for k, v in changed.items())
    with pytest.raises(CourseError, match=r"latents \(N, 4, 8, 8\)"):
        train_shapes_unet(
            build_shapes_unet(tiny),
            latents[:, :3],
            scenes,
            text_encoder=pipe.text_encoder,
            tokenizer=pipe.tokenizer,
            config=config,
        )


def test_min_snr_weights_follow_the_formula():
    abar = build_shapes_scheduler().alphas_cumprod
    t = torch.tensor([0, 300, 999])
    snr = abar[t] / (1 - abar[t])
    weights = min_snr_weights(t, abar, gamma=5.0)
    assert snr[0] > 5 > snr[2]  # a clean step and a noisy one
    torch.testing.assert_close(weights, torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert weights[0] < 0.01 and weights[2] == 1.0


def test_unet_config_is_checked():
    with pytest.raises(CourseError, match="multiples of norm_num_groups"):
        UNetConfig(block_out_channels=(48, 64))
    with pytest.raises(CourseError, match="at least two levels"):
        UNetConfig(block_out_channels=(64,))


# ---------------------------------------------------------------------------------------------- the committed model

committed = pytest.mark.skipif(not (COMMITTED / "model_index.json").is_file(), reason="run `make models`")


@committed
def test_committed_weights_are_safetensors_within_40_mb():
    files = [p for p in MODELS_DIR.rglob("*") if p.is_file() and p.parent.name != "__pycache__"]
    weights = [p for p in files if p.suffix in {".safetensors", ".bin", ".pt", ".ckpt", ".pth"}]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
    assert sum(p.stat().st_size for p in files) < 40e6


@committed
def test_committed_model_follows_prompts_offline(monkeypatch):
    """Adherence smoke test: a few held-out-seed captions, guidance 7.5 against 1, DDIM 25 steps."""
    from course_utils.models.shapes_judge import adherence, load_shapes_judge

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = load_shapes_sd(COMMITTED)
    judge = load_shapes_judge(MODELS_DIR / "shapes-judge")
    prompts = make_dataset(16, seed=4321).captions
    guided = adherence(judge, generate(pipe, prompts, guidance_scale=7.5, num_inference_steps=25, seed=0), prompts)
    plain = adherence(judge, generate(pipe, prompts, guidance_scale=1.0, num_inference_steps=25, seed=0), prompts)
    assert guided.overall >= 0.8 and guided.overall > plain.overall, (guided.overall, plain.overall)


def test_make_models_refuses_an_unknown_stage(capsys):
    from course_utils.models.build import main

    with pytest.raises(SystemExit) as stop:
        main(["--only", "shapes-sd,nope", "--eval-only"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    valid = "digits, shapes-clip, shapes-vae, shapes-judge, concept-judge, shapes-sd, shapes-if"
    valid += ", from-scratch, finetuned, synthetic-study"
    assert err == f"error: unknown stage 'nope'; valid stages: {valid}"
