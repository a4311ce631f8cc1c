"""The training loop: loss falls, runs are reproducible, a killed run resumes where it stopped (and only runs the
steps that are left), checkpoints are committed by a rename and pruned afterwards, another configuration is refused,
and accelerate's save/load hooks can keep only part of a model."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from course_utils.errors import CourseError
from course_utils.sampling.schedules import NoiseSchedule
from course_utils.training.checkpoints import checkpoint_folders, latest_checkpoint, read_progress
from course_utils.training.loop import TrainConfig, ema_decay_at, loss_weights, lr_factor, train_denoiser, v_target

pytestmark = pytest.mark.usefixtures("one_thread")


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


def train(config, model=None, **kwargs):
    torch.manual_seed(123)
    model = model or TinyEps()
    x0, c = data()
    return train_denoiser(
        model,
        x0=x0,
        cond=c,
        alphas_cumprod=NoiseSchedule.from_name("linear").alphas_cumprod,
        forward=lambda m, x_t, t, cond: m(x_t, t, cond),
        config=config,
        **kwargs,
    )


def config_in(folder, **changes):
    settings = {"steps": 60, "batch_size": 16, "warmup_steps": 5, "checkpoint_every": 10, "checkpoint_dir": str(folder)}
    return TrainConfig(**{**settings, **changes})


class Dies(TinyEps):
    """Raises during forward call ``at`` (that is, during step ``at``), as a kill would stop it."""

    def __init__(self, at):
        super().__init__()
        self.calls, self.at = 0, at

    def forward(self, x_t, t, c):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return super().forward(x_t, t, c)


def interrupted(folder, at, **changes):
    """A run in ``folder`` killed during step ``at``."""
    torch.manual_seed(123)
    with pytest.raises(KeyboardInterrupt):
        train(config_in(folder, **changes), model=Dies(at))


def assert_same_weights(a, b):
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_loss_falls_and_runs_are_reproducible():
    config = TrainConfig(steps=300, batch_size=64, lr=3e-3, warmup_steps=10, ema_decay=0.9)
    ema_a, losses_a = train(config)
    ema_b, losses_b = train(config)
    assert sum(losses_a[-50:]) / 50 < 0.7 * sum(losses_a[:50]) / 50
    assert losses_a == losses_b
    assert_same_weights(ema_a, ema_b)
    _, losses_c = train(TrainConfig(steps=300, batch_size=64, lr=3e-3, warmup_steps=10, ema_decay=0.9, seed=1))
    assert losses_c != losses_a


def test_resume_runs_only_the_remaining_steps_and_gives_the_same_bytes(tmp_path):
    ema_full, losses_full = train(config_in(tmp_path / "full"))
    interrupted(tmp_path / "part", at=35)  # checkpoints at 10, 20, 30; step 35 never finishes
    assert read_progress(tmp_path / "part").step == 30
    torch.manual_seed(999)  # a fresh process: the global RNG is wherever it is
    ema_resumed, losses_resumed = train(config_in(tmp_path / "part"))
    assert losses_resumed == losses_full
    assert_same_weights(ema_full, ema_resumed)
    # the resumed session ran steps 31..60 only, counted by its own loop
    runs = read_progress(tmp_path / "part").runs
    assert [(r["from"], r["steps"]) for r in runs] == [(0, 30), (30, 30)]
    assert [(r["from"], r["steps"]) for r in read_progress(tmp_path / "full").runs] == [(0, 60)]


def test_a_kill_during_a_save_leaves_the_previous_checkpoint_as_the_latest(tmp_path):
    ema_full, _ = train(config_in(tmp_path / "full"))
    part = tmp_path / "part"
    interrupted(part, at=35)
    # as if killed while writing checkpoint-40: a half-written .tmp folder (no loop_state.json, torn weights)
    torn = part / "checkpoint-40.tmp"
    shutil.copytree(part / "checkpoint-30", torn)
    (torn / "loop_state.json").unlink()
    (torn / "model.safetensors").write_bytes(b"torn")
    # and a folder someone renamed by hand without its state file
    (part / "checkpoint-50").mkdir()
    assert latest_checkpoint(part).name == "checkpoint-30"
    ema_resumed, _ = train(config_in(part))
    assert_same_weights(ema_full, ema_resumed)
    assert not torn.exists()


def test_the_total_limit_prunes_old_checkpoints_after_the_new_one_is_committed(tmp_path):
    train(config_in(tmp_path, steps=50, checkpoints_total_limit=2))
    assert [p.name for p in checkpoint_folders(tmp_path)] == ["checkpoint-40", "checkpoint-50"]
    assert not list(tmp_path.glob("*.tmp"))
    files = {p.name for p in (tmp_path / "checkpoint-50").iterdir()}
    assert {"model.safetensors", "optimizer.bin", "scheduler.bin", "ema.safetensors", "loop_state.json"} <= files
    train(config_in(tmp_path / "all", steps=50, checkpoints_total_limit=None))
    assert len(checkpoint_folders(tmp_path / "all")) == 5


def test_checkpoint_from_another_configuration_is_refused(tmp_path):
    train(config_in(tmp_path, steps=20))
    with pytest.raises(CourseError, match=r"another configuration \(steps 20 → 30\)"):
        train(config_in(tmp_path, steps=30))
    with pytest.raises(CourseError, match="another configuration.*recipe"):
        train(config_in(tmp_path, steps=20), signature={"recipe": "other"})

    class Wider(TinyEps):
        def __init__(self):
            super().__init__()
            self.net[0] = torch.nn.Linear(4, 65)
            self.net[2] = torch.nn.Linear(65, 2)

    with pytest.raises(CourseError, match="another configuration.*parameters"):
        train(config_in(tmp_path, steps=20), model=Wider())
    # what only decides when to stop or what to keep may change
    train(config_in(tmp_path, steps=20, checkpoint_every=5, checkpoints_total_limit=1, max_seconds=100.0))


def test_the_time_budget_stops_after_a_checkpoint_and_adds_up_over_sessions(tmp_path):
    budget = 0.05
    train(config_in(tmp_path, steps=100_000, max_seconds=budget, checkpoint_every=100_000))
    first = read_progress(tmp_path)
    assert 0 < first.step < 100_000 and first.seconds >= budget
    assert first.path.name == f"checkpoint-{first.step}"
    train(config_in(tmp_path, steps=100_000, max_seconds=budget, checkpoint_every=100_000))  # spent: nothing runs
    assert read_progress(tmp_path).step == first.step
    train(config_in(tmp_path, steps=100_000, max_seconds=2 * budget, checkpoint_every=100_000))
    second = read_progress(tmp_path)
    assert second.step > first.step and second.seconds >= 2 * budget
    assert [r["from"] for r in second.runs] == [0, first.step]


def test_save_and_load_hooks_can_keep_only_the_trained_part(tmp_path):
    """Fine-tuning an adapter: only the trained layer goes into the checkpoint, and resuming is still exact."""

    def frozen_first_layer():
        model = TinyEps()
        model.net[0].requires_grad_(False)
        return model

    def accelerator_with_hooks():
        accelerator = Accelerator()

        def save_trained(models, weights, output_dir):
            trained = {k: v for k, v in weights.pop().items() if k.startswith("net.2.")}
            save_file(trained, str(Path(output_dir) / "adapter.safetensors"))

        def load_trained(models, input_dir):
            models.pop().load_state_dict(load_file(str(Path(input_dir) / "adapter.safetensors")), strict=False)

        accelerator.register_save_state_pre_hook(save_trained)
        accelerator.register_load_state_pre_hook(load_trained)
        return accelerator

    torch.manual_seed(123)
    ema_full, _ = train(config_in(tmp_path / "full"), model=frozen_first_layer(), accelerator=accelerator_with_hooks())
    torch.manual_seed(123)
    dying = Dies(at=35)
    dying.net[0].requires_grad_(False)
    with pytest.raises(KeyboardInterrupt):
        train(config_in(tmp_path / "part"), model=dying, accelerator=accelerator_with_hooks())
    saved = {p.name for p in (tmp_path / "part" / "checkpoint-30").iterdir()}
    assert "adapter.safetensors" in saved and "model.safetensors" not in saved
    torch.manual_seed(123)  # the frozen base comes from where it always comes from (a pretrained model)
    ema_resumed, _ = train(
        config_in(tmp_path / "part"), model=frozen_first_layer(), accelerator=accelerator_with_hooks()
    )
    assert_same_weights(ema_full, ema_resumed)


def test_the_schedules_and_weights():
    config = TrainConfig(steps=1000, warmup_steps=100)
    assert lr_factor(0, config) == pytest.approx(0.01) and lr_factor(99, config) == pytest.approx(1.0)
    assert lr_factor(999, config) == pytest.approx(0.1, abs=1e-4)
    constant = TrainConfig(steps=1000, warmup_steps=0, lr_schedule="constant")
    assert {lr_factor(s, constant) for s in (0, 500, 999)} == {1.0}
    warm = TrainConfig(ema_decay=0.999, ema_warmup=True)
    assert ema_decay_at(0, warm) == pytest.approx(0.1) and ema_decay_at(10**6, warm) == 0.999
    assert ema_decay_at(0, TrainConfig(ema_decay=0.99)) == 0.99
    abar = NoiseSchedule.from_name("linear").alphas_cumprod
    t = torch.tensor([0, 500, 999])
    snr = abar[t] / (1 - abar[t])
    torch.testing.assert_close(loss_weights(t, abar, gamma=5.0), snr.clamp(max=5) / snr)
    assert loss_weights(t, abar, gamma=5.0, prediction_type="v_prediction")[0] == pytest.approx(5 / (snr[0] + 1))
    x0, eps = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    v = v_target(x0, t, eps, alphas_cumprod=abar)  # x_0 = √ᾱ x_t − √(1−ᾱ) v (Salimans & Ho 2022)
    x_t = abar[t].sqrt().view(-1, 1, 1, 1) * x0 + (1 - abar[t]).sqrt().view(-1, 1, 1, 1) * eps
    torch.testing.assert_close(abar[t].sqrt().view(-1, 1, 1, 1) * x_t - (1 - abar[t]).sqrt().view(-1, 1, 1, 1) * v, x0)


def test_checkpoint_state_is_plain_json(tmp_path):
    train(config_in(tmp_path, steps=20))
    state = json.loads((tmp_path / "checkpoint-20" / "loop_state.json").read_text())
    assert state["step"] == 20 and len(state["losses"]) == 20 and state["fingerprint"]["steps"] == 20


@pytest.mark.parametrize(
    ("field", "value"),
    [("steps", 0), ("lr", 2.0), ("ema_decay", 1.0), ("lr_schedule", "step"), ("max_seconds", 0.0)],
)
def test_bad_configuration_is_refused(field, value):
    with pytest.raises(CourseError, match=field):
        TrainConfig(**{field: value})
