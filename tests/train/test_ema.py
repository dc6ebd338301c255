"""``train.ema``: the moving average of the weights, validated, saved as best.pt's
weights and beside the model's in step checkpoints, resumed exactly."""

from __future__ import annotations

import pytest
import torch
from conftest import TRAINED_SETS, TRAINED_STEPS, assert_ok, run_train, sets, tiny_model_config
from typer.testing import CliRunner

from nmt_cli import checkpoint
from nmt_cli.cli import app
from nmt_cli.info import describe
from nmt_cli.model.seq2seq import Seq2Seq
from nmt_cli.train import loop
from nmt_cli.train.ema import Ema

EMA_SETS = (*TRAINED_SETS, "train.keep_last=5", "train.ema=0.9", f"train.max_steps={TRAINED_STEPS}")


def test_the_average_follows_its_formula_and_the_model_gets_its_weights_back():
    torch.manual_seed(0)
    model = Seq2Seq(tiny_model_config(tie_output=True), 30, 30)
    ema = Ema(model, 0.75)
    expected = {name: p.detach().clone() for name, p in model.named_parameters()}
    for step, d in zip((1, 2, 30), (2 / 11, 3 / 12, 0.75)):  # warm-up: min(0.75, (1 + n) / (10 + n))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(step)
        assert ema.decay_at(step) == pytest.approx(d)
        for name, p in model.named_parameters():
            expected[name] = d * expected[name] + (1 - d) * p.detach()
    own = {name: p.detach().clone() for name, p in model.named_parameters()}
    for name, value in expected.items():
        torch.testing.assert_close(ema.shadow[name], value)
    with ema.applied():
        for name, p in model.named_parameters():
            assert torch.equal(p, ema.shadow[name])
    for name, p in model.named_parameters():
        assert torch.equal(p, own[name])
    weights = ema.weights(model)  # the full state dict, the tied output layer one tensor with the embedding
    assert weights.keys() == model.state_dict().keys()
    assert weights["decoder.output.weight"] is weights["decoder.embedding.weight"]


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory, prepped):
    out = tmp_path_factory.mktemp("ema") / "model"
    assert_ok(run_train(prepped, out, *sets(*EMA_SETS)))
    return out


def test_best_holds_the_average_and_step_checkpoints_hold_both(ema_run):
    best = checkpoint.load(ema_run / "best.pt")
    step = checkpoint.load(checkpoint.step_path(ema_run, best["progress"]["step"]))
    assert "ema" not in best and step["ema"].keys() <= step["model"].keys()
    assert any(not torch.equal(step["ema"][name], step["model"][name]) for name in step["ema"])
    for name, tensor in step["ema"].items():
        assert torch.equal(best["model"][name], tensor), name
    assert best["progress"] == step["progress"]


def test_resuming_an_ema_run_is_exact(ema_run, prepped, tmp_path):
    split = tmp_path / "split"
    assert_ok(run_train(prepped, split, *sets(*EMA_SETS[:-1], "train.max_steps=13")))
    assert_ok(run_train(prepped, split, "--resume", *sets(*EMA_SETS)))
    whole, parted = (checkpoint.load(checkpoint.step_path(d, TRAINED_STEPS)) for d in (ema_run, split))
    for entry in ("model", "ema"):
        for name, tensor in whole[entry].items():
            assert torch.equal(parted[entry][name], tensor), (entry, name)
    for name, tensor in checkpoint.load(ema_run / "best.pt")["model"].items():
        assert torch.equal(checkpoint.load(split / "best.pt")["model"][name], tensor), name


def test_average_info_and_translate_take_an_ema_runs_checkpoints(ema_run, tmp_path):
    averaged = tmp_path / "averaged.pt"
    assert_ok(CliRunner().invoke(app, ["average", str(ema_run), "--last", "2", "-o", str(averaged)]))
    assert describe(ema_run / "best.pt")["config"]["train"]["ema"] == 0.9
    assert describe(ema_run)["best_valid_bleu"] is not None
    text = tmp_path / "in.txt"
    text.write_text("ein hund\n", encoding="utf-8")
    for model in (ema_run / "best.pt", averaged):
        result = CliRunner().invoke(app, ["translate", "-m", str(model), str(text), "--device", "cpu"])
        assert_ok(result)


def test_validation_scores_the_average(monkeypatch, prepped, tmp_path):
    seen = []
    original = loop.validate

    def validate(run):
        seen.append(all(torch.equal(p, run.ema.shadow[name]) for name, p in run.model.named_parameters()))
        return original(run)

    monkeypatch.setattr(loop, "validate", validate)
    assert_ok(run_train(prepped, tmp_path / "m", *sets("train.ema=0.5", "train.max_steps=4", "train.valid_every=2")))
    assert seen == [True, True]
