"""x̂₀ recorded at every step of the shapes pipeline, and the coarse-to-fine study on a few samples of the committed
model (the algorithms are tested on synthetic inputs in ``test_spectrum.py``)."""

import pytest
import torch
from diffusers import DiffusionPipeline, DPMSolverMultistepScheduler

from course_utils.course.paths import MODELS_DIR
from course_utils.data.shapes import make_dataset
from course_utils.errors import CourseError
from course_utils.models.shapes_vae import decode
from course_utils.sampling.spectrum import band_snr
from course_utils.sd.coarse_to_fine import SPACES, coarse_to_fine_study, record_x0, recording_x0

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread

PROMPTS = ["a large red circle left of a small blue square on a grey background", "a small white plus on the left"]


@pytest.fixture(scope="module")
def committed():
    pipe = DiffusionPipeline.from_pretrained(MODELS_DIR / "shapes-sd")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_record_x0_keeps_the_sample_and_records_every_step(committed):
    run = record_x0(committed, PROMPTS, seed=3, num_inference_steps=5)
    plain = committed(
        prompt=PROMPTS,
        num_inference_steps=5,
        generator=[torch.Generator("cpu").manual_seed(3 + i) for i in range(2)],
        output_type="latent",
    ).images
    assert torch.equal(run.final_latents, plain)  # recording changes nothing
    assert run.latents.shape == (5, 2, 4, 8, 8) and run.pixels.shape == (5, 2, 3, 32, 32)
    assert run.timesteps.tolist() == committed.scheduler.timesteps.tolist()
    assert run.timesteps[0] > run.timesteps[-1]
    torch.testing.assert_close(run.alphas_cumprod, committed.scheduler.alphas_cumprod[run.timesteps].double())
    torch.testing.assert_close(run.pixels[2], decode(committed.vae, run.latents[2]))
    assert float(run.pixels.abs().max()) <= 1
    # x̂₀ sharpens towards the sample: the last step's estimate is nearer the final latents than the first's
    first, last = ((run.latents[i] - run.final_latents).norm() for i in (0, -1))
    assert last < 0.1 * first
    assert record_x0(committed, PROMPTS[:1], num_inference_steps=2, decode_steps=False).pixels is None


def test_recording_refuses_a_scheduler_without_x0(committed):
    scheduler = DPMSolverMultistepScheduler.from_config(committed.scheduler.config)
    pipe = DiffusionPipeline.from_pretrained(MODELS_DIR / "shapes-sd", scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    with recording_x0(pipe.scheduler), pytest.raises(CourseError, match="does not return x̂₀"):
        pipe(prompt=PROMPTS[:1], num_inference_steps=2, output_type="latent")
    assert "step" not in vars(pipe.scheduler)  # the method is back


def test_coarse_to_fine_study_on_a_few_samples(committed):
    data = make_dataset(4, seed=2027)
    study = coarse_to_fine_study(committed, data, num_inference_steps=8, spectrum_n=32)
    assert study.settle["latents"].shape == (4, 4) and study.settle["pixels"].shape == (4, 8)
    for space in SPACES:
        s = study.settle[space]
        assert int(s.min()) >= 0 and int(s.max()) <= 8
        torch.testing.assert_close(study.snr[space], band_snr(study.alphas_cumprod, study.power[space]))
        assert len(study.settle_table(space)) == len(study.edges[space]) - 1
        assert study.coarse_to_fine(space).n == 4
    assert bool((study.power["latents"][:-1] > study.power["latents"][1:]).all())  # power falls with frequency
    assert study.contrast.shape == study.patch_settle.shape == (4, 16)
    assert [r["contrast third"] for r in study.patch_terciles()] == ["low", "mid", "high", "high − low"]
    rho, left_out = study.patch_correlation()
    assert -1 <= rho.value <= 1 and 0 <= left_out < 4
    assert len(study.snr_table("latents", at=(0, 7))) == 2
    with pytest.raises(CourseError, match="not in 0"):
        study.snr_table("latents", at=(8,))
    with pytest.raises(CourseError, match="valid spaces"):
        study.settle_table("frequencies")
    with pytest.raises(CourseError, match="not both"):
        coarse_to_fine_study(committed, data, n=2)


def test_the_figures_label_their_axes(committed):
    import matplotlib

    matplotlib.use("Agg")
    from course_utils.plotting import patch_settle_plot, settle_curves

    study = coarse_to_fine_study(committed, make_dataset(3, seed=2027), num_inference_steps=6, spectrum_n=16)
    fig = settle_curves(study)
    left, right = fig.axes[:2]
    assert "cycles per picture pixel" in left.get_xlabel() and "SNR" in right.get_ylabel()
    assert len(left.containers) == 2  # an error-bar series per space
    fig = patch_settle_plot(study)
    assert "contrast" in fig.axes[0].get_xlabel() and fig.axes[0].get_title()
