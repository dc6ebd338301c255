"""`nmt average`: the mean of several checkpoints' weights, for translating."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from conftest import assert_ok, assert_one_line_error, tiny_model_config
from typer.testing import CliRunner

from nmt_cli import checkpoint
from nmt_cli.cli import app
from nmt_cli.errors import NmtError
from nmt_cli.model.seq2seq import Seq2Seq
from nmt_cli.train.average import average, last_checkpoints


def run(*args):
    return CliRunner().invoke(app, ["average", *map(str, args)])


def test_the_average_of_two_checkpoints_is_the_mean_of_their_weights(trained):
    older, newer = trained / "ckpt-0000020.pt", trained / "ckpt-0000030.pt"
    a, b = checkpoint.load(older), checkpoint.load(newer)
    averaged = average([older, newer])
    assert set(averaged["model"]) == set(b["model"])
    moved = 0
    for name, tensor in averaged["model"].items():
        assert tensor.dtype == b["model"][name].dtype
        torch.testing.assert_close(tensor, (a["model"][name] + b["model"][name]) / 2)
        moved += not torch.equal(a["model"][name], b["model"][name])
    assert moved  # the two checkpoints differ: the mean is not either of them
    # translation needs: the newest checkpoint's config, vocabulary and progress; nothing to resume
    assert (
        averaged["config"] == b["config"] and averaged["vocab"] == b["vocab"] and averaged["progress"] == b["progress"]
    )
    assert not {"optimizer", "schedule", "rng"} & set(averaged)
    assert averaged["averaged"] == [str(older), str(newer)]


def tied_checkpoint(path: Path, seed: int) -> Path:
    """A checkpoint of a tiny model whose embeddings and output layer are one table."""
    torch.manual_seed(seed)
    cfg = tiny_model_config(tie_output=True, share_embeddings=True)
    model = Seq2Seq(cfg, 30, 30)
    vocab = {"src_size": 30, "tgt_size": 30}
    checkpoint.save(path, {"config": {"model": asdict(cfg)}, "model": model.state_dict(), "vocab": vocab})
    return path


def test_tied_weights_stay_one_tensor(tmp_path):
    paths = [tied_checkpoint(tmp_path / f"{seed}.pt", seed) for seed in (1, 2)]
    first = checkpoint.load(paths[0])["model"]
    averaged = average(paths)["model"]
    tied = ["encoder.embedding.weight", "decoder.embedding.weight", "decoder.output.weight"]
    assert all(averaged[name] is averaged[tied[0]] for name in tied)
    assert averaged["decoder.output.bias"] is not averaged[tied[0]]
    torch.testing.assert_close(averaged[tied[0]], (first[tied[0]] + checkpoint.load(paths[1])["model"][tied[0]]) / 2)


def test_the_cli_averages_a_directorys_newest_checkpoints_into_a_checkpoint_that_translates(trained, tmp_path):
    out = tmp_path / "averaged.pt"
    result = run(trained, "--last", 2, "-o", out)
    assert_ok(result)
    assert "ckpt-0000020.pt, ckpt-0000030.pt" in result.stderr
    text = tmp_path / "in.txt"
    text.write_text("ein hund\n\nzwei katzen\n", encoding="utf-8")
    translated = CliRunner().invoke(app, ["translate", "-m", str(out), str(text), "--device", "cpu"])
    assert_ok(translated)
    assert len(translated.stdout.splitlines()) == 3


def test_last_picks_the_newest_step_checkpoints_and_refuses_to_pick_fewer(trained):
    assert last_checkpoints(trained, 1) == [trained / "ckpt-0000030.pt"]
    assert last_checkpoints(trained, None) == [trained / "ckpt-0000020.pt", trained / "ckpt-0000030.pt"]  # all
    with pytest.raises(NmtError, match="2 step checkpoints, --last 3 asks for more .*keep_last=3"):
        last_checkpoints(trained, 3)
    with pytest.raises(NmtError, match="at least 1"):
        last_checkpoints(trained, 0)


def test_checkpoints_of_another_model_are_refused(trained, tmp_path):
    other = checkpoint.load(trained / "ckpt-0000030.pt")
    other["config"]["model"]["dropout"] = 0.5
    checkpoint.save(tmp_path / "other.pt", other)
    assert_one_line_error(
        run(trained / "ckpt-0000020.pt", tmp_path / "other.pt", "-o", tmp_path / "x.pt"),
        "other.pt: another model than",
        "average checkpoints of one run",
    )
    assert not (tmp_path / "x.pt").exists()


def test_a_file_that_is_not_a_checkpoint_is_a_one_line_error(trained, tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint")
    assert_one_line_error(run(trained / "ckpt-0000030.pt", bad, "-o", tmp_path / "x.pt"), "notes.pt")
    assert_one_line_error(
        run(trained / "ckpt-0000020.pt", trained / "ckpt-0000030.pt", "--last", 2, "-o", tmp_path / "x.pt"),
        "--last picks from a model directory",
    )
    empty = tmp_path / "empty"
    shutil.copytree(trained, empty, ignore=shutil.ignore_patterns("ckpt-*"))
    assert_one_line_error(run(empty, "-o", tmp_path / "x.pt"), "no step checkpoints")
    assert_one_line_error(run(empty, "--last", 1, "-o", tmp_path / "x.pt"), "0 step checkpoints")


def test_checkpoints_of_another_run_are_refused_unless_forced(trained, tmp_path):
    """One run: the checkpoints since one `nmt train` started (resumes included) share its
    run id; before run ids, the same prepared data and train.seed."""
    older, newer = checkpoint.load(trained / "ckpt-0000020.pt"), checkpoint.load(trained / "ckpt-0000030.pt")
    assert older["progress"]["run"] == newer["progress"]["run"] != ""
    newer["progress"]["run"] = "another"
    checkpoint.save(tmp_path / "other.pt", newer)
    args = (trained / "ckpt-0000020.pt", tmp_path / "other.pt", "-o", tmp_path / "x.pt")
    assert_one_line_error(run(*args), "other.pt: from another training run than", "run ids differ", "--force")
    assert not (tmp_path / "x.pt").exists()
    assert_ok(run(*args, "--force"))
    for payload in (older, newer):  # checkpoints written before run ids
        del payload["progress"]["run"]
    checkpoint.save(tmp_path / "old.pt", older)
    checkpoint.save(tmp_path / "new.pt", newer)
    assert_ok(run(tmp_path / "old.pt", tmp_path / "new.pt", "-o", tmp_path / "y.pt"))
    newer["config"]["train"]["seed"] = 7
    checkpoint.save(tmp_path / "new.pt", newer)
    assert_one_line_error(run(tmp_path / "old.pt", tmp_path / "new.pt", "-o", tmp_path / "y.pt"), "train.seed differ")


def test_the_output_may_not_be_an_input_nor_a_step_checkpoint_nor_stdout(trained, tmp_path):
    """Each would destroy what a run needs (the average of a run replacing its own step
    checkpoint leaves `--resume` nothing to resume from) or write a file named '-'."""
    model = tmp_path / "model"
    shutil.copytree(trained, model)
    older, newer = model / "ckpt-0000020.pt", model / "ckpt-0000030.pt"
    before = {path: path.read_bytes() for path in (older, newer)}
    link = tmp_path / "link.pt"
    link.symlink_to(newer)
    for inputs, out in [
        ((older, newer), newer),
        ((model,), model / ".." / "model" / "ckpt-0000030.pt"),
        ((older, newer), link),
    ]:
        assert_one_line_error(run(*inputs, "-o", out), f"-o {out}: one of the checkpoints being averaged")
    assert_one_line_error(
        run(model, "--last", 1, "-o", older), f"-o {older}: a step checkpoint of a run; write the average elsewhere"
    )
    assert_one_line_error(run(older, "-o", "-"), "-o -: a checkpoint is a file, not stdout")
    assert {path: path.read_bytes() for path in (older, newer)} == before
    assert not (tmp_path / "-").exists() and not Path("-").exists()
