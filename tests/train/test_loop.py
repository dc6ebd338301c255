"""The training loop: exact resume, progress, metrics.jsonl, config.yaml and every way a
run stops (max_steps, max_epochs, max_time, patience, a signal)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import (
    TINY_RECIPE,
    TRAINED_SETS,
    TRAINED_STEPS,
    assert_ok,
    run_train,
    sets,
)
from typer.testing import CliRunner

from nmt_cli import checkpoint
from nmt_cli import device as devices
from nmt_cli.cli import app
from nmt_cli.config import apply_overrides, load_recipe
from nmt_cli.train import data as prepared_data
from nmt_cli.train import loop
from nmt_cli.train.loop import train

STOP_AT = 13  # not a multiple of valid_every (10) nor of log_every (5), inside the first epoch
TRAIN_KEYS = {"event", "step", "epoch", "elapsed", "loss", "ppl", "tokens_per_s", "lr"}
VALID_KEYS = {"event", "step", "epoch", "elapsed", "loss", "ppl", "bleu", "chrf", "lr"}


def events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


class Lines:
    """A display for train(): keeps the permanent lines, ignores the live status."""

    def __init__(self):
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def status(self, text: str) -> None:
        pass


def tiny_config(*assignments: str):
    return apply_overrides(load_recipe(TINY_RECIPE), list(assignments))


def assert_same_state(a: dict, b: dict) -> None:
    """Two checkpoints' models, optimizers, schedules and RNG states are bit-identical."""
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for index, state in a["optimizer"]["state"].items():
        other = b["optimizer"]["state"][index]
        assert state.keys() == other.keys()
        for name, value in state.items():
            assert torch.equal(value, other[name]) if isinstance(value, torch.Tensor) else value == other[name], (
                index,
                name,
            )
    assert a["schedule"] == b["schedule"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


# ----------------------------------------------------------------------------- resume


def sigterm_at(monkeypatch, step: int) -> None:
    """Deliver SIGTERM to this process during optimizer step ``step`` (as `kill` would)."""
    original = loop.train_step

    def train_step(run, batches):
        result = original(run, batches)
        if run.progress.step + 1 == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(loop, "train_step", train_step)


@dataclass
class Resumed:
    kind: str  # how the first run stopped: "max_steps" or "sigterm"
    out: Path
    at_stop: dict  # the newest checkpoint after the first run
    first: object  # the first run's CliRunner result


@pytest.fixture(scope="module", params=["max_steps", "sigterm"])
def resumed(request, tmp_path_factory, prepped) -> Resumed:
    """The trained run's recipe stopped at STOP_AT (by max_steps, or by SIGTERM), then
    resumed with --resume up to TRAINED_STEPS."""
    out = tmp_path_factory.mktemp(f"resumed_{request.param}") / "model"
    if request.param == "max_steps":
        first = run_train(prepped, out, *sets(*TRAINED_SETS, f"train.max_steps={STOP_AT}"))
        assert_ok(first)
    else:
        with pytest.MonkeyPatch.context() as monkeypatch:
            sigterm_at(monkeypatch, STOP_AT)
            first = run_train(prepped, out, *sets(*TRAINED_SETS, f"train.max_steps={TRAINED_STEPS}"))
        assert first.exit_code == 130, first.output
    at_stop = checkpoint.load(checkpoint.latest(out))
    assert_ok(run_train(prepped, out, "--resume", *sets(*TRAINED_SETS, f"train.max_steps={TRAINED_STEPS}")))
    return Resumed(request.param, out, at_stop, first)


def test_resume_equals_an_uninterrupted_run(trained, resumed):
    whole = checkpoint.load(trained / f"ckpt-{TRAINED_STEPS:07d}.pt")
    split = checkpoint.load(resumed.out / f"ckpt-{TRAINED_STEPS:07d}.pt")
    assert_same_state(whole, split)
    for key in ("step", "epoch", "batches_done", "validated_step"):
        assert split["progress"][key] == whole["progress"][key], key


def test_the_stop_checkpoint_says_where_training_stood(resumed):
    p = resumed.at_stop["progress"]
    assert p["step"] == STOP_AT
    assert p["epoch"] == 0 and p["batches_done"] == STOP_AT  # one batch a step, inside epoch 1
    assert p["elapsed"] > 0
    if resumed.kind == "sigterm":
        assert p["stop_reason"] == "signal SIGTERM"
        assert p["validated_step"] == 10  # a signal saves at once, without validating
        last = resumed.first.stderr.strip().splitlines()[-1]
        assert "--resume" in last and "checkpoint written" in last
    else:
        assert p["stop_reason"] == f"max_steps {STOP_AT}"
        assert p["validated_step"] == STOP_AT  # the stop validates off the grid


def test_resumed_run_continues_the_metrics(trained, resumed):
    split, whole = events(resumed.out), events(trained)
    steps = [e["step"] for e in split]
    assert steps == sorted(steps)  # appended, continuing: never restarting at step 5
    assert [e["step"] for e in split if e["event"] == "train"] == [5, 10, 15, 20, 25, 30]
    assert {e["step"] for e in split if e["event"] == "valid"} >= {10, 20, 30}
    reference = {(e["event"], e["step"]): e for e in whole}
    for e in split:
        if (e["event"], e["step"]) in reference:
            assert e["epoch"] == reference[e["event"], e["step"]]["epoch"], e
    # the same model validates to the same scores; whole logging windows give the same loss
    for key in [("valid", 20), ("valid", 30), ("train", 20), ("train", 25), ("train", 30)]:
        mine = next(e for e in split if (e["event"], e["step"]) == key)
        for name in ("loss", "ppl", "lr") + (("bleu", "chrf") if key[0] == "valid" else ()):
            assert mine[name] == reference[key][name], (key, name)


def test_resume_writes_the_same_step_checkpoints(trained, resumed):
    assert [s for s, _ in checkpoint.step_checkpoints(resumed.out)] == [
        s for s, _ in checkpoint.step_checkpoints(trained)
    ]
    assert (resumed.out / "best.pt").is_file()


# ----------------------------------------------------------------------------- outputs


def test_metrics_jsonl_events(trained):
    all_events = events(trained)
    train_events = [e for e in all_events if e["event"] == "train"]
    valid_events = [e for e in all_events if e["event"] == "valid"]
    (start,) = [e for e in all_events if e["event"] == "start"]
    assert start["precision"] == "fp32" and start["precision_asked"] == "auto" and start["step"] == 0
    assert 1 + len(train_events) + len(valid_events) == len(all_events)
    assert [e["step"] for e in train_events] == list(range(5, TRAINED_STEPS + 1, 5))
    assert [e["step"] for e in valid_events] == [10, 20, 30]
    for e in train_events:
        assert TRAIN_KEYS <= set(e), e
        assert e["loss"] > 0 and math.isfinite(e["loss"]) and e["tokens_per_s"] > 0 and e["lr"] > 0
        assert e["ppl"] == pytest.approx(math.exp(e["loss"]), rel=1e-6)  # label_smoothing 0 in tiny.yaml
    for e in valid_events:
        assert VALID_KEYS <= set(e), e
        assert 0 <= e["bleu"] <= 100 and 0 <= e["chrf"] <= 100
        assert e["ppl"] == pytest.approx(math.exp(e["loss"]), rel=1e-6)
    assert [e["epoch"] for e in all_events] == sorted(e["epoch"] for e in all_events)
    assert all_events[-1]["epoch"] >= 1
    elapsed = [e["elapsed"] for e in all_events]
    assert elapsed == sorted(elapsed)
    # training learns something in 30 steps
    assert train_events[-1]["loss"] < train_events[0]["loss"]


def test_config_yaml_loads_back_equal(trained, prepped):
    written = load_recipe(trained / "config.yaml")
    expected = tiny_config(*TRAINED_SETS, f"train.max_steps={TRAINED_STEPS}")
    # what `auto` resolved to is written, so that the file says how the run was made
    assert (written.model, written.train) == (expected.model, dataclasses.replace(expected.train, precision="fp32"))
    assert written.model.dropout == 0.2 and written.train.valid_every == 10
    # the data section is the one the prep directory was made with, not the recipe's
    assert dataclasses.asdict(written.data) == json.loads((prepped / "manifest.json").read_text())["options"]


def test_the_recipes_decode_section_travels_in_checkpoints(tmp_path, prepped):
    """What a recipe says about search becomes `nmt translate`'s default for its model."""
    result = run_train(
        prepped, tmp_path / "m", *sets("train.max_steps=2", "train.valid_every=2", "decode.beam=3", "decode.alpha=1.0")
    )
    assert result.exit_code == 0, result.output
    saved = checkpoint.load(tmp_path / "m" / "best.pt")["config"]["decode"]
    assert (saved["beam"], saved["alpha"]) == (3, 1.0)
    assert load_recipe(tmp_path / "m" / "config.yaml").decode.beam == 3


def test_best_hypotheses_are_written(trained, prepped):
    hyps = (trained / "valid.best.hyp").read_text(encoding="utf-8").split("\n")
    refs = prepared_data.load(prepped).valid_refs
    assert len(hyps) == len(refs) + 1 and hyps[-1] == ""  # one line per validation sentence


# ----------------------------------------------------------------------------- stopping


def test_early_stopping_on_patience(tmp_path, prepped):
    """lr so small that nothing changes: the first validation sets the best BLEU, the
    second cannot beat it, and patience 1 stops the run long before max_steps."""
    cfg = tiny_config(
        "train.lr=0.000000001",
        "train.schedule=constant",
        "train.patience=1",
        "train.valid_every=4",
        "train.log_every=2",
        "train.max_steps=200",
    )
    display = Lines()
    progress = train(cfg, prepped, tmp_path / "model", resume=False, device="cpu", display=display)
    assert progress.step == 8
    assert "BLEU" in progress.stop_reason and "1" in progress.stop_reason, progress.stop_reason
    assert not progress.stop_reason.startswith("max_steps")
    valid = [e for e in events(tmp_path / "model") if e["event"] == "valid"]
    assert [e["step"] for e in valid] == [4, 8]
    assert valid[0]["bleu"] == valid[1]["bleu"]
    assert progress.stop_reason in display.lines[-1] and "stopped at step 8" in display.lines[-1]
    assert checkpoint.load(tmp_path / "model" / "ckpt-0000008.pt")["progress"]["step"] == 8


def test_bf16_note_on_a_cpu_where_bf16_is_slow(monkeypatch, tmp_path, prepped):
    monkeypatch.setattr(devices, "bf16_speedup", lambda: 0.5)
    display = Lines()
    train(
        tiny_config("train.precision=bf16", "train.max_steps=1"),
        prepped,
        tmp_path / "model",
        resume=False,
        device="cpu",
        display=display,
    )
    (note,) = [line for line in display.lines if line.startswith("note: bf16")]
    assert "0.50x" in note and "--set train.precision=auto or fp32" in note


@pytest.mark.parametrize("speedup, chosen", [(0.02, "fp32"), (1.19, "fp32"), (2.5, "bf16")])
def test_auto_precision_is_resolved_recorded_and_kept_on_resume(monkeypatch, tmp_path, prepped, speedup, chosen):
    monkeypatch.setattr(devices, "bf16_speedup", lambda shapes: speedup)
    display, out = Lines(), tmp_path / "model"
    train(tiny_config("train.max_steps=2", "train.valid_every=2"), prepped, out, False, "cpu", display)
    assert f"precision auto -> {chosen} (bf16 {speedup:.2f}x fp32 on this CPU)" in _start_line(display)
    assert checkpoint.load(out / "best.pt")["config"]["train"]["precision"] == chosen
    assert [e["precision"] for e in events(out) if e["event"] == "start"] == [chosen]
    # the probe would now answer otherwise: the resumed run keeps its precision, unprobed
    monkeypatch.setattr(devices, "bf16_speedup", lambda shapes: pytest.fail("probed on resume"))
    display = Lines()
    train(tiny_config("train.max_steps=4", "train.valid_every=2"), prepped, out, True, "cpu", display)
    assert f"precision auto -> {chosen} (the precision this run started in)" in _start_line(display)
    assert [e["precision"] for e in events(out) if e["event"] == "start"] == [chosen, chosen]
    assert checkpoint.load(out / "ckpt-0000004.pt")["config"]["train"]["precision"] == chosen


def _start_line(display) -> str:
    return next(line for line in display.lines if line.startswith("training "))


def test_max_epochs_with_accumulation(tmp_path, prepped):
    """accumulate=2: a step is two batches; max_epochs=1 stops after one pass over the data,
    and the stop validates and checkpoints even off the valid_every grid."""
    cfg = tiny_config("train.accumulate=2", "train.max_epochs=1", "train.max_steps=0", "train.valid_every=1000")
    data = prepared_data.load(prepped)
    n_batches = len(data.train.batches(cfg.train.batch_tokens, cfg.train.seed, 0))
    progress = train(cfg, prepped, tmp_path / "model", resume=False, device="cpu")
    assert progress.stop_reason == "max_epochs 1"
    assert progress.step == math.ceil(n_batches / 2)
    assert progress.epoch == 1 and progress.batches_done == 0
    assert progress.validated_step == progress.step
    saved = checkpoint.load(checkpoint.latest(tmp_path / "model"))["progress"]
    assert saved["step"] == progress.step and saved["epoch"] == 1


def test_max_time(tmp_path, prepped):
    cfg = tiny_config("train.max_time=0.3s", "train.max_steps=0", "train.valid_every=100000")
    progress = train(cfg, prepped, tmp_path / "model", resume=False, device="cpu")
    assert progress.stop_reason == "max_time 0.3s"
    assert progress.elapsed >= 0.3 and progress.step >= 1


def test_the_budget_schedule_decays_over_max_steps(tmp_path, prepped):
    """Step k runs at lr (1 - (k-1)/max_steps): the largest share of the budget used wins
    over the (barely used) max_time."""
    cfg = tiny_config(
        "train.schedule=budget",
        "train.max_steps=8",
        "train.max_time=1h",
        "train.log_every=1",
        "train.valid_every=100",
        "train.min_lr=1e-7",
    )
    train(cfg, prepped, tmp_path / "m", resume=False, device="cpu")
    lrs = [e["lr"] for e in events(tmp_path / "m") if e["event"] == "train"]
    assert lrs == pytest.approx([cfg.train.lr * (1 - k / 8) for k in range(8)], rel=1e-3)


def test_the_budget_schedule_decays_over_max_epochs(tmp_path, prepped):
    cfg = tiny_config(
        "train.schedule=budget",
        "train.max_epochs=1",
        "train.max_steps=0",
        "train.log_every=1",
        "train.valid_every=1000",
        "train.min_lr=1e-7",
    )
    n_batches = len(prepared_data.load(prepped).train.batches(cfg.train.batch_tokens, cfg.train.seed, 0))
    train(cfg, prepped, tmp_path / "m", resume=False, device="cpu")
    lrs = [e["lr"] for e in events(tmp_path / "m") if e["event"] == "train"]
    assert lrs == pytest.approx([cfg.train.lr * (1 - k / n_batches) for k in range(n_batches)], rel=1e-3)


def test_max_steps_stops_exactly(tmp_path, prepped):
    progress = train(tiny_config("train.max_steps=3", "train.valid_every=2"), prepped, tmp_path / "m", False, "cpu")
    assert (progress.step, progress.stop_reason) == (3, "max_steps 3")
    assert [e["step"] for e in events(tmp_path / "m") if e["event"] == "valid"] == [2, 3]


def test_resuming_a_finished_run_trains_no_further(tmp_path, prepped):
    cfg = tiny_config("train.max_steps=3", "train.valid_every=3")
    train(cfg, prepped, tmp_path / "m", resume=False, device="cpu")
    before = checkpoint.load(tmp_path / "m" / "ckpt-0000003.pt")
    progress = train(cfg, prepped, tmp_path / "m", resume=True, device="cpu")
    assert progress.step == 3
    assert [s for s, _ in checkpoint.step_checkpoints(tmp_path / "m")] == [3]
    assert_same_state(before, checkpoint.load(checkpoint.latest(tmp_path / "m")))


def test_resuming_after_max_epochs_trains_no_further_epoch(tmp_path, prepped):
    cfg = tiny_config("train.max_epochs=1", "train.max_steps=0", "train.valid_every=1000", "train.batch_tokens=3000")
    first = train(cfg, prepped, tmp_path / "m", resume=False, device="cpu")
    again = train(cfg, prepped, tmp_path / "m", resume=True, device="cpu")
    assert (again.step, again.epoch) == (first.step, first.epoch)


# ----------------------------------------------------------------------------- resume under the recipes' settings

# What the shipped recipes train with (recipes/multi30k_de_en.yaml, recipes/course/scheduled_sampling.yaml),
# scaled to the tiny corpus: full batches of a multiple of 8 sentences, 2 batches a step, word
# dropout, scheduled sampling that decays over the run, and the budget schedule over max_steps
# (held for half of it, then falling: the resumed half crosses the turn).
RECIPE_STEPS, RECIPE_STOP = 16, 7
RECIPE_SETS = (
    "train.batch_multiple=8",
    "train.accumulate=2",
    "model.word_dropout=0.1",
    "model.dropout=0.2",
    "model.emb_dropout=0.2",
    "train.teacher_forcing=0.5",
    "train.teacher_forcing_schedule=linear",
    "train.teacher_forcing_steps=12",
    "train.schedule=budget",
    "train.decay_share=0.5",
    "train.min_lr=1e-5",
    f"train.max_steps={RECIPE_STEPS}",
    "train.valid_every=5",
    "train.log_every=2",
    "train.keep_last=10",
)


def test_resume_is_exact_under_the_recipes_settings(tmp_path, prepped):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert_ok(run_train(prepped, whole, *sets(*RECIPE_SETS)))
    with pytest.MonkeyPatch.context() as monkeypatch:
        sigterm_at(monkeypatch, RECIPE_STOP)  # not max_steps: the budget schedule runs over the whole RECIPE_STEPS
        assert run_train(prepped, split, *sets(*RECIPE_SETS)).exit_code == 130
    assert checkpoint.latest(split) == checkpoint.step_path(split, RECIPE_STOP)
    assert_ok(run_train(prepped, split, "--resume", *sets(*RECIPE_SETS)))
    a, b = (checkpoint.load(checkpoint.step_path(d, RECIPE_STEPS)) for d in (whole, split))
    assert_same_state(a, b)
    for key in ("step", "epoch", "batches_done", "validated_step"):
        assert a["progress"][key] == b["progress"][key], key
    logged = [e for e in events(split) if e["event"] == "train"]
    assert [e["lr"] for e in logged] == [e["lr"] for e in events(whole) if e["event"] == "train"]
    # the settings were in force: sampling, a decaying lr, batches of a multiple of 8 over 2 batches a step
    assert logged[-1]["teacher_forcing"] < 1 and logged[-1]["lr"] < logged[0]["lr"]
    batches = prepared_data.load(prepped).train.batches(600, 1, 0, 8)
    assert all(len(batch) % 8 == 0 for batch in batches[:-1]) and a["progress"]["batches_done"] % 2 == 0


def test_resume_names_each_train_setting_it_changes(tmp_path, prepped):
    out = tmp_path / "m"
    train(tiny_config("train.max_steps=2", "train.valid_every=2"), prepped, out, resume=False, device="cpu")
    display = Lines()
    changed = tiny_config("train.max_steps=4", "train.valid_every=2", "train.lr=0.001")
    train(changed, prepped, out, resume=True, device="cpu", display=display)
    assert [line for line in display.lines if line.startswith("note: --resume")] == [
        "note: --resume: train.lr 0.005 -> 0.001 (checkpoint's value -> this run's)",
        "note: --resume: train.max_steps 2 -> 4 (checkpoint's value -> this run's)",
    ]
    display = Lines()
    train(changed, prepped, out, resume=True, device="cpu", display=display)
    assert not [line for line in display.lines if "--resume" in line]


def test_the_printed_resume_command_goes_on_with_the_runs_own_settings(tmp_path, prepped):
    """Followed literally, the command printed at a SIGTERM resumes with every --set,
    --threads and --device of the run, quoted for the shell."""
    out = tmp_path / "my model"
    with pytest.MonkeyPatch.context() as monkeypatch:
        sigterm_at(monkeypatch, 5)
        first = run_train(
            prepped, out, "--threads", "1", *sets("train.lr=0.001", "train.max_steps=12", "train.valid_every=4")
        )
    assert first.exit_code == 130, first.output
    command = first.stderr.strip().splitlines()[-1].split("continue with: ")[1]
    assert f"--out {shlex.quote(str(out))} " in command and "--threads 1" in command and "--device cpu" in command
    argv = shlex.split(command)
    assert argv[:2] == ["nmt", "train"] and argv.count("--set") == 3 and argv[-1] == "--resume"
    resumed = CliRunner().invoke(app, argv[1:])
    assert_ok(resumed)
    assert "note: --resume" not in resumed.stderr  # nothing differs from the checkpoint's settings
    assert checkpoint.load(checkpoint.latest(out))["progress"]["step"] == 12
