"""The pixel-space shapes model (``course/shapes-if``): its pipeline class round-trips through save/from_pretrained, the
committed model loads offline through the denoiser interface, draws what its prompts name, and the course's samplers
reproduce its pipeline; the readers the studies judge with."""

import pytest
import torch
from diffusers import DDIMScheduler

from course_utils.course.paths import MODELS_DIR
from course_utils.data.digits import load_digits_split
from course_utils.data.photos import example_batch
from course_utils.data.shapes import make_dataset, to_tensor
from course_utils.denoisers import ShapesIFDenoiser, load_denoiser
from course_utils.errors import CourseError
from course_utils.metrics import digit_classifier
from course_utils.models.readers import DigitReader, reader_for, shapes_reader
from course_utils.models.shapes_if import (
    PixelUNetConfig,
    ShapesIFPipeline,
    build_pixel_unet,
    build_shapes_if_scheduler,
    load_shapes_if,
)
from course_utils.models.shapes_judge import adherence
from course_utils.sampling.diffusion import ddim_sample, ddpm_sample, strided_timesteps

TINY = PixelUNetConfig(sample_size=8, block_out_channels=(32, 32), cross_attention_levels=(False, True))
PROMPTS = ["a large red circle on the left on a grey background", "a small blue square at the top"]


@pytest.fixture(scope="module")
def committed():
    return load_shapes_if(MODELS_DIR / "shapes-if")


@pytest.fixture(scope="module")
def den():
    return load_denoiser("course/shapes-if", device="cpu")


def tiny_pipeline(committed) -> ShapesIFPipeline:
    return ShapesIFPipeline(
        unet=build_pixel_unet(TINY, seed=1),
        scheduler=build_shapes_if_scheduler(),
        text_encoder=committed.text_encoder,
        tokenizer=committed.tokenizer,
    )


def test_the_pipeline_round_trips_through_save_pretrained(committed, tmp_path):
    pipe = tiny_pipeline(committed)
    pipe.save_pretrained(tmp_path, safe_serialization=True)
    loaded = load_shapes_if(tmp_path)
    assert isinstance(loaded, ShapesIFPipeline) and loaded.unet.dtype == torch.float32
    for a, b in zip(pipe.unet.state_dict().values(), loaded.unet.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    gen = torch.Generator().manual_seed(0)
    images = loaded(PROMPTS, num_inference_steps=3, generator=gen, output_type="pt")
    assert images.shape == (2, 3, 8, 8) and images.min() >= -1 and images.max() <= 1
    assert len(loaded(PROMPTS[0], num_inference_steps=2)) == 1  # PIL images by default
    assert not list(tmp_path.rglob("*.bin"))


def test_the_pipeline_refuses_what_it_cannot_do(committed, tmp_path):
    with pytest.raises(CourseError, match="run `make models`"):
        load_shapes_if(tmp_path)
    pipe = tiny_pipeline(committed)
    with pytest.raises(CourseError, match="output_type"):
        pipe(PROMPTS, num_inference_steps=2, output_type="latent")
    with pytest.raises(CourseError, match="vocabulary|word"):
        pipe(["a photo of a cat"], num_inference_steps=2)
    with pytest.raises(CourseError, match="cross_attention_levels"):
        PixelUNetConfig(block_out_channels=(32, 64), cross_attention_levels=(True,))


def test_the_committed_model_is_float16_on_disk_within_the_size_cap():
    from safetensors import safe_open

    files = list((MODELS_DIR / "shapes-if" / "unet").glob("*.safetensors"))
    assert len(files) == 1
    with safe_open(files[0], "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    total = sum(p.stat().st_size for p in MODELS_DIR.rglob("*") if p.is_file())
    assert total < 40e6  # data/models' cap (DESIGN.md)


def test_loads_through_the_denoiser_interface(den):
    assert isinstance(den, ShapesIFDenoiser) and den.family == "course-shapes-if"
    assert den.sample_shape == (3, 32, 32) and den.schedule.num_timesteps == 1000
    assert den.schedule.clip_x0 == 1.0 and den.schedule.prediction_type == "epsilon"
    cond = den.condition(PROMPTS)
    assert cond.shape == (2, 32, 64)
    torch.testing.assert_close(den.null_condition(2), den.condition(["", ""]))
    x = den.noise(2, generator=torch.Generator().manual_seed(0))
    assert den(x, torch.tensor([500, 500]), cond).shape == x.shape
    torch.testing.assert_close(
        den(x, torch.tensor([500, 500]), None), den(x, torch.tensor([500, 500]), den.null_condition(2))
    )


def _samples(den, prompts, *, w, seed=0, steps=20):
    x_T = den.noise(len(prompts), generator=torch.Generator().manual_seed(seed))
    return ddpm_sample(
        den,
        x_T,
        strided_timesteps(1000, steps),
        schedule=den.schedule,
        cond=den.condition(prompts),
        uncond=den.null_condition(len(prompts)),
        guidance_scale=w,
        generator=torch.Generator().manual_seed(seed + 1),
    )


def test_guided_samples_follow_their_prompts_and_unguided_ones_do_not(den):
    """The share of named attributes the judge reads (the card's adherence): guided well above unguided (the card
    measures 0.62 at w = 7.5 on 120 captions, and w = 0 ignores the prompt)."""
    prompts = make_dataset(24, seed=77).captions
    judge = reader_for(den).judge
    guided = adherence(judge, _samples(den, prompts, w=7.5), prompts).overall
    unguided = adherence(judge, _samples(den, prompts, w=0.0), prompts).overall
    assert guided >= 0.5 and unguided <= 0.4


def test_the_course_sampler_reproduces_the_pipeline(committed, den):
    """With DDIM in the pipeline, its guided loop is the course's ddim_sample on the same x_T and timesteps."""
    ddim = ShapesIFPipeline(
        **{**committed.components, "scheduler": DDIMScheduler.from_config(committed.scheduler.config)}
    )
    ddim.set_progress_bar_config(disable=True)
    ddim.scheduler.set_timesteps(10)
    x_T = den.noise(2, generator=torch.Generator().manual_seed(5))
    course = ddim_sample(
        den,
        x_T,
        ddim.scheduler.timesteps.tolist(),
        schedule=den.schedule,
        cond=den.condition(PROMPTS),
        uncond=den.null_condition(2),
        guidance_scale=3.0,
    )
    got = ddim(
        PROMPTS,
        num_inference_steps=10,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(5),
        output_type="pt",
    )
    torch.testing.assert_close(got, course.clamp(-1, 1), atol=1e-5, rtol=1e-5)


def test_the_shapes_reader_reads_true_renders_and_compares_readings():
    data = make_dataset(32, seed=3)
    reader, images = shapes_reader(), to_tensor(data.images)
    assert reader.reads(images, data.captions).float().mean() >= 0.8
    shuffled = data.captions[1:] + data.captions[:1]
    assert reader.reads(images, shuffled).float().mean() <= 0.2
    assert torch.equal(reader.kept(images, images), torch.ones(32))
    kept_other = reader.kept(images[1:], images[:1])
    assert kept_other.shape == (31,) and 0 <= kept_other.min() and kept_other.mean() < 0.9


def test_the_digit_reader_reads_digits():
    split = load_digits_split()
    reader = DigitReader(digit_classifier())
    x, y = split.x_test[:50], split.y_test[:50]
    assert reader.reads(x, y.tolist()).float().mean() >= 0.9
    assert torch.equal(reader.kept(x[:5], x[:5]), torch.ones(5))


def test_each_course_denoiser_gets_its_reader():
    class Hub:
        family, sample_shape = "if", (3, 64, 64)

    assert reader_for(Hub()) is None
    assert isinstance(reader_for(load_denoiser("course/digits-ddpm", device="cpu")), DigitReader)
    assert example_batch((3, 32, 32), n=3)[0].shape == (3, 3, 32, 32)
