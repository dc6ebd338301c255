"""Scheduled sampling (Bengio et al. 2015): the teacher-forcing ratio's schedules, the
decoder's sampled path (ratio 1 is teacher forcing, ratio 0 feeds the model's own greedy
words), and a short `nmt train` run that logs the ratio it used."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import PAD_ID, SOS_ID, assert_ok, make_batch, random_sequences, run_train, sets, tiny_model_config

from nmt_cli.config import TrainConfig
from nmt_cli.errors import NmtError
from nmt_cli.model.loss import token_losses
from nmt_cli.model.seq2seq import Seq2Seq
from nmt_cli.train.scheduled_sampling import teacher_forcing_ratio

SRC_VOCAB, TGT_VOCAB = 31, 23
MODELS = [
    pytest.param(
        dict(attention=attention, cell=cell, input_feeding=feeding, decoder_layers=2, **extra),
        id=f"{attention}-{cell}-{'feed' if feeding else 'nofeed'}",
    )
    for attention, extra in (
        ("bahdanau", {}),
        ("luong_general", {}),
        ("luong_dot", {}),
        ("luong_local_m", {"window": 2}),
        ("luong_local", {"window": 2}),
    )
    for cell in ("gru", "lstm")
    for feeding in (True, False)
]


def cfg(schedule: str, floor: float, steps: int) -> TrainConfig:
    c = TrainConfig(teacher_forcing=floor, teacher_forcing_schedule=schedule, teacher_forcing_steps=steps)
    c.validate()
    return c


# ============================================================================ the schedules


def test_defaults_are_plain_teacher_forcing():
    c = TrainConfig()
    assert (c.teacher_forcing, c.teacher_forcing_schedule) == (1.0, "constant")
    assert all(teacher_forcing_ratio(c, s) == 1.0 for s in (0, 1, 10**6))


@pytest.mark.parametrize("schedule", ["constant", "linear", "inverse_sigmoid"])
def test_a_floor_of_one_is_teacher_forcing_under_every_schedule(schedule):
    c = cfg(schedule, 1.0, 50)
    assert all(teacher_forcing_ratio(c, s) == 1.0 for s in range(0, 500, 7))


def test_constant_is_the_floor_from_the_first_step():
    c = cfg("constant", 0.6, 100)
    assert all(teacher_forcing_ratio(c, s) == 0.6 for s in (0, 1, 99, 100, 10**7))


@pytest.mark.parametrize(
    "step, want",
    [(0, 1.0), (1, 0.9925), (25, 0.8125), (50, 0.625), (99, 0.2575), (100, 0.25), (101, 0.25), (10**6, 0.25)],
)
def test_linear_falls_from_one_to_the_floor_in_n_steps(step, want):
    """r = max(floor, 1 - (1 - floor) s / N), floor 0.25, N 100."""
    assert teacher_forcing_ratio(cfg("linear", 0.25, 100), step) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("step", [0, 1, 50, 100, 200, 461, 1000, 5000])
def test_inverse_sigmoid_follows_its_formula(step):
    """r = floor + (1 - floor) k / (k + exp(s / k)), floor 0.2, k 100."""
    k, floor = 100, 0.2
    want = floor + (1 - floor) * k / (k + math.exp(step / k))
    assert teacher_forcing_ratio(cfg("inverse_sigmoid", floor, k), step) == pytest.approx(want, rel=1e-12)


def test_inverse_sigmoid_starts_near_one_and_is_halfway_at_k_ln_k():
    k, floor = 100, 0.2
    c = cfg("inverse_sigmoid", floor, k)
    assert teacher_forcing_ratio(c, 0) == pytest.approx(floor + (1 - floor) * k / (k + 1))
    assert teacher_forcing_ratio(c, 0) > 0.99
    assert teacher_forcing_ratio(c, round(k * math.log(k))) == pytest.approx(floor + (1 - floor) / 2, abs=2e-3)


def test_inverse_sigmoid_does_not_overflow_far_into_training():
    c = cfg("inverse_sigmoid", 0.3, 1)
    assert teacher_forcing_ratio(c, 10**9) == pytest.approx(0.3)


@pytest.mark.parametrize(
    "schedule, floor, n",
    [
        ("linear", 0.5, 10),
        ("linear", 0.0, 300),
        ("inverse_sigmoid", 0.5, 10),
        ("inverse_sigmoid", 0.0, 300),
        ("constant", 0.4, 10),
    ],
)
def test_every_schedule_is_non_increasing_and_stays_at_or_above_the_floor(schedule, floor, n):
    c = cfg(schedule, floor, n)
    ratios = [teacher_forcing_ratio(c, s) for s in range(0, 20 * n)]
    assert all(a >= b for a, b in zip(ratios, ratios[1:]))
    assert all(floor <= r <= 1.0 for r in ratios)
    assert ratios[-1] == pytest.approx(floor, abs=1e-3)  # reaches the floor in the end
    if schedule != "constant":
        assert ratios[0] > 0.9  # starts near plain teacher forcing


@pytest.mark.parametrize(
    "assignment, fragment",
    [
        (dict(teacher_forcing=1.5), "train.teacher_forcing must be in [0, 1]"),
        (dict(teacher_forcing=-0.1), "train.teacher_forcing must be in [0, 1]"),
        (dict(teacher_forcing_steps=0), "train.teacher_forcing_steps must be >= 1"),
    ],
)
def test_config_ranges(assignment, fragment):
    with pytest.raises(NmtError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        TrainConfig(**assignment).validate()


# ============================================================================ the sampled path


def build(seed: int = 0, **overrides) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(tiny_model_config(**overrides), SRC_VOCAB, TGT_VOCAB).eval()


def batch_of(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    src = random_sequences(4, SRC_VOCAB, 2, 8, g)
    tgt = random_sequences(4, TGT_VOCAB, 1, 9, g)
    return make_batch(src, tgt)


def test_ratio_one_is_the_default_path_exactly():
    model = build()
    batch = batch_of()
    with torch.no_grad():
        default = model(batch.src, batch.src_lengths, batch.tgt_in)
        explicit = model(batch.src, batch.src_lengths, batch.tgt_in, teacher_forcing=1.0)
    assert torch.equal(default, explicit)


@pytest.mark.parametrize("overrides", MODELS)
def test_sampled_with_ratio_one_is_teacher_forcing(overrides):
    """The step-by-step sampled path computes the same model as forward()."""
    model = build(**overrides)
    batch = batch_of()
    with torch.no_grad():
        want = model(batch.src, batch.src_lengths, batch.tgt_in)
        memory, state, feed = model.encode(batch.src, batch.src_lengths)
        got = model.decoder.sampled(batch.tgt_in, memory, state, feed, 1.0)
    assert got.shape == want.shape == (*batch.tgt_in.shape, TGT_VOCAB)
    assert torch.allclose(got, want, atol=1e-6, rtol=0), (got - want).abs().max()


@pytest.mark.parametrize("overrides", MODELS)
def test_sampled_with_ratio_zero_feeds_the_models_own_argmax(overrides):
    """Ratio 0: the scores of step t are those of a decoder run by hand that feeds the
    previous step's best word (never PAD or SOS), whatever the reference says."""
    model = build(**overrides)
    batch = batch_of()
    dec = model.decoder
    with torch.no_grad():
        memory, state, feed = model.encode(batch.src, batch.src_lengths)
        got = dec.sampled(batch.tgt_in, memory, state, feed, 0.0)
        prev, want = batch.tgt_in[:, 0], []
        for t in range(batch.tgt_in.size(1)):
            att, state, _ = dec.step(dec.embed(prev), state, feed, memory, t)
            feed = att if feed is not None else None
            logits = dec.logits(att)
            want.append(logits)
            masked = logits.clone()
            masked[:, PAD_ID] = masked[:, SOS_ID] = float("-inf")
            prev = masked.argmax(-1)
        want = torch.stack(want, dim=1)
        tgt_in = torch.randint(4, TGT_VOCAB, batch.tgt_in.shape, generator=torch.Generator().manual_seed(7))
        tgt_in[:, 0] = SOS_ID  # another reference of the same shape changes nothing
        memory, state, feed = model.encode(batch.src, batch.src_lengths)
        got_other = dec.sampled(tgt_in, memory, state, feed, 0.0)
    assert torch.equal(got, got_other)
    assert torch.allclose(got, want, atol=1e-6, rtol=0)
    teacher = model(batch.src, batch.src_lengths, batch.tgt_in)
    assert torch.allclose(got[:, 0], teacher[:, 0], atol=1e-6)  # step 0 always reads SOS
    assert not torch.allclose(got, teacher, atol=1e-3)  # and later steps read other words


def test_a_ratio_in_between_mixes_reference_and_own_words():
    """Ratio 0.5 differs from both extremes, and the same seed gives the same draws."""
    model = build()
    batch = batch_of()
    with torch.no_grad():
        run = lambda ratio: model(batch.src, batch.src_lengths, batch.tgt_in, teacher_forcing=ratio)  # noqa: E731
        teacher, own = run(1.0), run(0.0)
        torch.manual_seed(3)
        half = run(0.5)
        torch.manual_seed(3)
        again = run(0.5)
    assert torch.equal(half, again)
    assert not torch.allclose(half, teacher) and not torch.allclose(half, own)


@pytest.mark.parametrize("attention", ["bahdanau", "luong_general"])
@pytest.mark.parametrize("feeding", [True, False])
def test_sampled_path_trains(attention, feeding):
    torch.manual_seed(0)
    model = Seq2Seq(
        tiny_model_config(attention=attention, input_feeding=feeding, dropout=0.1, emb_dropout=0.1),
        SRC_VOCAB,
        TGT_VOCAB,
    ).train()
    batch = batch_of()
    logits = model(batch.src, batch.src_lengths, batch.tgt_in, teacher_forcing=0.5)
    loss, _ = token_losses(logits, batch.tgt_out, 0.1)
    (loss / batch.tokens).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("ratio", [1.0, 0.5, 0.0])
def test_sampled_scores_are_not_overwritten_with_minus_inf(ratio):
    model = build()
    batch = batch_of()
    with torch.no_grad():
        memory, state, feed = model.encode(batch.src, batch.src_lengths)
        got = model.decoder.sampled(batch.tgt_in, memory, state, feed, ratio)
        loss, nll = token_losses(got, batch.tgt_out, 0.1)
    assert bool(torch.isfinite(got).all())
    assert math.isfinite(loss.item()) and math.isfinite(nll.item())
    if ratio == 1.0:
        assert torch.allclose(got, model(batch.src, batch.src_lengths, batch.tgt_in), atol=1e-6, rtol=0)


def test_sampled_scores_are_finite_under_bf16_autocast():
    """Where .float() copies, the bug above does not show: the loss is finite."""
    model = build()
    batch = batch_of()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = model(batch.src, batch.src_lengths, batch.tgt_in, teacher_forcing=0.5)
    assert got.dtype == torch.bfloat16
    assert bool(torch.isfinite(got).all())
    assert math.isfinite(token_losses(got, batch.tgt_out, 0.1)[0].item())


# ============================================================================ nmt train


def train_events(out):
    lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == "train"]


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory, prepped):
    """20 steps of `nmt train` with the ratio falling linearly from 1 to 0.5 over 10 steps."""
    out = tmp_path_factory.mktemp("scheduled") / "model"
    result = run_train(
        prepped,
        out,
        *sets(
            "train.teacher_forcing=0.5",
            "train.teacher_forcing_schedule=linear",
            "train.teacher_forcing_steps=10",
            "train.max_steps=20",
            "train.log_every=2",
            "train.valid_every=20",
        ),
    )
    assert_ok(result)
    return out


def test_train_logs_the_linear_schedule(sampled_run):
    events = train_events(sampled_run)
    assert [e["step"] for e in events] == list(range(2, 21, 2))
    ratios = [e["teacher_forcing"] for e in events]
    # the ratio of the last step in each window: step s (1-based) ran at 0-based step s - 1
    assert ratios == pytest.approx([max(0.5, 1 - 0.5 * (s - 1) / 10) for s in range(2, 21, 2)])
    assert ratios[0] > ratios[1] > ratios[2] > 0.5
    assert all(a >= b for a, b in zip(ratios, ratios[1:]))
    assert ratios[-4:] == [0.5] * 4


def test_scheduled_sampling_run_validates_and_saves_finite_weights(sampled_run):
    from nmt_cli import checkpoint

    lines = (sampled_run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    valid = [e for e in map(json.loads, lines) if e["event"] == "valid"]
    assert [e["step"] for e in valid] == [20] and math.isfinite(valid[0]["loss"])  # validation: teacher forcing
    payload = checkpoint.load(sampled_run / "best.pt")
    assert payload["config"]["train"]["teacher_forcing_schedule"] == "linear"
    assert all(bool(torch.isfinite(t).all()) for t in payload["model"].values())


def test_scheduled_sampling_run_logs_finite_losses(sampled_run):
    assert all(math.isfinite(e["loss"]) and math.isfinite(e["ppl"]) for e in train_events(sampled_run))


def test_plain_training_logs_a_ratio_of_one(trained):
    events = train_events(trained)
    assert events and all(e["teacher_forcing"] == 1.0 for e in events)
