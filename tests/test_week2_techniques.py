"""Week 2's techniques: guidance combinations, SDEdit, inpainting, anagrams, hybrids, masks, studies."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from course_utils.denoisers import load_denoiser
from course_utils.errors import CourseError
from course_utils.metrics import diversity, psnr_per_image
from course_utils.plotting import image_grid
from course_utils.sampling.diffusion import ddpm_sample, strided_timesteps
from course_utils.sampling.editing import inpaint, sdedit, text_guided_sdedit
from course_utils.sampling.guidance import (
    anagram_combine,
    classifier_free_guidance,
    high_pass,
    hybrid,
    hybrid_combine,
    low_pass,
    visual_anagram,
)
from course_utils.sampling.masks import box_mask, check_mask, circle_mask, mask_from_image
from course_utils.sampling.schedules import NoiseSchedule
from course_utils.sampling.views import VIEWS, get_view
from course_utils.studies import STUDIES, run_study

TIMESTEPS = strided_timesteps(1000, 20)


@pytest.fixture(scope="module")
def den():
    return load_denoiser("course/digits-ddpm", device="cpu")


def linear_model(x, t, cond):
    """A model linear in x whose output depends on the condition: handy for exact identities."""
    return 0.3 * x + (0.0 if cond is None else float(cond)) * torch.ones_like(x)


# --- guidance combinations ---------------------------------------------------------------------------------


def test_cfg_endpoints():
    c, u = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    torch.testing.assert_close(classifier_free_guidance(c, u, 0.0), u)
    torch.testing.assert_close(classifier_free_guidance(c, u, 1.0), c)
    torch.testing.assert_close(classifier_free_guidance(c, u, 3.0), u + 3 * (c - u))


@pytest.mark.parametrize("name", list(VIEWS))
def test_views_are_invertible_permutations(name):
    view = get_view(name)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(view.inverse(view.forward(x)), x)
    assert torch.equal(view.forward(x).flatten().sort().values, x.flatten().sort().values)


def test_unknown_view_is_refused():
    with pytest.raises(CourseError, match="valid views: identity, rot180"):
        get_view("shear")


def test_anagram_with_the_same_condition_and_identity_view_is_the_model():
    x, t = torch.randn(2, 1, 4, 4), torch.zeros(2, dtype=torch.long)
    model = visual_anagram(linear_model, view="identity")
    torch.testing.assert_close(model(x, t, (1.0, 1.0)), linear_model(x, t, 1.0))
    eps = torch.randn(2, 1, 4, 4)
    torch.testing.assert_close(anagram_combine(eps, eps, get_view("identity")), eps)


def test_anagram_composes_with_guidance():
    """Guiding the anagram model is the anagram, by hand, of guided estimates: ½ (ε_a(x) + V⁻¹ ε_b(V x)), with a
    view that is not its own inverse, so that mapping the second estimate back is what makes them agree."""
    x, t, w = torch.randn(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), 3.0
    view = get_view("rot90")
    model = visual_anagram(linear_model, view=view)
    guided = classifier_free_guidance(model(x, t, (1.0, 2.0)), model(x, t, (0.0, 0.0)), w)
    viewed = x.rot90(1, (-2, -1))
    a = classifier_free_guidance(linear_model(x, t, 1.0), linear_model(x, t, 0.0), w)
    b = classifier_free_guidance(linear_model(viewed, t, 2.0), linear_model(viewed, t, 0.0), w)
    torch.testing.assert_close(guided, 0.5 * (a + b.rot90(-1, (-2, -1))))
    assert not torch.allclose(guided, 0.5 * (a + b)), "the view must matter for this test to mean anything"


def test_hybrid_bands_sum_to_the_signal():
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(low_pass(x, 1.5) + high_pass(x, 1.5), x)
    torch.testing.assert_close(hybrid_combine(x, x, 1.5), x)
    t = torch.zeros(1, dtype=torch.long)
    torch.testing.assert_close(hybrid(linear_model, sigma=1.0)(x, t, (2.0, 2.0)), linear_model(x, t, 2.0))


@pytest.mark.parametrize("sigma", [0.8, 1.5, 3.0])
def test_low_pass_scales_a_cosine_as_a_gaussian_of_its_sigma(sigma):
    """A Gaussian blur of std σ multiplies a cosine of f cycles per pixel by exp(−2π²σ²f²) (away from the edges)."""
    f, n = 1 / 8, 64
    wave = torch.cos(2 * torch.pi * f * torch.arange(n)).expand(1, 1, n, n)
    inside = slice(16, 48)
    blurred, original = low_pass(wave, sigma)[..., inside, inside], wave[..., inside, inside]
    peaks = original.abs() > 0.5  # where the ratio is well defined
    gain = (blurred[peaks] / original[peaks]).mean()
    expected = torch.exp(torch.tensor(-2 * torch.pi**2 * sigma**2 * f**2))
    torch.testing.assert_close(gain, expected, atol=0.01, rtol=0)


def test_hybrid_splits_the_two_estimates_at_its_own_sigma():
    x, t = torch.randn(1, 1, 16, 16), torch.zeros(1, dtype=torch.long)
    pattern = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))

    def model(x, t, cond):  # each condition adds its own amount of a detailed pattern
        return 0.3 * x + float(cond) * pattern

    got = {}
    for sigma in (0.7, 2.0):
        got[sigma] = hybrid(model, sigma=sigma)(x, t, (1.0, -2.0))
        low, high = model(x, t, 1.0), model(x, t, -2.0)
        torch.testing.assert_close(got[sigma], low_pass(low, sigma) + high_pass(high, sigma))
    assert (got[0.7] - got[2.0]).abs().max() > 0.05, "two blurs gave one hybrid: sigma is not reaching the filter"


def test_pairs_and_sigma_are_checked():
    x, t = torch.zeros(1, 1, 4, 4), torch.zeros(1, dtype=torch.long)
    with pytest.raises(CourseError, match="pairs"):
        visual_anagram(linear_model)(x, t, 1.0)
    with pytest.raises(CourseError, match="sigma must be positive"):
        hybrid(linear_model, sigma=0)


# --- masks -------------------------------------------------------------------------------------------------


def test_masks():
    box = box_mask(8, top=4, left=0, height=4, width=8)
    assert box.sum() == 32 and box[:4].sum() == 0
    disc = circle_mask(9, center=(4, 4), radius=2)
    assert disc[4, 4] == 1 and disc[0, 0] == 0 and disc.sum() == 13
    picture = np.zeros((8, 8, 3), dtype=np.uint8)
    picture[2:4, 2:4] = 255
    assert mask_from_image(picture).sum() == 4
    with pytest.raises(CourseError, match="does not lie"):
        box_mask(8, top=9, left=0, height=1, width=1)


@pytest.mark.parametrize("bad", [torch.ones(4, 4), torch.ones(1, 2, 8, 8), torch.full((8, 8), 0.5)])
def test_wrong_masks_are_one_line_errors(bad):
    with pytest.raises(CourseError) as err:
        check_mask(bad, torch.zeros(2, 3, 8, 8))
    assert "\n" not in str(err.value)


# --- editing -----------------------------------------------------------------------------------------------


def test_inpainting_keeps_the_known_region_exactly(den):
    image = torch.rand(3, 1, 8, 8) * 2 - 1
    mask = box_mask(8, top=2, left=2, height=4, width=4)
    out = inpaint(den, image, mask, TIMESTEPS, schedule=den.schedule, generator=torch.Generator().manual_seed(0))
    keep = mask == 0
    assert torch.equal(out[..., keep], image[..., keep])
    assert not torch.allclose(out[..., ~keep], image[..., ~keep])  # the hole was regenerated


def test_sdedit_less_noise_stays_closer(den):
    image = torch.rand(8, 1, 8, 8) * 2 - 1
    far = sdedit(den, image, TIMESTEPS, i_start=1, schedule=den.schedule, generator=torch.Generator().manual_seed(0))
    near = sdedit(den, image, TIMESTEPS, i_start=18, schedule=den.schedule, generator=torch.Generator().manual_seed(0))
    assert psnr_per_image(near, image).mean() > psnr_per_image(far, image).mean() + 3


def test_sdedit_from_the_start_equals_sampling_from_the_noised_image():
    schedule = NoiseSchedule.from_name("linear")
    image = torch.zeros(1, 1, 4, 4)
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = sdedit(linear_model, image, TIMESTEPS, i_start=0, schedule=schedule, generator=gen_a)
    x_T = torch.randn(image.shape, generator=gen_b)  # q_sample of a zero image at t is √(1-ᾱ_t) · noise
    x_t = (1 - schedule.alphas_cumprod[TIMESTEPS[0]]).sqrt() * x_T
    b = ddpm_sample(linear_model, x_t, TIMESTEPS, schedule=schedule, generator=gen_b)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("i_start", [-1, 20, 2.5])
def test_i_start_out_of_range_is_refused(i_start):
    schedule = NoiseSchedule.from_name("linear")
    with pytest.raises(CourseError, match="i_start must be an integer in 0..19"):
        sdedit(linear_model, torch.zeros(1, 1, 4, 4), TIMESTEPS, i_start=i_start, schedule=schedule)


def test_text_guided_sdedit_needs_a_condition():
    with pytest.raises(CourseError, match="needs a condition"):
        text_guided_sdedit(
            linear_model,
            torch.zeros(1, 1, 4, 4),
            TIMESTEPS,
            i_start=3,
            schedule=NoiseSchedule.from_name("linear"),
            cond=None,
        )


# --- measures and studies ----------------------------------------------------------------------------------


def test_diversity_and_psnr_per_image():
    same = torch.ones(4, 1, 3, 3)
    assert diversity(same) == 0.0 and diversity(same[:1]) == 0.0
    assert diversity(torch.randn(4, 1, 3, 3)) > 0.5
    assert psnr_per_image(same, same).shape == (4,)


def test_unknown_technique_and_setting_are_refused(den):
    with pytest.raises(CourseError, match="unknown technique 'morph'; valid techniques: cfg, sdedit"):
        run_study("morph", den)
    with pytest.raises(CourseError, match="cfg study: .*unexpected keyword"):
        run_study("cfg", den, conditions=["1"], stength=3)
    assert set(STUDIES) == {"cfg", "sdedit", "inpaint", "img2img", "anagram", "hybrid"}


def test_cfg_study_measures_adherence_and_diversity(den):
    study = run_study("cfg", den, conditions=["3", "7"], scales=[0.0, 3.0], samples_per_condition=6, steps=10)
    assert study.table["w"] == [0.0, 3.0]
    adherence = study.table["adherence"]
    assert adherence[1].value > adherence[0].value and adherence[1].n == 12 and adherence[1].method == "wilson"
    assert study.table["diversity"][1].value < study.table["diversity"][0].value
    # the paired difference is the same samples' difference, with an interval around it
    gain = study.difference("adherence", {"w": 3.0}, {"w": 0.0})
    assert gain.value == pytest.approx(adherence[1].value - adherence[0].value) and gain.low <= gain.value <= gain.high
    assert study.estimate("adherence", w=3.0) is adherence[1]
    assert study.has(w=3.0) and not study.has(w=7.5)
    with pytest.raises(CourseError, match="0 rows"):
        study.estimate("adherence", w=7.5)
    assert study.images.shape == (4, 1, 8, 8) and len(study.labels) == 4
    text = study.text()
    assert "adherence" in text and f"[{adherence[1].low:.{adherence[1].decimals}f}," in text  # intervals printed
    axes = study.curve().axes[0]
    assert axes.get_xlabel() == "w" and axes.containers  # error bars drawn


def test_inpaint_study_reports_zero_error_in_the_known_region(den):
    image = torch.rand(1, 1, 8, 8) * 2 - 1
    study = run_study(
        "inpaint", den, image=image, masks={"top": box_mask(8, top=0, left=0, height=2, width=8)}, steps=10
    )
    assert study.table["known_region_max_error"] == [0.0]
    with pytest.raises(CourseError, match="valid measures"):
        study.difference("reads_as_lable", {"mask": "top"}, {"mask": "top"})


def test_studies_of_models_without_the_classifier_measure_what_they_can():
    class NoClassifier:
        sample_shape = (3, 8, 8)
        device, dtype = torch.device("cpu"), torch.float32
        schedule = NoiseSchedule.from_name("linear")

        def __call__(self, x, t, cond):
            return linear_model(x, t, cond)

        def condition(self, items):
            return 1.0

        def null_condition(self, n):
            return 0.0

        def noise(self, n, *, generator=None):
            return torch.randn((n, *self.sample_shape), generator=generator)

    study = run_study("anagram", NoClassifier(), pairs=[("a", "b", "rot180")], scales=[2.0], samples=2, steps=5)
    assert study.measures == [] and set(study.table) == {"pair", "w"}
    with pytest.raises(CourseError, match="nothing was measured"):
        study.curve()


def test_cfg_study_runs_with_either_sampler(den):
    ddim = run_study("cfg", den, conditions=["4"], scales=[1.0], samples_per_condition=4, steps=10, update="ddim")
    ddpm = run_study("cfg", den, conditions=["4"], scales=[1.0], samples_per_condition=4, steps=10, update="ddpm")
    assert not torch.equal(ddim.images, ddpm.images)
    with pytest.raises(CourseError, match="valid update rules: ddpm, ddim"):
        run_study("cfg", den, conditions=["4"], scales=[1.0], samples_per_condition=2, steps=5, update="euler")


def test_guidance_branches_run_as_one_batch_with_the_same_result(den):
    from course_utils.sampling.guidance import evaluate_together

    calls = []

    def counting(x, t, cond):
        calls.append(x.shape[0])
        return den(x, t, cond)

    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.full((3,), 400)
    cond, null = den.condition(["1", "2", "3"]), den.null_condition(3)
    together = evaluate_together(counting, [(x, t, cond), (x, t, null)])
    assert calls == [6]  # one call of both branches
    for got, c in zip(together, (cond, null), strict=True):
        torch.testing.assert_close(got, den(x, t, c), atol=1e-5, rtol=1e-5)
    calls.clear()
    pairs = [(x, t, (cond, cond)), (x, t, (null, null))]  # pairs (an anagram's) cannot be concatenated
    evaluate_together(lambda x, t, c: calls.append(x.shape[0]) or x, pairs)
    assert calls == [3, 3]
    calls.clear()
    low, high = evaluate_together(counting, [(x, t, null), (x, t, null)])  # the same call twice runs once
    assert calls == [3] and low is high
    calls.clear()
    scale = torch.tensor([2.0])  # one condition for the whole batch: it broadcasts, it cannot be stacked
    evaluate_together(lambda x, t, c: calls.append(x.shape[0]) or x * c, [(x, t, scale), (x, t, scale + 1)])
    assert calls == [3, 3]


def test_sdedit_study_reads_what_the_edit_keeps(den):
    """With a reader, SDEdit measures how much of the original's reading survives: all of it at the start with the
    least noise on a real digit, less from a start with much noise."""
    from course_utils.data.photos import example_image

    image = example_image(den.sample_shape)
    study = run_study("sdedit", den, images={"digit": image}, levels=[1, 30], samples=12, steps=33, seed=0)
    assert study.measures == ["psnr_db", "kept"]
    noisy, clean = (study.estimate("kept", image="digit", i_start=i) for i in (1, 30))
    assert clean.value == 1.0 and noisy.value < clean.value
    fig = study.curve()  # each measure's panel says what it measures, not its column's name
    assert [ax.get_ylabel() for ax in fig.axes] == ["PSNR to the input (dB)", "share of the input's reading kept"]
    assert [ax.get_xlabel() for ax in fig.axes] == ["i_start", "i_start"]


def test_inpaint_study_reads_the_prompt_it_inpaints_towards(den):
    image = torch.rand(1, 1, 8, 8) * 2 - 1
    mask = {"all": torch.ones(8, 8)}
    study = run_study("inpaint", den, image=image, masks=mask, prompt="3", label="5", samples=8, steps=20, seed=0)
    assert study.measures == ["reads_as_prompt"] and "reads_as_label" not in study.table
    assert study.estimate("reads_as_prompt", mask="all").value >= 0.75  # the whole image is drawn as a 3


def _row_labels(fig, ncols: int) -> list[str]:
    """The y-labels of a grid figure's first column (its row labels)."""
    return [ax.get_ylabel() for ax in fig.axes[::ncols]]


def test_grids_label_their_rows_with_what_the_row_holds(den):
    hybrid_grid = run_study("hybrid", den, pairs=[("3", "8"), ("0", "1")], sigmas=[1.0, 1.5], samples=2, steps=4)
    fig = hybrid_grid.grid()
    assert _row_labels(fig, 4) == [
        "low '3' | high '8'\nσ = 1",
        "low '3' | high '8'\nσ = 1.5",
        "low '0' | high '1'\nσ = 1",
        "low '0' | high '1'\nσ = 1.5",
    ]
    assert [ax.get_title() for ax in fig.axes[:2]] == ["sample", "blurred (σ = 1)"]
    cfg = run_study("cfg", den, conditions=["3", "7"], scales=[0.0, 3.0], samples_per_condition=2, steps=4)
    fig = cfg.grid()
    assert _row_labels(fig, 2) == ["w = 0", "w = 3"]
    assert [ax.get_title() for ax in fig.axes] == ["'3'", "'7'", "", ""]  # the columns' conditions, once
    assert _row_labels(cfg.grid(rows=1), 2) == ["w = 0"]
    with pytest.raises(CourseError, match="2 rows but 3 row labels"):
        image_grid(torch.zeros(4, 1, 8, 8), ncols=2, row_labels=["a", "b", "c"])
