"""The course U-Net (``course_utils.models.course_unet``): every block's shapes, parity of the ResBlock and the
attention with diffusers' own when the weights are copied across, the three CS180 networks, saving and loading,
devices and dtypes, parameter counts, and a short training run that learns."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import Timesteps, get_timestep_embedding
from diffusers.models.resnet import ResnetBlock2D

from course_utils.data.digits import load_digits_split
from course_utils.errors import CourseError
from course_utils.models.course_unet import (
    Conv,
    ConvBlock,
    CourseUNet,
    CrossAttention,
    DownBlock,
    DownConv,
    FCBlock,
    Flatten,
    ResBlock,
    SelfAttention,
    Unflatten,
    UpBlock,
    UpConv,
    class_vectors,
    drop_classes,
    multi_head_attention,
    parameters_per_block,
    sinusoidal_embedding,
)
from course_utils.sampling.diffusion import q_sample
from course_utils.sampling.schedules import alphas_cumprod, make_betas
from course_utils.sd.anatomy import feature_map_shapes
from course_utils.training.loop import TrainConfig, train_denoiser


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tensors of 8×8 images: one thread is fastest, and several spin against each other on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# the three networks of CS180 part B (single-step denoiser, time-, class-conditioned), and attention on top
NETWORKS = {
    "denoiser": dict(time_embedding=None),
    "time": dict(time_embedding="scalar"),
    "class": dict(time_embedding="scalar", num_classes=10),
    "attention": dict(time_embedding="sinusoidal", num_classes=10, attention=True, cross_attention_dim=12),
}


def randomise(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Perturb every parameter (GroupNorm's scale and shift included), so copied weights are all exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return module


def inputs(name: str, *, batch: int = 3, side: int = 8, channels: int = 1, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    config = NETWORKS[name]
    args: dict = {"sample": torch.randn(batch, channels, side, side, generator=g)}
    if config["time_embedding"] is not None:
        args["timestep"] = torch.randint(0, 300, (batch,), generator=g)
    if config.get("num_classes"):
        args["class_labels"] = torch.randint(0, 11, (batch,), generator=g)  # 10 = no class
    if config.get("cross_attention_dim"):
        args["encoder_hidden_states"] = torch.randn(batch, 5, config["cross_attention_dim"], generator=g)
    return args


# ---- blocks: shapes --------------------------------------------------------------------------------------------

BLOCKS = {
    "Conv": (lambda: Conv(1, 16), [(2, 1, 8, 8)], (2, 16, 8, 8)),
    "DownConv": (lambda: DownConv(16, 32), [(2, 16, 8, 8)], (2, 32, 4, 4)),
    "UpConv": (lambda: UpConv(32, 16), [(2, 32, 4, 4)], (2, 16, 8, 8)),
    "Flatten 2×2": (lambda: Flatten(2), [(2, 32, 2, 2)], (2, 32, 1, 1)),
    "Flatten 7×7": (lambda: Flatten(7), [(2, 32, 7, 7)], (2, 32, 1, 1)),
    "Unflatten 2×2": (lambda: Unflatten(32, 2), [(2, 32, 1, 1)], (2, 32, 2, 2)),
    "Unflatten 7×7": (lambda: Unflatten(32, 7), [(2, 32, 1, 1)], (2, 32, 7, 7)),
    "ConvBlock": (lambda: ConvBlock(1, 16), [(2, 1, 8, 8)], (2, 16, 8, 8)),
    "DownBlock": (lambda: DownBlock(DownConv(16, 32), ConvBlock(32, 32)), [(2, 16, 4, 4)], (2, 32, 2, 2)),
    "UpBlock": (lambda: UpBlock(UpConv(64, 16), ConvBlock(16, 16)), [(2, 64, 2, 2)], (2, 16, 4, 4)),
    "DownBlock with ResBlock": (
        lambda: DownBlock(DownConv(16, 32), ResBlock(32, 32, emb_dim=24)),
        [(2, 16, 8, 8), (2, 24)],
        (2, 32, 4, 4),
    ),
    "FCBlock": (lambda: FCBlock(10, 64), [(2, 10)], (2, 64)),
    "ResBlock": (lambda: ResBlock(16, 32, emb_dim=24), [(2, 16, 4, 4), (2, 24)], (2, 32, 4, 4)),
    "ResBlock unconditioned": (lambda: ResBlock(16, 16), [(2, 16, 4, 4)], (2, 16, 4, 4)),
    "SelfAttention": (lambda: SelfAttention(32, heads=4), [(2, 32, 4, 4)], (2, 32, 4, 4)),
    "CrossAttention": (lambda: CrossAttention(32, 12, heads=4), [(2, 32, 2, 2), (2, 5, 12)], (2, 32, 2, 2)),
}


@pytest.mark.parametrize("name", list(BLOCKS))
def test_each_block_gives_its_documented_shape(name: str) -> None:
    make, shapes, expected = BLOCKS[name]
    args = [torch.randn(*s) for s in shapes]
    assert tuple(make()(*args).shape) == expected


def test_multi_head_attention_averages_the_values_it_attends_to() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 4, 8, generator=g), torch.randn(2, 6, 8, generator=g), torch.randn(2, 6, 8, generator=g)
    out = multi_head_attention(q, k, v, heads=2)
    assert out.shape == (2, 4, 8)
    torch.testing.assert_close(
        out,
        torch.nn.functional.scaled_dot_product_attention(
            q.view(2, 4, 2, 4).transpose(1, 2), k.view(2, 6, 2, 4).transpose(1, 2), v.view(2, 6, 2, 4).transpose(1, 2)
        )
        .transpose(1, 2)
        .reshape(2, 4, 8),
    )
    # one key repeated: every query gets exactly its value
    same = multi_head_attention(q, k[:, :1].expand(2, 6, 8), v[:, :1].expand(2, 6, 8), heads=2)
    torch.testing.assert_close(same, v[:, :1].expand(2, 4, 8))


# ---- parity with diffusers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [torch.tensor([0, 1, 17, 299]), torch.tensor([999.0, 0.5, 250.25])])
@pytest.mark.parametrize("dim", [8, 32, 64])
def test_sinusoidal_embedding_equals_diffusers(t: torch.Tensor, dim: int) -> None:
    ours = sinusoidal_embedding(t, dim)
    assert ours.shape == (t.shape[0], dim)
    torch.testing.assert_close(ours, get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0))
    torch.testing.assert_close(ours, Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)(t))  # UNet2DModel's
    zero = sinusoidal_embedding(torch.tensor([0]), dim)[0]  # cos 0 = 1, sin 0 = 0
    torch.testing.assert_close(zero, torch.cat([torch.ones(dim // 2), torch.zeros(dim // 2)]))


def test_sinusoidal_embedding_refuses_odd_widths_and_batched_shapes() -> None:
    with pytest.raises(CourseError, match="even"):
        sinusoidal_embedding(torch.tensor([1]), 7)
    with pytest.raises(CourseError, match=r"\(B,\)"):
        sinusoidal_embedding(torch.tensor([[1, 2]]), 8)


RESBLOCKS = {  # (in, out, emb_dim, groups, groups_out)
    "same channels": (32, 32, 128, 8, 8),
    "more channels (1×1 shortcut)": (32, 64, 128, 8, 8),
    "1-channel input": (1, 16, 64, 1, 8),
    "unconditioned": (16, 16, None, 4, 4),
}


@pytest.mark.parametrize("case", list(RESBLOCKS))
def test_resblock_equals_diffusers_resnetblock2d_with_its_weights(case: str) -> None:
    cin, cout, emb_dim, groups, groups_out = RESBLOCKS[case]
    torch.manual_seed(1)
    theirs = randomise(
        ResnetBlock2D(
            in_channels=cin, out_channels=cout, temb_channels=emb_dim, groups=groups, groups_out=groups_out, eps=1e-5
        ),
        seed=2,
    )
    ours = ResBlock(cin, cout, emb_dim=emb_dim, groups=groups, groups_out=groups_out)
    ours.load_state_dict(theirs.state_dict())  # strict: the same layers under the same names
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, cin, 4, 4, generator=g)
    emb = torch.randn(4, emb_dim, generator=g) if emb_dim else None
    torch.testing.assert_close(ours(x, emb), theirs(x, emb))
    if emb_dim:  # the embedding is read: another one changes the output
        assert not torch.allclose(ours(x, emb), ours(x, emb + 1))


def test_resblock_refuses_a_missing_or_unexpected_embedding() -> None:
    with pytest.raises(CourseError, match="embedding"):
        ResBlock(8, 8, emb_dim=4)(torch.randn(1, 8, 2, 2))
    with pytest.raises(CourseError, match="embedding"):
        ResBlock(8, 8)(torch.randn(1, 8, 2, 2), torch.randn(1, 4))


@pytest.mark.parametrize(("channels", "heads", "side"), [(32, 4, 4), (64, 2, 2), (16, 1, 8)])
def test_self_attention_equals_diffusers_attention_with_its_weights(channels: int, heads: int, side: int) -> None:
    torch.manual_seed(4)
    theirs = Attention(
        channels, heads=heads, dim_head=channels // heads, norm_num_groups=8, residual_connection=True, bias=True
    )
    theirs = randomise(theirs, seed=5)
    ours = SelfAttention(channels, heads=heads, groups=8)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(3, channels, side, side, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize(("channels", "context_dim", "heads", "tokens"), [(32, 12, 4, 5), (64, 64, 8, 32)])
def test_cross_attention_equals_diffusers_attention_with_its_weights(
    channels: int, context_dim: int, heads: int, tokens: int
) -> None:
    torch.manual_seed(7)
    theirs = Attention(
        channels,
        cross_attention_dim=context_dim,
        heads=heads,
        dim_head=channels // heads,
        norm_num_groups=8,
        residual_connection=True,
        bias=True,
    )
    theirs = randomise(theirs, seed=8)
    ours = CrossAttention(channels, context_dim, heads=heads, groups=8)
    ours.load_state_dict(theirs.state_dict())
    g = torch.Generator().manual_seed(9)
    x, context = torch.randn(3, channels, 4, 4, generator=g), torch.randn(3, tokens, context_dim, generator=g)
    out = ours(x, context)
    torch.testing.assert_close(out, theirs(x, encoder_hidden_states=context))
    assert not torch.allclose(out, ours(x, context.flip(1).roll(1, dims=2)))  # the context is read


# ---- the network -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block_type", ["cs180", "resnet"])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_configuration_maps_images_to_images(name: str, block_type: str) -> None:
    torch.manual_seed(0)
    model = CourseUNet(block_type=block_type, **NETWORKS[name]).eval()
    args = inputs(name)
    out = model(**args).sample
    assert out.shape == (3, 1, 8, 8)
    assert torch.isfinite(out).all()
    assert model(**args, return_dict=False)[0].shape == (3, 1, 8, 8)


@pytest.mark.parametrize(("side", "channels"), [(28, 1), (32, 3)])
def test_mnist_and_cifar_sizes(side: int, channels: int) -> None:
    """CS180's own 28×28 (a 7×7 bottleneck) and CIFAR-10's 3×32×32 (8×8)."""
    model = CourseUNet(in_channels=channels, out_channels=channels, sample_size=side, num_hiddens=16)
    args = inputs("time", side=side, channels=channels)
    assert model(**args).sample.shape == (3, channels, side, side)


@pytest.mark.parametrize("block_type", ["cs180", "resnet"])
def test_conditions_are_read_and_the_zero_vector_is_no_class(block_type: str) -> None:
    torch.manual_seed(0)
    model = randomise(CourseUNet(block_type=block_type, **NETWORKS["class"]), seed=1).eval()
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([10, 200])
    out = model(x, t, torch.tensor([3, 10])).sample
    torch.testing.assert_close(out, model(x, t, class_vectors(torch.tensor([3, 10]), num_classes=10)).sample)
    torch.testing.assert_close(out, model(x, t, torch.stack([torch.eye(10)[3], torch.zeros(10)])).sample)
    assert not torch.allclose(out[:1], model(x[:1], t[:1], torch.tensor([4])).sample)  # another class
    assert not torch.allclose(out[1:], model(x[1:], t[1:], torch.tensor([3])).sample)  # no class ≠ a class
    assert not torch.allclose(out, model(x, t + 50, torch.tensor([3, 10])).sample)  # another timestep


def test_one_timestep_for_the_batch_equals_one_per_image() -> None:
    model = CourseUNet().eval()
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(model(x, 42).sample, model(x, torch.full((3,), 42)).sample)


BAD = {
    "timestep for the single-step denoiser": (dict(time_embedding=None), dict(timestep=3), "no time input"),
    "no timestep": (dict(), dict(), "pass timestep"),
    "classes for an unconditional network": (dict(), dict(timestep=3, class_labels=torch.zeros(3).long()), "no class"),
    "no classes": (dict(num_classes=10), dict(timestep=3), "pass class_labels"),
    "class out of range": (dict(num_classes=10), dict(timestep=3, class_labels=torch.tensor([0, 1, 11])), "0..10"),
    "context without cross-attention": (dict(), dict(timestep=3, encoder_hidden_states=torch.zeros(3, 2, 4)), "ctx"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_the_network_refuses_inputs_it_would_ignore_or_lack(case: str) -> None:
    config, call, message = BAD[case]
    model = CourseUNet(**config)
    with pytest.raises(CourseError, match=message):
        model(torch.zeros(3, 1, 8, 8), **call)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (dict(block_type="unet"), "valid block_types: cs180, resnet"),
        (dict(time_embedding="fourier"), "valid time_embeddings: None, scalar, sinusoidal"),
        (dict(sample_size=10), "multiple of 4"),
        (dict(num_hiddens=20), "multiple of norm_num_groups"),
    ],
)
def test_bad_configurations_name_the_valid_ones(config: dict, message: str) -> None:
    with pytest.raises(CourseError, match=message):
        CourseUNet(**config)


@pytest.mark.parametrize("block_type", ["cs180", "resnet"])
def test_save_pretrained_and_from_pretrained_round_trip(tmp_path, monkeypatch, block_type: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = {**NETWORKS["attention"], "block_type": block_type, "num_hiddens": 16}
    model = randomise(CourseUNet(**config), seed=3).eval()
    model.save_pretrained(tmp_path / "unet", safe_serialization=True)
    assert sorted(p.name for p in (tmp_path / "unet").iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    loaded = CourseUNet.from_pretrained(tmp_path / "unet").eval()
    assert {k: loaded.config[k] for k in config} == config
    for (name, p), (_, q) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(p, q), name
    args = inputs("attention")
    torch.testing.assert_close(loaded(**args).sample, model(**args).sample, rtol=0, atol=0)


@pytest.mark.parametrize("block_type", ["cs180", "resnet"])
def test_the_network_follows_its_device_and_dtype(block_type: str) -> None:
    """No tensor is made on a fixed device or in a fixed dtype: on the meta device (no data, any device's code
    path) and in float64 the forward pass runs and stays there."""
    args = inputs("attention")
    args["class_labels"] = class_vectors(args["class_labels"], num_classes=10)
    model = CourseUNet(block_type=block_type, **NETWORKS["attention"])
    meta = model.to("meta")(**{k: v.to("meta") for k, v in args.items()}).sample
    assert meta.device.type == "meta" and meta.shape == (3, 1, 8, 8)
    model = CourseUNet(block_type=block_type, **NETWORKS["attention"]).double()
    double = model(**{k: v.double() if v.is_floating_point() else v for k, v in args.items()}).sample
    assert double.dtype == torch.float64


def test_parameters_per_block_counts_every_parameter_once() -> None:
    model = CourseUNet(block_type="cs180", num_hiddens=16, **NETWORKS["attention"])
    counts = parameters_per_block(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert sum(n for name, n in counts.items() if name != "total") == counts["total"]
    d = 16
    conv = lambda cin, cout: cin * cout * 9 + cout + 2 * cout  # noqa: E731 - 3×3 conv and its GroupNorm
    assert counts["conv_in"] == conv(1, d) + conv(d, d)
    attention = 2 * 2 * d + 4 * ((2 * d) ** 2 + 2 * d)  # GroupNorm + q, k, v, out at 2D channels
    cross = 2 * 2 * d + 2 * ((2 * d) ** 2 + 2 * d) + 2 * (12 * 2 * d + 2 * d)  # q, out from 2D; k, v from 12
    assert counts["attend_mid"] == attention + cross
    assert "flatten" not in counts  # no parameters: AvgPool and GELU
    resnet = parameters_per_block(CourseUNet(block_type="resnet", num_hiddens=16))
    assert resnet["time_mlp"] == (d * 4 * d + 4 * d) + (4 * d * 4 * d + 4 * d)  # FCBlock(τ: D → 4D)


def test_class_vectors_and_label_dropout() -> None:
    c = class_vectors(torch.tensor([0, 9, 10]), num_classes=10)
    torch.testing.assert_close(c, torch.stack([torch.eye(10)[0], torch.eye(10)[9], torch.zeros(10)]))
    many = class_vectors(torch.arange(10).repeat(400), num_classes=10)
    dropped = drop_classes(many, p_uncond=0.1, generator=torch.Generator().manual_seed(0))
    share = float((dropped.sum(1) == 0).float().mean())
    assert 0.085 < share < 0.115  # 4,000 rows: p = 0.1 ± 3 standard errors
    kept = dropped.sum(1) == 1
    torch.testing.assert_close(dropped[kept], many[kept])
    with pytest.raises(CourseError, match=r"\[0, 1\]"):
        drop_classes(many, p_uncond=1.5)


def test_a_few_hundred_steps_of_eps_prediction_lower_the_held_out_loss() -> None:
    """Ho et al. 2020's loss on the digits through the course's loop: the trained network's held-out ε-loss is well
    below the untrained one's (about 1: an untrained network's output is unrelated to ε)."""
    torch.manual_seed(0)
    digits = load_digits_split()
    abar = alphas_cumprod(make_betas("linear", 300))  # CS180's T = 300
    model = CourseUNet(num_hiddens=16, time_embedding="sinusoidal", num_train_timesteps=300)

    def held_out_loss(net: torch.nn.Module) -> float:
        g = torch.Generator().manual_seed(1)
        x0 = digits.x_test
        t = torch.randint(0, 300, (x0.shape[0],), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(net(q_sample(x0, t, eps, alphas_cumprod=abar), t).sample, eps))

    before = held_out_loss(model.eval())
    ema, losses = train_denoiser(
        model,
        x0=digits.x_train,
        cond=digits.y_train,
        alphas_cumprod=abar,
        forward=lambda net, x_t, t, c: net(x_t, t).sample,
        config=TrainConfig(steps=200, batch_size=32, lr=3e-3, warmup_steps=20, ema_decay=0.9),
    )
    after = held_out_loss(model.eval())
    assert len(losses) == 200
    assert before > 0.8, before
    assert after < 0.5 * before, (before, after)
    assert held_out_loss(ema) < 0.6 * before


def test_feature_map_shapes_pass_the_class_labels_a_class_conditioned_unet_needs() -> None:
    model = CourseUNet(num_hiddens=16, num_classes=10, attention=True, cross_attention_dim=8)
    inputs = dict(
        sample=torch.zeros(2, 1, 8, 8), timestep=torch.tensor([3, 4]), encoder_hidden_states=torch.zeros(2, 5, 8)
    )
    with pytest.raises(CourseError, match="pass class_labels"):
        feature_map_shapes(model, **inputs)
    rows = {r.name: r for r in feature_map_shapes(model, **inputs, class_labels=torch.tensor([1, 2]))}
    assert rows["down2"].output == (2, 32, 2, 2)  # 2D channels at the 2×2 bottleneck
    assert rows["flatten"].output == (2, 32, 1, 1)
    assert rows["conv_out"].output == (2, 1, 8, 8)
