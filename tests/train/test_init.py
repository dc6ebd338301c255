"""``nmt train --init CKPT``: a new run from a checkpoint's weights, with a fresh
optimizer, schedule, step count and best score; its checks are one-line errors."""

from __future__ import annotations

import json

import torch
from conftest import assert_ok, assert_one_line_error, run_train, sets

from nmt_cli import checkpoint
from nmt_cli.config import load_recipe
from nmt_cli.info import describe
from nmt_cli.model import saved
from nmt_cli.train import data as prepared_data
from nmt_cli.train import loop


def first_batch(prepped):
    data = prepared_data.load(prepped)
    return data.train.collate(data.train.batches(600, 1, 0, 1)[0])


def test_the_first_step_starts_from_the_checkpoints_model_with_a_fresh_optimizer(
    monkeypatch, trained, prepped, tmp_path
):
    best = trained / "best.pt"
    batch = first_batch(prepped)
    old, _ = saved.load_model(checkpoint.load(best))
    seen = {}
    original = loop.train_step

    def train_step(run, group):
        if not seen:
            run.model.eval()
            with torch.no_grad():
                seen["loss"] = run.model.loss(batch, 0.0)
            run.model.train()
            seen["state"] = (
                run.progress.step,
                run.progress.best_score,
                dict(run.optimizer.state),
                run.schedule.state_dict(),
            )
        return original(run, group)

    monkeypatch.setattr(loop, "train_step", train_step)
    out = tmp_path / "tuned"
    result = run_train(
        prepped, out, "--init", best, *sets("model.dropout=0.3", "train.max_steps=2", "train.valid_every=2")
    )
    assert_ok(result)
    with torch.no_grad():
        expected = old.loss(batch, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(seen["loss"], expected))
    assert seen["state"] == (0, None, {}, {"scale": 1.0, "best": float("-inf"), "bad": 0})
    assert "note: --init: model.dropout 0.2 -> 0.3 (checkpoint's value -> this run's)" in result.stderr
    assert f"weights from {best} (optimizer, schedule, step count and best score start fresh)" in result.stderr
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["init"] == str(best)
    assert load_recipe(out / "config.yaml").model.dropout == 0.3  # the comment naming --init reads as a recipe
    state = checkpoint.load(out / "ckpt-0000002.pt")
    assert state["progress"]["init"] == str(best) == describe(out / "ckpt-0000002.pt")["init"]
    assert state["progress"]["run"] != checkpoint.load(best)["progress"]["run"]  # nmt average keeps them apart


def test_init_and_resume_exclude_each_other(trained, prepped, tmp_path):
    result = run_train(prepped, tmp_path / "m", "--init", trained / "best.pt", "--resume")
    assert_one_line_error(result, "--init starts a new run", "give one or the other")


def test_the_prep_directory_must_hold_the_checkpoints_vocabulary(trained, prepped_separate, tmp_path):
    result = run_train(prepped_separate, tmp_path / "m", "--init", trained / "best.pt")
    assert_one_line_error(result, "its source vocabulary is not the one", f"nmt prep --spm-model {trained}/best.pt")
    assert not (tmp_path / "m").exists()


def test_a_recipe_with_another_network_is_refused_naming_each_setting(trained, prepped, tmp_path):
    result = run_train(prepped, tmp_path / "m", "--init", trained / "best.pt", *sets("model.emb_size=48"))
    assert_one_line_error(result, "model.emb_size 48 (recipe) vs 32 (checkpoint)", "only dropout")


def test_init_needs_a_new_model_directory(trained, prepped):
    result = run_train(prepped, trained, "--init", trained / "best.pt")
    assert_one_line_error(result, "not empty; --init starts a new run: choose another --out")
