"""`nmt train` on the command line: a successful run's output, and every mistake a user
can make with a recipe, a flag, --data, --out or --resume: one line, exit code 2."""

from __future__ import annotations

import json
import math
import shutil
import warnings

import pytest
import torch
from conftest import (
    TINY_RECIPE,
    assert_ok,
    assert_one_line_error,
    run_train,
    sets,
)
from typer.testing import CliRunner

from nmt_cli import checkpoint
from nmt_cli.cli import app


def metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def test_a_short_run_reports_on_stderr_only(tmp_path, prepped):
    out = tmp_path / "model"
    result = run_train(prepped, out, *sets("train.max_steps=4", "train.valid_every=2", "train.log_every=2"))
    assert_ok(result)
    assert result.stdout == ""  # stdout carries data in pipelines, never progress
    lines = result.stderr.splitlines()
    assert "parameters" in lines[0] and "training pairs" in lines[0]
    assert "stopped at step 4 (max_steps 4)" in lines[-1]
    assert [s for s, _ in checkpoint.step_checkpoints(out)] == [2, 4]


@pytest.mark.parametrize(
    "assignments",
    [
        pytest.param(
            ["model.share_embeddings=true", "model.tie_output=true", "model.word_dropout=0.2"],
            id="share+tie+word_dropout",
        ),
        pytest.param(
            [
                "model.cell=lstm",
                "model.attention=luong_dot",
                "model.input_feeding=false",
                "model.encoder_layers=2",
                "model.decoder_layers=2",
                "model.bridge=false",
            ],
            id="lstm-luong_dot",
        ),
        pytest.param(
            [
                "train.precision=bf16",
                "train.optimizer=adamw",
                "train.schedule=inverse_sqrt",
                "train.warmup_steps=2",
                "train.label_smoothing=0.1",
            ],
            id="bf16-adamw-inverse_sqrt",
        ),
        pytest.param(
            ["train.optimizer=sgd", "train.momentum=0.9", "train.accumulate=2", "train.clip_norm=0"],
            id="sgd-accumulate",
        ),
    ],
)
def test_other_settings_train(tmp_path, prepped, assignments):
    out = tmp_path / "model"
    assert_ok(run_train(prepped, out, *sets("train.max_steps=3", "train.valid_every=3", *assignments)))
    train_events = [e for e in metrics(out) if e["event"] == "train"]
    valid_events = [e for e in metrics(out) if e["event"] == "valid"]
    assert valid_events and all(math.isfinite(e["loss"]) for e in train_events + valid_events)
    ckpt = checkpoint.load(out / "best.pt")
    assert all(bool(torch.isfinite(t).all()) for t in ckpt["model"].values())


# ----------------------------------------------------------------------------- config errors

CONFIG_ERRORS = [
    pytest.param(
        ["model.atention=luong_dot"],
        ["unknown key 'model.atention'", "did you mean 'model.attention'"],
        id="unknown-key",
    ),
    pytest.param(["trian.lr=0.1"], ["unknown section 'trian'", "did you mean 'train'"], id="unknown-section"),
    pytest.param(["model.emb_size=big"], ["model.emb_size must be an integer", "'big'"], id="type-int"),
    pytest.param(["train.max_steps=1.5"], ["train.max_steps must be an integer"], id="type-float-for-int"),
    pytest.param(["model.bidirectional=maybe"], ["model.bidirectional must be a boolean"], id="type-bool"),
    pytest.param(["model.cell=rrn"], ["model.cell must be one of gru, lstm, rnn", "did you mean 'rnn'"], id="choice"),
    pytest.param(
        ["model.attention=luong_dot", "model.decoder_hidden=48"],
        ["luong_dot needs decoder_hidden (48)", "encoder output size (64"],
        id="luong_dot-sizes",
    ),
    pytest.param(
        ["model.tie_output=true", "model.output_size=48"],
        ["model.tie_output needs output_size (48) equal to emb_size (32)"],
        id="tie_output-sizes",
    ),
    pytest.param(["train.lr=-0.001"], ["train.lr must be > 0"], id="negative-lr"),
    pytest.param(["train.lr=0"], ["train.lr must be > 0"], id="zero-lr"),
    pytest.param(["train.max_time=20x"], ["train.max_time '20x' is not a duration"], id="max_time-20x"),
    pytest.param(["train.max_time=1.2.3m"], ["train.max_time '1.2.3m' is not a duration"], id="max_time-1.2.3m"),
    pytest.param(["model.dropout=1.0"], ["model.dropout must be in [0, 1)"], id="dropout-1"),
    pytest.param(["train.batch_tokens=0"], ["train.batch_tokens must be >= 1"], id="batch_tokens-0"),
    pytest.param(["train.label_smoothing=1"], ["train.label_smoothing must be in [0, 1)"], id="smoothing-1"),
    pytest.param(["train.patience=-1"], ["train.patience must be >= 0"], id="negative-patience"),
    pytest.param(["model.cell"], ["expected SECTION.KEY=VALUE"], id="set-syntax"),
]


@pytest.mark.parametrize("assignments, fragments", CONFIG_ERRORS)
def test_config_errors_are_one_line_and_write_nothing(tmp_path, prepped, assignments, fragments):
    out = tmp_path / "model"
    assert_one_line_error(run_train(prepped, out, *sets(*assignments)), *fragments)
    assert not out.exists()


def test_unknown_key_in_a_recipe_file_names_the_file(tmp_path, prepped):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        TINY_RECIPE.read_text(encoding="utf-8").replace("model:\n", "model:\n  atention: luong_dot\n"), encoding="utf-8"
    )
    line = assert_one_line_error(
        run_train(prepped, tmp_path / "model", recipe=recipe),
        "unknown key 'model.atention'",
        "did you mean 'model.attention'",
    )
    assert str(recipe) in line


def test_missing_recipe(tmp_path, prepped):
    assert_one_line_error(run_train(prepped, tmp_path / "model", recipe=tmp_path / "nope.yaml"), "no such recipe file")


def test_exponent_notation_is_a_number(tmp_path, prepped):
    out = tmp_path / "model"
    assert_ok(run_train(prepped, out, *sets("train.lr=5e-3", "train.max_steps=1", "train.valid_every=1")))


# ----------------------------------------------------------------------------- data, out, device


def test_share_embeddings_needs_a_joint_vocabulary(tmp_path, prepped_separate):
    out = tmp_path / "model"
    assert_one_line_error(
        run_train(prepped_separate, out, *sets("model.share_embeddings=true")),
        "model.share_embeddings needs a joint vocabulary",
    )
    assert not out.exists()


def test_separate_vocabularies_train_without_sharing(tmp_path, prepped_separate):
    out = tmp_path / "model"
    assert_ok(run_train(prepped_separate, out, *sets("train.max_steps=2", "train.valid_every=2")))
    vocab = checkpoint.load(out / "best.pt")["vocab"]
    assert vocab["joint"] is False and vocab["src_spm"] != vocab["tgt_spm"]


FP16 = ["train.precision=fp16"]
QUIET_GRADSCALER = pytest.mark.filterwarnings("ignore:.*GradScaler is enabled, but CUDA is not available")


@QUIET_GRADSCALER
def test_fp16_on_cpu_is_refused(tmp_path, prepped):
    assert_one_line_error(
        run_train(prepped, tmp_path / "model", *sets(*FP16)), "train.precision fp16 needs CUDA", "bf16"
    )


@QUIET_GRADSCALER
def test_after_a_refused_fp16_run_the_corrected_command_works(tmp_path, prepped):
    out = tmp_path / "model"
    assert run_train(prepped, out, *sets(*FP16)).exit_code == 2
    assert not out.exists() or not any(out.iterdir())
    assert_ok(run_train(prepped, out, *sets("train.max_steps=1", "train.valid_every=1")))


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA present, GradScaler('cuda') does not warn")
def test_fp16_on_cpu_refusal_has_no_warning_noise(tmp_path, prepped):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_train(prepped, tmp_path / "model", *sets(*FP16))
    assert result.exit_code == 2
    assert [str(w.message) for w in caught] == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda(tmp_path, prepped):
    out = tmp_path / "model"
    argv = ["train", str(TINY_RECIPE), "--data", str(prepped), "--out", str(out), "--device", "cuda"]
    assert_one_line_error(CliRunner().invoke(app, argv), "--device cuda", "no CUDA device")
    assert not out.exists()


def test_resume_without_a_checkpoint(tmp_path, prepped):
    out = tmp_path / "model"
    assert_one_line_error(run_train(prepped, out, "--resume"), "no checkpoint to resume from")
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    assert_one_line_error(run_train(prepped, out, "--resume"), "no checkpoint to resume from")


def test_a_run_killed_before_its_first_checkpoint_starts_afresh_on_resume(tmp_path, prepped):
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.yaml").write_text("x", encoding="utf-8")
    (out / "metrics.jsonl").write_text('{"event": "train", "step": 1, "loss": 9.0}\n', encoding="utf-8")
    assert_one_line_error(run_train(prepped, out), "not empty", "--resume")
    result = run_train(prepped, out, "--resume", *sets("train.max_steps=2", "train.valid_every=2"))
    assert_ok(result)
    assert "stopped before its first checkpoint; this one starts afresh" in result.stderr
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(e.get("loss") != 9.0 for e in events) and (out / "best.pt").exists()  # the old run's events gone


def test_non_empty_out_needs_resume(tmp_path, prepped):
    out = tmp_path / "model"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    assert_one_line_error(run_train(prepped, out), "not empty", "--resume")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_empty_out_directory_is_fine(tmp_path, prepped):
    out = tmp_path / "model"
    out.mkdir()
    assert_ok(run_train(prepped, out, *sets("train.max_steps=1", "train.valid_every=1")))


def test_out_is_a_file(tmp_path, prepped):
    out = tmp_path / "model"
    out.write_text("x", encoding="utf-8")
    assert_one_line_error(run_train(prepped, out), "exists and is not a directory")


def test_missing_data_directory(tmp_path):
    assert_one_line_error(run_train(tmp_path / "nope", tmp_path / "model"), "no such prep directory", "nmt prep")
    assert not (tmp_path / "model").exists()


def test_data_directory_that_is_not_a_prep(tmp_path, corpus):
    assert_one_line_error(run_train(corpus, tmp_path / "model"), "not an nmt prep directory")


def test_data_changed_since_prep(tmp_path, prepped):
    data = tmp_path / "prep"
    shutil.copytree(prepped, data)
    ids = data / "train.de.ids"
    ids.write_bytes(ids.read_bytes()[:-2])
    assert_one_line_error(run_train(data, tmp_path / "model"), "missing or changed since prep")


# ----------------------------------------------------------------------------- resume mismatch


@pytest.fixture
def one_step(tmp_path, prepped):
    out = tmp_path / "model"
    assert_ok(run_train(prepped, out, *sets("train.max_steps=1", "train.valid_every=1")))
    return out


def test_resume_with_other_model_settings(one_step, prepped):
    line = assert_one_line_error(
        run_train(prepped, one_step, "--resume", *sets("model.emb_size=48", "model.output_size=48")),
        "other model settings",
    )
    assert "model.emb_size" in line and "model.output_size" in line


def test_resume_on_other_prepared_data(one_step, prepped_separate):
    assert_one_line_error(
        run_train(prepped_separate, one_step, "--resume", *sets("train.max_steps=2")), "other prepared data"
    )


def test_resume_with_a_broken_newest_checkpoint(one_step, prepped):
    newest = checkpoint.latest(one_step)
    newest.write_bytes(newest.read_bytes()[:1000])
    assert_one_line_error(run_train(prepped, one_step, "--resume"), str(newest.name), "not a readable nmt checkpoint")


def test_a_diverged_loss_stops_the_run_in_one_line(tmp_path, prepped, monkeypatch):
    from nmt_cli.train import loop

    monkeypatch.setattr(loop, "train_step", lambda run, group: (float("nan"), float("nan"), 10))
    result = run_train(prepped, tmp_path / "model", *sets("train.max_steps=5"))
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].endswith("the loss is nan at step 1: training diverged; lower train.lr")
