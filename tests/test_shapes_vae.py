"""The shapes VAE: 32×32 images ↔ (4, 8, 8) latents, trained with the course's loop, saved like a Hub VAE."""

import pytest
import torch
from diffusers import AutoencoderKL

from course_utils.data.shapes import make_dataset, split_dataset, to_tensor
from course_utils.errors import CourseError
from course_utils.models.shapes_vae import (
    VAEConfig,
    build_shapes_vae,
    decode,
    encode,
    latent_scaling_factor,
    latent_shape,
    load_shapes_vae,
    reconstruction_psnr,
    save_shapes_vae,
    train_shapes_vae,
    vae_loss,
)
from course_utils.training.loop import TrainConfig

TINY = VAEConfig(block_out_channels=(8, 16, 16), norm_num_groups=4)  # same shapes as the default, ~60 k parameters
TINY_TRAIN = TrainConfig(steps=40, batch_size=8, lr=3e-3, warmup_steps=5, ema_decay=0.8, seed=0)


@pytest.fixture(scope="module")
def data():
    train, held = split_dataset(make_dataset(72, seed=0), held_out_fraction=1 / 9, seed=0)
    return to_tensor(train.images), to_tensor(held.images)


def train_tiny(images, *, seed=0):
    config = TrainConfig(**{**TINY_TRAIN.__dict__, "seed": seed})
    return train_shapes_vae(build_shapes_vae(TINY, seed=seed), images, config=config)


@pytest.fixture(scope="module")
def trained(data):
    return train_tiny(data[0])


def test_latents_are_4x8x8_and_decode_restores_the_image_shape(data):
    vae = build_shapes_vae()
    x = data[0][:5]
    assert isinstance(vae, AutoencoderKL) and latent_shape(vae) == (4, 8, 8)
    assert sum(p.numel() for p in vae.parameters()) < 1.5e6
    z = encode(vae, x)
    assert z.shape == (5, 4, 8, 8)
    y = decode(vae, z)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert encode(vae, x[:0]).shape == (0, 4, 8, 8) and decode(vae, z[:0]).shape == (0, 3, 32, 32)


def test_encode_samples_the_posterior_only_when_asked(data):
    vae = build_shapes_vae(TINY)
    x = data[0][:3]
    assert torch.equal(encode(vae, x), encode(vae, x))
    draw = encode(vae, x, sample=True, generator=torch.Generator().manual_seed(0))
    again = encode(vae, x, sample=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draw, again) and not torch.equal(draw, encode(vae, x))


def test_the_same_seed_builds_the_same_network():
    a, b, c = build_shapes_vae(TINY, seed=0), build_shapes_vae(TINY, seed=0), build_shapes_vae(TINY, seed=1)
    pairs = list(zip(a.parameters(), b.parameters(), c.parameters(), strict=True))
    assert all(torch.equal(p, q) for p, q, _ in pairs)
    assert not all(torch.equal(p, r) for p, _, r in pairs)


def test_training_lowers_the_loss_and_is_reproducible(data, trained):
    ema, losses = trained
    assert len(losses) == TINY_TRAIN.steps
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10
    ema_again, losses_again = train_tiny(data[0])
    assert losses_again == losses
    assert all(torch.equal(p, q) for p, q in zip(ema.parameters(), ema_again.parameters(), strict=True))
    assert ema_again.config.scaling_factor == ema.config.scaling_factor
    _, losses_other = train_tiny(data[0], seed=1)
    assert losses_other != losses


def test_an_interrupted_training_resumes_to_the_same_vae(tmp_path, data):
    """Every random draw goes through fit's checkpointed generator, so a killed `make models` loses nothing."""
    config = TrainConfig(**{**TINY_TRAIN.__dict__, "steps": 30, "checkpoint_every": 10})
    full = TrainConfig(**{**config.__dict__, "checkpoint_dir": str(tmp_path / "full")})
    part = TrainConfig(**{**config.__dict__, "checkpoint_dir": str(tmp_path / "part")})
    ema_full, losses_full = train_shapes_vae(build_shapes_vae(TINY), data[0], config=full)

    dying, calls = build_shapes_vae(TINY), {"n": 0}
    decode_once = dying.decode

    def decode_then_die(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 21:  # during step 21, after the checkpoint at step 20
            raise KeyboardInterrupt
        return decode_once(*args, **kwargs)

    dying.decode = decode_then_die
    with pytest.raises(KeyboardInterrupt):
        train_shapes_vae(dying, data[0], config=part)
    torch.manual_seed(999)  # a fresh process: the global RNG is wherever it is
    ema_resumed, losses_resumed = train_shapes_vae(build_shapes_vae(TINY), data[0], config=part)
    assert losses_resumed == losses_full
    for p, q in zip(ema_full.parameters(), ema_resumed.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_training_improves_held_out_reconstruction(data, trained):
    held = data[1]
    assert reconstruction_psnr(trained[0], held) > reconstruction_psnr(build_shapes_vae(TINY), held) + 3


def test_scaling_factor_gives_training_latents_unit_std(data, trained):
    ema = trained[0]
    assert ema.config.scaling_factor != 1.0  # measured, not the untrained default
    assert abs(encode(ema, data[0]).std().item() - 1) < 1e-3
    assert 0.7 < encode(ema, data[1]).std().item() < 1.4  # held-out latents are on the same scale
    assert latent_scaling_factor(ema, data[0]) == pytest.approx(ema.config.scaling_factor, rel=1e-3)


def test_save_pretrained_round_trip_gives_identical_outputs(tmp_path, data, trained):
    ema = trained[0]
    path = save_shapes_vae(ema, tmp_path / "shapes-vae")
    assert (path / "diffusion_pytorch_model.safetensors").is_file() and not list(path.glob("*.bin"))
    loaded = AutoencoderKL.from_pretrained(path)  # the call that loads a Hub VAE
    assert loaded.config.scaling_factor == ema.config.scaling_factor
    x = data[1]
    z = encode(ema, x)
    assert torch.equal(encode(loaded, x), z)
    assert torch.equal(decode(loaded, z), decode(ema, z))
    assert torch.equal(encode(load_shapes_vae(path), x), z)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.zeros(2, 3, 16, 16), r"\(B, 3, 32, 32\).*got shape \(2, 3, 16, 16\)"),
        (torch.zeros(2, 1, 32, 32), r"got shape \(2, 1, 32, 32\)"),
        (torch.zeros(3, 32, 32), r"got shape \(3, 32, 32\)"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "float images"),
        (torch.full((2, 3, 32, 32), 255.0), r"in \[-1, 1\]"),
    ],
)
def test_bad_images_are_refused_in_one_line(images, message):
    vae = build_shapes_vae(TINY)
    for call in (lambda: encode(vae, images), lambda: reconstruction_psnr(vae, images)):
        with pytest.raises(CourseError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


def test_bad_latents_config_and_paths_are_refused_in_one_line(tmp_path):
    vae = build_shapes_vae(TINY)
    bad = [
        (lambda: decode(vae, torch.zeros(2, 4, 16, 16)), r"\(B, 4, 8, 8\), got shape \(2, 4, 16, 16\)"),
        (lambda: decode(vae, torch.zeros(4, 8, 8)), r"\(B, 4, 8, 8\), got \(4, 8, 8\)"),
        (lambda: VAEConfig(norm_num_groups=5), "must divide"),
        (lambda: VAEConfig(image_size=30), "divisible by 4"),
        (lambda: load_shapes_vae(tmp_path / "missing"), "no VAE at"),
        (lambda: train_shapes_vae(vae, torch.zeros(1, 3, 32, 32), config=TINY_TRAIN), "at least two images"),
    ]
    for call, message in bad:
        with pytest.raises(CourseError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


def test_the_kl_weight_is_what_training_minimises_and_the_loss_returns_both_terms_unweighted(data):
    """``vae_loss`` returns (reconstruction, KL) and takes no weight; ``train_shapes_vae``'s ``kl_weight`` changes
    the training (a weight that does nothing would leave the losses equal)."""
    vae = build_shapes_vae(TINY, seed=0)
    reconstruction, kl = vae_loss(vae, data[0][:4], generator=torch.Generator().manual_seed(0))
    assert reconstruction.ndim == kl.ndim == 0 and float(kl) > 0
    short = TrainConfig(**{**TINY_TRAIN.__dict__, "steps": 3})
    _, without = train_shapes_vae(build_shapes_vae(TINY, seed=0), data[0], config=short, kl_weight=0.0)
    _, weighted = train_shapes_vae(build_shapes_vae(TINY, seed=0), data[0], config=short, kl_weight=0.5)
    assert weighted[0] > without[0], (weighted, without)  # the same first batch, plus half its KL
