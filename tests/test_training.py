"""The training loop: loss falls, runs are reproducible, and a killed run resumes where it stopped."""

import pytest
import torch

from course_utils.errors import CourseError
from course_utils.sampling.schedules import NoiseSchedule
from course_utils.training.loop import TrainConfig, train_denoiser


class TinyEps(torch.nn.Module):
    """ε_θ(x_t, t, c) for 2-pixel 'images': a small MLP on (x_t, t/T, c)."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.SiLU(), torch.nn.Linear(64, 2))

    def forward(self, x_t, t, c):
        h = torch.cat([x_t.flatten(1), t[:, None] / 1000, c[:, None].float()], dim=1)
        return self.net(h).view_as(x_t)


def data():
    g = torch.Generator().manual_seed(0)
    c = torch.randint(0, 2, (256,), generator=g)
    x0 = (c[:, None].float() * 1.2 - 0.6 + 0.05 * torch.randn(256, 2, generator=g)).view(256, 1, 1, 2)
    return x0, c


def train(config, model=None):
    torch.manual_seed(123)
    model = model or TinyEps()
    x0, c = data()
    ema, losses = train_denoiser(
        model,
        x0=x0,
        cond=c,
        alphas_cumprod=NoiseSchedule.from_name("linear").alphas_cumprod,
        forward=lambda m, x_t, t, cond: m(x_t, t, cond),
        config=config,
    )
    return ema, losses


def test_loss_falls_and_runs_are_reproducible():
    config = TrainConfig(steps=300, batch_size=64, lr=3e-3, warmup_steps=10, ema_decay=0.9)
    ema_a, losses_a = train(config)
    ema_b, losses_b = train(config)
    assert sum(losses_a[-50:]) / 50 < 0.7 * sum(losses_a[:50]) / 50
    assert losses_a == losses_b
    for p, q in zip(ema_a.parameters(), ema_b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_resume_after_interruption_gives_the_same_model(tmp_path):
    full = TrainConfig(
        steps=120, batch_size=32, warmup_steps=10, checkpoint_every=40, checkpoint_dir=str(tmp_path / "a")
    )
    ema_full, losses_full = train(full)

    # an interrupted run: stop after the checkpoint at step 80 by making step 81 fail
    part = TrainConfig(
        steps=120, batch_size=32, warmup_steps=10, checkpoint_every=40, checkpoint_dir=str(tmp_path / "b")
    )
    calls = {"n": 0}

    class Dies(TinyEps):
        def forward(self, x_t, t, c):
            calls["n"] += 1
            if calls["n"] == 81:
                raise KeyboardInterrupt
            return super().forward(x_t, t, c)

    torch.manual_seed(123)
    dying = Dies()
    with pytest.raises(KeyboardInterrupt):
        train(part, model=dying)
    assert (tmp_path / "b" / "checkpoint.pt").is_file()
    ema_resumed, losses_resumed = train(part)  # a fresh process would start exactly like this
    assert losses_resumed == losses_full
    for p, q in zip(ema_full.parameters(), ema_resumed.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_checkpoint_from_another_configuration_is_refused(tmp_path):
    train(TrainConfig(steps=20, batch_size=8, warmup_steps=2, checkpoint_every=10, checkpoint_dir=str(tmp_path)))
    with pytest.raises(CourseError, match="another configuration"):
        train(TrainConfig(steps=30, batch_size=8, warmup_steps=2, checkpoint_every=10, checkpoint_dir=str(tmp_path)))


@pytest.mark.parametrize(("field", "value"), [("steps", 0), ("lr", 2.0), ("ema_decay", 1.0)])
def test_bad_configuration_is_refused(field, value):
    with pytest.raises(CourseError, match=field):
        TrainConfig(**{field: value})
