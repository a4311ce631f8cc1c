"""Inside a text-to-image U-Net: parameters per block, feature-map shapes from forward hooks, and cross-attention
maps recorded by a diffusers attention processor that leaves the U-Net's output unchanged (the tiny random
shapes-sd for the mechanics, the committed model for what it attends to)."""

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from course_utils.course.paths import MODELS_DIR
from course_utils.data.shapes import Scene, ShapeSpec, caption, make_dataset, object_masks
from course_utils.errors import CourseError
from course_utils.sd.anatomy import block_parameters, feature_map_shapes, format_rows
from course_utils.sd.attention_maps import (
    attention_mass_study,
    capture_cross_attention,
    cross_attention_layers,
    downsample_mask,
    mass_share,
    record_cross_attention,
    token_maps,
    upsample_maps,
    word_positions,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread

PROMPT = "a large red circle left of a small red square on a grey background"


@pytest.fixture(scope="module")
def committed():
    pipe = DiffusionPipeline.from_pretrained(MODELS_DIR / "shapes-sd")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def tiny(tiny_shapes_sd_path):
    pipe = DiffusionPipeline.from_pretrained(tiny_shapes_sd_path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def unet_inputs(pipe, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = pipe.unet.config
    sample = torch.randn(batch, c.in_channels, c.sample_size, c.sample_size, generator=g)
    text = torch.randn(batch, pipe.tokenizer.model_max_length, c.cross_attention_dim, generator=g)
    return sample, torch.tensor(500), text


# ---------------------------------------------------------------------------------------------- anatomy


@pytest.mark.parametrize("which", ["tiny", "committed"])
def test_block_parameters_sum_to_the_model_and_name_real_submodules(which, request):
    unet = request.getfixturevalue(which).unet
    rows = block_parameters(unet)
    assert sum(r.parameters for r in rows) == sum(p.numel() for p in unet.parameters())
    assert abs(sum(r.share for r in rows) - 1) < 1e-9
    names = [r.name for r in rows]
    assert names[:3] == ["conv_in", "time_proj", "time_embedding"] and "mid_block" in names
    assert {f"down_blocks.{i}" for i in range(len(unet.down_blocks))} <= set(names)
    for r in rows:
        assert r.parameters == sum(p.numel() for p in unet.get_submodule(r.name).parameters())
    assert "down_blocks.0" in format_rows([r.row() for r in rows])


def test_feature_map_shapes_trace_the_u(committed):
    unet = committed.unet
    sample, t, text = unet_inputs(committed)
    shapes = {r.name: r for r in feature_map_shapes(unet, sample=sample, timestep=t, encoder_hidden_states=text)}
    order = list(shapes)
    assert order.index("conv_in") < order.index("down_blocks.0") < order.index("mid_block") < order.index("up_blocks.0")
    assert shapes["conv_out"].output == tuple(sample.shape)
    channels = unet.config.block_out_channels
    assert shapes["conv_in"].output == (2, channels[0], 8, 8)
    assert shapes["down_blocks.0"].output == (2, channels[0], 4, 4)  # downsampled
    assert shapes["down_blocks.0"].skips == ((2, channels[0], 8, 8), (2, channels[0], 4, 4))
    assert shapes["mid_block"].inputs[0] == shapes["mid_block"].output == (2, channels[1], 4, 4)
    assert shapes["up_blocks.0"].output == (2, channels[1], 8, 8)  # upsampled back
    assert (2, 32, unet.config.cross_attention_dim) in shapes["up_blocks.1"].inputs  # the text it attends to
    assert all(not m._forward_hooks for m in unet.modules())  # hooks removed


# ---------------------------------------------------------------------------------------------- the processor


def test_recording_leaves_the_unet_output_unchanged_and_restores_the_processors(committed):
    unet = committed.unet
    sample, t, text = unet_inputs(committed)
    before = unet.attn_processors
    default = unet(sample, t, encoder_hidden_states=text).sample
    with record_cross_attention(unet) as store:
        recorded = unet(sample, t, encoder_hidden_states=text).sample
    assert torch.equal(recorded, default)
    assert unet.attn_processors == before
    assert sorted(store) == sorted(cross_attention_layers(unet)) and len(store) == 4
    for name, calls in store.items():
        (probs,) = calls  # one U-Net call
        heads = unet.get_submodule(name).heads
        assert probs.shape[:2] == (2, heads) and probs.shape[-1] == 32
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))


def test_recorded_probabilities_are_softmax_of_queries_and_keys(committed):
    """An independent computation: the layer's inputs caught by a pre-hook, Q = W_Q x and K = W_K c split into
    heads by hand, softmax(Q Kᵀ / √d)."""
    unet = committed.unet
    sample, t, text = unet_inputs(committed)
    name = "mid_block.attentions.0.transformer_blocks.0.attn2"
    attn = unet.get_submodule(name)
    caught = {}

    def pre(module, args, kwargs):
        caught["x"], caught["c"] = args[0] if args else kwargs["hidden_states"], kwargs["encoder_hidden_states"]

    handle = attn.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        with record_cross_attention(unet) as store:
            unet(sample, t, encoder_hidden_states=text)
    finally:
        handle.remove()
    b, n, _ = caught["x"].shape
    q = attn.to_q(caught["x"]).reshape(b, n, attn.heads, -1).transpose(1, 2)  # (B, heads, H·W, d)
    k = attn.to_k(caught["c"]).reshape(b, 32, attn.heads, -1).transpose(1, 2)  # (B, heads, tokens, d)
    expected = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
    torch.testing.assert_close(store[name][0], expected.detach(), atol=1e-6, rtol=1e-5)


def test_conditional_half_keeps_the_conditional_prompts_of_a_guided_batch(tiny):
    unet = tiny.unet
    sample, t, text = unet_inputs(tiny, batch=2, seed=3)
    with record_cross_attention(unet, conditional_half=True) as guided:
        unet(torch.cat([sample, sample]), t, encoder_hidden_states=torch.cat([torch.zeros_like(text), text]))
    with record_cross_attention(unet) as alone:
        unet(sample, t, encoder_hidden_states=text)
    for name in alone:
        assert guided[name][0].shape == alone[name][0].shape
        torch.testing.assert_close(guided[name][0], alone[name][0], atol=1e-5, rtol=1e-4)
    with record_cross_attention(unet, conditional_half=True), pytest.raises(CourseError, match="even batch"):
        unet(sample[:1], t, encoder_hidden_states=text[:1])


# ---------------------------------------------------------------------------------------------- the maps


def test_capture_records_every_step_and_samples_the_same_pictures(committed):
    prompts = [PROMPT, "a small blue plus at the top on a black background"]
    images, maps = capture_cross_attention(committed, prompts, seed=5, num_inference_steps=3, guidance_scale=7.5)
    plain = committed(
        prompt=prompts,
        num_inference_steps=3,
        guidance_scale=7.5,
        generator=[torch.Generator("cpu").manual_seed(5 + i) for i in range(2)],
        output_type="pt",
    ).images
    torch.testing.assert_close(images, plain * 2 - 1, atol=0, rtol=0)
    assert maps.resolutions == [(8, 8), (4, 4)]
    assert len(maps.layers_at((8, 8))) == 3 and maps.layers_at((4, 4)) == [
        "mid_block.attentions.0.transformer_blocks.0.attn2"
    ]
    for name, probs in maps.probs.items():
        h, w = maps.sizes[name]
        assert probs.shape == (3, 2, 4, h * w, 32)  # (steps, batch, heads, H·W, tokens), the conditional half
    assert maps.tokens[0][1:5] == ["a</w>", "large</w>", "red</w>", "circle</w>"]
    assert len(maps.timesteps) == 3
    per_token = token_maps(maps)
    assert per_token.shape == (2, 32, 8, 8)
    torch.testing.assert_close(per_token.sum(1), torch.ones(2, 8, 8))
    assert token_maps(maps, size=(4, 4)).shape == (2, 32, 4, 4)
    first = token_maps(maps, steps=[0])
    manual = torch.stack([maps.probs[n][0] for n in maps.layers_at((8, 8))]).mean(dim=(0, 2))  # layers, heads
    torch.testing.assert_close(first, manual.transpose(1, 2).reshape(2, 32, 8, 8))
    with pytest.raises(CourseError, match="different resolutions"):
        token_maps(maps, layers=maps.layers)
    with pytest.raises(CourseError, match="no cross-attention layer works at"):
        token_maps(maps, size=(2, 2))
    big = upsample_maps(per_token)
    assert big.shape == (2, 32, 32, 32) and torch.equal(big[..., ::4, ::4], per_token)


def test_word_positions_tell_the_two_objects_words_apart():
    scene = Scene.pair(ShapeSpec("circle", "red", "large"), ShapeSpec("square", "red", "small"), relation="left of")
    tokens = ["<|startoftext|>", *(w + "</w>" for w in caption(scene).split()), "<|endoftext|>"]
    assert caption(scene) == PROMPT
    assert word_positions(scene, tokens) == {(0, "colour"): 3, (0, "shape"): 4, (1, "colour"): 9, (1, "shape"): 10}
    partial = ["<|startoftext|>", *(w + "</w>" for w in caption(scene, omit=["colour"]).split())]
    assert word_positions(scene, partial) == {(0, "shape"): 3, (1, "colour"): 8, (1, "shape"): 9}
    other = Scene((ShapeSpec("plus", "blue", "small"),))
    with pytest.raises(CourseError, match="1 objects but 2 shape words"):
        word_positions(other, tokens)


def test_mass_share_is_chance_for_an_even_map_and_one_inside():
    scene = Scene((ShapeSpec("square", "green", "large", "left"),), "grey")
    mask = torch.from_numpy(object_masks(scene))[0]
    small = downsample_mask(mask, (8, 8))
    assert small.shape == (8, 8) and abs(float(small.mean()) - float(mask.mean())) < 1e-6
    even = torch.ones(8, 8)
    assert float(mass_share(even, small)) == pytest.approx(float(small.mean()))
    inside = (small > 0.99).float()
    assert float(mass_share(inside, small)) == pytest.approx(1.0)
    rng = torch.Generator().manual_seed(0)
    a = torch.rand(8, 8, generator=rng)
    # the share at the latent resolution equals the share of the nearest-neighbour upsampled map in the full mask
    assert float(mass_share(a, small)) == pytest.approx(float(mass_share(upsample_maps(a), mask)), rel=1e-5)
    with pytest.raises(CourseError, match="differ in shape"):
        mass_share(a, mask)
    with pytest.raises(CourseError, match="does not divide"):
        downsample_mask(mask, (5, 5))


def test_the_committed_models_shape_words_attend_to_their_objects(committed):
    """On held-out scenes the mid block's (4×4) map of a shape word holds more of its mass inside the object than
    the object's area fraction: the lift's 95 % interval lies above 1."""
    data = make_dataset(10, seed=2027)
    study = attention_mass_study(committed, data, num_inference_steps=6)
    kinds = {(r["resolution"], r["kind"]) for r in study.rows}
    assert kinds == {("8×8", "colour"), ("8×8", "shape"), ("4×4", "colour"), ("4×4", "shape")}
    assert all(0 <= r["share"] <= 1 and 0 < r["chance"] < 0.2 for r in study.rows)
    two = sum(len(s.objects) == 2 for s in data.scenes)
    assert len(study.select(resolution="4×4", kind="shape")) == (10 - two) + 4 * two
    lift = study.estimates(resolution="4×4", kind="shape", objects=1, word_object=0, mask_object=0)["lift"]
    assert lift.low > 1, lift
    assert study.images.shape == (10, 3, 32, 32)
    assert {row["case"] for row in study.table()} >= {"one object", "2 objects: word 1 in object 2"}
    with pytest.raises(CourseError, match="not both"):
        attention_mass_study(committed, data, n=3)
    np.testing.assert_allclose(  # scene i's picture and maps do not depend on the others (up to batched rounding)
        [r["share"] for r in attention_mass_study(committed, data.subset([0, 1]), num_inference_steps=6).rows],
        [r["share"] for r in study.rows if r["scene"] < 2],
        rtol=1e-4,
    )


def test_token_map_grid_shows_the_words(committed):
    import matplotlib

    matplotlib.use("Agg")
    from course_utils.plotting import token_map_grid

    images, maps = capture_cross_attention(committed, [PROMPT], num_inference_steps=2)
    fig = token_map_grid(images[0], token_maps(maps)[0], maps.tokens[0], ncols=5, title=PROMPT)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0] == "picture" and len(titles) == 1 + len(PROMPT.split())
    assert [t.split(" (")[0] for t in titles[1:]] == PROMPT.split()
    with pytest.raises(CourseError, match="no token"):
        token_map_grid(images[0], token_maps(maps)[0], maps.tokens[0], show=[])
