"""Learning-rate schedules (pure functions of the step and the validation history) and
optimizers."""

from __future__ import annotations

import math

import pytest
import torch

from nmt_cli.config import TrainConfig
from nmt_cli.errors import NmtError
from nmt_cli.train.optim import Schedule, make_optimizer


def schedule(**values) -> Schedule:
    cfg = TrainConfig(**values)
    cfg.validate()
    return Schedule(cfg)


def sgd() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)


def test_constant():
    s = schedule(schedule="constant", lr=0.01)
    assert [s.lr(step) for step in (1, 2, 100, 10**6)] == [0.01] * 4
    for score in (1.0, 0.5, 0.5, 0.5, 0.5):  # validations never change it
        s.validated(score)
    assert s.lr(500) == 0.01


def test_constant_with_linear_warmup():
    s = schedule(schedule="constant", lr=0.01, warmup_steps=4)
    assert [s.lr(step) for step in (1, 2, 3, 4, 5, 50)] == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])


def test_plateau_halves_after_patience_bad_validations():
    s = schedule(schedule="plateau", lr=0.01, plateau_factor=0.5, plateau_patience=2, min_lr=1e-5)
    lrs = []
    for score in (10, 12, 11, 12, 9, 8, 13, 13, 13):
        s.validated(score)
        lrs.append(s.lr(1000))
    # 10 best, 12 best, 11 bad(1), 12 bad(2: not better than 12) -> halve, 9 bad(3), 8 bad(4) -> halve,
    # 13 best (counter resets, rate stays), 13 bad(1), 13 bad(2) -> halve
    assert lrs == pytest.approx([0.01, 0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025, 0.0025, 0.00125])
    assert s.bad == 2


def test_plateau_never_goes_below_min_lr():
    s = schedule(schedule="plateau", lr=0.01, plateau_factor=0.5, plateau_patience=1, min_lr=0.002)
    lrs = []
    for _ in range(6):
        s.validated(0.0)  # first one improves on -inf, then never again
        lrs.append(s.lr(10))
    assert lrs == pytest.approx([0.01, 0.005, 0.0025, 0.002, 0.002, 0.002])


def test_plateau_patience_zero_never_reduces():
    s = schedule(schedule="plateau", lr=0.01, plateau_patience=0)
    for _ in range(5):
        s.validated(0.0)
    assert s.lr(10) == 0.01


def test_plateau_with_warmup():
    s = schedule(schedule="plateau", lr=0.01, warmup_steps=10, plateau_patience=1)
    assert s.lr(5) == pytest.approx(0.005)
    s.validated(1.0)
    s.validated(1.0)
    assert s.lr(5) == pytest.approx(0.0025) and s.lr(20) == pytest.approx(0.005)


def test_a_plateau_reduction_never_raises_the_rate():
    """min_lr is a floor for reductions; with lr below it, a "reduction" must not jump
    up to min_lr (or the config must refuse min_lr > lr)."""
    cfg = TrainConfig(schedule="plateau", lr=1e-6, min_lr=1e-5, plateau_patience=1)
    try:
        cfg.validate()
    except NmtError as e:
        assert "min_lr" in str(e)
        return
    s = Schedule(cfg)
    before = s.lr(100)
    s.validated(1.0)
    s.validated(0.5)
    assert s.lr(100) <= before, (before, s.lr(100))


@pytest.mark.parametrize("warmup", [1, 4, 100])
def test_inverse_sqrt_peaks_at_warmup_steps(warmup):
    s = schedule(schedule="inverse_sqrt", lr=0.002, warmup_steps=warmup)
    steps = range(1, 5 * warmup + 2)
    lrs = [s.lr(step) for step in steps]
    assert max(lrs) == pytest.approx(0.002)
    assert lrs.index(max(lrs)) + 1 == warmup
    for step in range(1, warmup + 1):  # linear up
        assert s.lr(step) == pytest.approx(0.002 * step / warmup)
    for step in (warmup, 2 * warmup, 4 * warmup, 100 * warmup):  # then 1/sqrt(step)
        assert s.lr(step) == pytest.approx(0.002 * math.sqrt(warmup / step))
    assert all(a <= b for a, b in zip(lrs[: warmup - 1], lrs[1:warmup]))
    assert all(a >= b for a, b in zip(lrs[warmup - 1 :], lrs[warmup:]))


def test_inverse_sqrt_ignores_validations():
    s = schedule(schedule="inverse_sqrt", lr=0.002, warmup_steps=10, plateau_patience=1)
    before = [s.lr(step) for step in (5, 10, 40)]
    for score in (1.0, 0.0, 0.0, 0.0):
        s.validated(score)
    assert [s.lr(step) for step in (5, 10, 40)] == before


def test_state_round_trips():
    s = schedule(schedule="plateau", lr=0.01, plateau_patience=1)
    for score in (3.0, 2.0, 1.0):
        s.validated(score)
    t = schedule(schedule="plateau", lr=0.01, plateau_patience=1)
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict() and t.lr(7) == s.lr(7)
    s.validated(0.0)
    t.validated(0.0)
    assert t.lr(7) == s.lr(7)
    # plain data, as checkpoints need
    assert all(isinstance(v, (int, float)) for v in s.state_dict().values())


def test_apply_sets_every_group():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias]}], lr=1.0)
    s = schedule(schedule="constant", lr=0.01, warmup_steps=2)
    assert s.apply(optimizer, 1) == pytest.approx(0.005)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.005, 0.005])


@pytest.mark.parametrize(
    "name, kind", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)]
)
def test_make_optimizer(name, kind):
    model = torch.nn.Linear(3, 2)
    cfg = TrainConfig(optimizer=name, lr=0.03, weight_decay=0.01, momentum=0.9)
    optimizer = make_optimizer(cfg, model.parameters())
    assert type(optimizer) is kind
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.03 and group["weight_decay"] == 0.01
    if name == "sgd":
        assert group["momentum"] == 0.9
    before = model.weight.detach().clone()
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, model.weight)


def test_budget_decays_linearly_over_the_share_used_to_min_lr():
    s = schedule(schedule="budget", lr=0.01, min_lr=1e-4, max_steps=100)
    assert [s.lr(step, used) for step, used in [(1, 0.0), (26, 0.25), (51, 0.5), (100, 0.99)]] == pytest.approx(
        [0.01, 0.0075, 0.005, 1e-4]
    )
    assert s.lr(200, 1.5) == pytest.approx(1e-4)  # past the budget (a resumed run with a larger one): the floor
    for score in (1.0, 0.5, 0.5, 0.5):  # validations do not change it
        s.validated(score)
    assert s.lr(51, 0.5) == pytest.approx(0.005)


def test_budget_decay_share_holds_the_lr_then_decays_over_the_rest():
    """decay_share 0.4: lr constant over the first 60% of the budget, then linear to min_lr."""
    s = schedule(schedule="budget", lr=0.01, min_lr=1e-4, max_time="20m", decay_share=0.4)
    assert [s.lr(1, used) for used in (0.0, 0.3, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)] == pytest.approx(
        [0.01, 0.01, 0.01, 0.0075, 0.005, 0.0025, 1e-4, 1e-4]
    )


def test_validations_during_the_budget_hold_do_not_count_against_patience():
    """decay_share 0.5: no improvement while the lr is held is not a bad validation;
    once it decays, each one is."""
    s, opt = schedule(schedule="budget", lr=0.01, max_steps=100, decay_share=0.5), sgd()
    s.apply(opt, 1, 0.0)
    s.validated(30.0)
    for step in range(2, 50):  # up to half the budget: held
        s.apply(opt, step, step / 100)
        s.validated(29.0)
    assert s.bad == 0
    for step in (60, 70, 80):
        s.apply(opt, step, step / 100)
        s.validated(29.0)
    assert s.bad == 3
    s.validated(31.0)
    assert (s.best, s.bad) == (31.0, 0)


def test_a_budget_decaying_from_the_start_counts_every_validation():
    s, opt = schedule(schedule="budget", lr=0.01, max_steps=100), sgd()
    for step in (10, 20, 30):
        s.apply(opt, step, step / 100)
        s.validated(1.0 if step == 10 else 0.5)
    assert s.bad == 2


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_decay_share_must_be_a_share(share):
    with pytest.raises(NmtError, match=r"train.decay_share.*\(0, 1\]"):
        schedule(schedule="budget", lr=0.01, max_steps=10, decay_share=share)


def test_budget_with_warmup():
    s = schedule(schedule="budget", lr=0.01, warmup_steps=10, max_time="20m")
    assert s.lr(5, 0.01) == pytest.approx(0.01 * 0.99 * 0.5)
    assert s.lr(10, 0.5) == pytest.approx(0.005)


def test_budget_needs_a_budget():
    with pytest.raises(NmtError, match="train.schedule.*max_steps, max_epochs or max_time"):
        schedule(schedule="budget", lr=0.01)
