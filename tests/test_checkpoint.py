"""Checkpoints: plain data loadable with weights_only, everything needed to resume or to
translate alone, pruning, atomic writes, one-line errors for files that are not ones."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch
from conftest import TINY_RECIPE, TRAINED_SETS, TRAINED_STEPS, assert_ok, manifest, run_train, sets
from typer.testing import CliRunner

from nmt_cli import checkpoint
from nmt_cli.cli import app
from nmt_cli.config import Config, ModelConfig, apply_overrides, from_dict, load_recipe
from nmt_cli.errors import NmtError
from nmt_cli.model import saved
from nmt_cli.model.seq2seq import Seq2Seq
from nmt_cli.search.greedy import greedy
from nmt_cli.vocab import EOS, SPECIAL_IDS

OLD_CHECKPOINT = Path(__file__).parent / "fixtures" / "old_checkpoints" / "gru-bahdanau-target.pt"
KEYS = {"format", "config", "model", "optimizer", "schedule", "rng", "progress", "vocab", "data"}


def test_files_of_a_training_run(trained):
    names = sorted(p.name for p in trained.iterdir())
    assert "best.pt" in names and "config.yaml" in names and "metrics.jsonl" in names
    # validations at 10, 20, 30 each wrote a step checkpoint; keep_last=2 keeps the newest two
    assert [step for step, _ in checkpoint.step_checkpoints(trained)] == [20, 30]
    assert (trained / "ckpt-0000030.pt").is_file() and not (trained / "ckpt-0000010.pt").exists()
    assert not [n for n in names if n.startswith(".")], names  # no temporary files left


@pytest.mark.parametrize("name", ["best.pt", "ckpt-0000030.pt"])
def test_checkpoint_is_plain_data_for_weights_only_load(trained, name):
    payload = torch.load(trained / name, map_location="cpu", weights_only=True)
    assert isinstance(payload, dict)
    assert KEYS <= set(payload)
    assert payload["format"] == checkpoint.FORMAT
    assert set(payload) == set(checkpoint.load(trained / name))


def test_checkpoint_holds_what_resuming_needs(trained, prepped):
    ckpt = checkpoint.load(trained / "ckpt-0000030.pt")
    expected = apply_overrides(load_recipe(TINY_RECIPE), [*TRAINED_SETS, f"train.max_steps={TRAINED_STEPS}"])
    saved = from_dict(Config, ckpt["config"])
    # train.precision is what `auto` resolved to (fp32 in the tests)
    assert (saved.model, saved.train) == (expected.model, dataclasses.replace(expected.train, precision="fp32"))
    # the data section is the prep directory's, so translation normalizes text the same way
    assert ckpt["config"]["data"] == json.loads((prepped / "manifest.json").read_text())["options"]
    model = Seq2Seq(expected.model, ckpt["vocab"]["src_size"], ckpt["vocab"]["tgt_size"])
    assert set(ckpt["model"]) == set(model.state_dict())
    assert all(ckpt["model"][k].shape == v.shape for k, v in model.state_dict().items())
    assert {"state", "param_groups"} <= set(ckpt["optimizer"])
    assert len(ckpt["optimizer"]["state"]) == len(list(model.parameters()))
    assert isinstance(ckpt["rng"]["torch"], torch.Tensor)
    progress = ckpt["progress"]
    assert progress["step"] == TRAINED_STEPS and progress["validated_step"] == TRAINED_STEPS
    assert progress["epoch"] >= 1  # 30 steps of ~600-token batches over 300 pairs cross an epoch
    assert set(ckpt["schedule"]) >= {"scale", "best", "bad"}
    m = manifest(prepped)
    assert ckpt["data"]["fingerprint"] == m["fingerprint"]


def test_checkpoint_holds_the_vocabularies(trained, prepped):
    vocab = checkpoint.load(trained / "best.pt")["vocab"]
    m = manifest(prepped)
    assert vocab["src_lang"] == "de" and vocab["tgt_lang"] == "en"
    assert vocab["src_size"] == m["vocab"]["size"]["de"] and vocab["tgt_size"] == m["vocab"]["size"]["en"]
    assert vocab["joint"] is True
    assert vocab["special_ids"] == SPECIAL_IDS
    for side, lang in (("src_spm", "de"), ("tgt_spm", "en")):
        assert isinstance(vocab[side], bytes)
        assert vocab[side] == (prepped / m["vocab"]["model"][lang]).read_bytes()


def test_best_is_the_best_validated_step(trained):
    best = checkpoint.load(trained / "best.pt")["progress"]
    last = checkpoint.load(trained / "ckpt-0000030.pt")["progress"]
    assert best["step"] == last["best_step"] == best["best_step"]
    assert best["best_score"] == last["best_score"]
    assert best["step"] in (10, 20, 30)


def test_a_checkpoint_translates_alone(trained, tmp_path):
    """Copied away from its training and prep directories, best.pt rebuilds the model and
    both SentencePiece models, and turns a raw sentence into text."""
    alone = tmp_path / "elsewhere" / "model.pt"
    alone.parent.mkdir()
    shutil.copyfile(trained / "best.pt", alone)
    ckpt = torch.load(alone, map_location="cpu", weights_only=True)
    cfg = ModelConfig(**ckpt["config"]["model"])
    vocab = ckpt["vocab"]
    model = Seq2Seq(cfg, vocab["src_size"], vocab["tgt_size"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    src_sp = spm.SentencePieceProcessor(model_proto=vocab["src_spm"])
    tgt_sp = spm.SentencePieceProcessor(model_proto=vocab["tgt_spm"])
    assert src_sp.eos_id() == vocab["special_ids"]["eos"] == EOS
    sentences = ["ein Mann spielt mit einem Ball", "die Frau liest eine Zeitung im Park"]
    ids = [src_sp.encode(s) + [EOS] for s in sentences]
    src = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
    for row, x in enumerate(ids):
        src[row, : len(x)] = torch.tensor(x)
    out = [h.tokens for h in greedy(model, src, torch.tensor([len(x) for x in ids]), 1.5, 10)]
    texts = [tgt_sp.decode(o) for o in out]
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert all(len(o) <= 1.5 * len(x) + 10 for o, x in zip(out, ids))


def test_load_model_is_the_saved_model_and_draws_no_random_numbers(trained):
    """load_model builds the model without random initial weights (they are replaced):
    every tensor is the checkpoint's, the output layer is tied again, and torch's random
    generator is where it was."""
    payload = checkpoint.load(trained / "best.pt")
    rng = torch.random.get_rng_state()
    model, _ = saved.load_model(payload)
    assert torch.equal(torch.random.get_rng_state(), rng)
    state = model.state_dict()
    assert state.keys() == payload["model"].keys()
    assert all(torch.equal(state[name], tensor) for name, tensor in payload["model"].items())
    if model.cfg.tie_output:
        assert model.decoder.output.weight is model.decoder.embedding.weight


def test_loading_a_model_imports_no_torch_dynamo():
    """Checking and building a checkpoint's model draws nothing, not even on the meta
    device, where a draw imports torch._dynamo: a second of every translation's start-up."""
    code = (
        "import sys; from nmt_cli import checkpoint; from nmt_cli.model import saved; "
        f"saved.load_model(checkpoint.load({str(OLD_CHECKPOINT)!r})); print('torch._dynamo' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_model_with_the_shipped_recipes_output_settings_translates(prepped, tmp_path):
    """The multi30k recipes share the embeddings, tie the output layer to them and score the
    training targets' words alone: such a checkpoint passes validation and translates
    (its shape check once failed on the list of target words, made on the meta device)."""
    out = tmp_path / "model"
    assert_ok(
        run_train(
            prepped,
            out,
            *sets(
                "model.share_embeddings=true",
                "model.tie_output=true",
                "model.output_vocab=target",
                "train.max_steps=2",
                "train.valid_every=2",
            ),
        )
    )
    model, cfg = saved.load_model(checkpoint.load(out / "best.pt"), path=out / "best.pt")
    assert (cfg.model.share_embeddings, cfg.model.tie_output, cfg.model.output_vocab) == (True, True, "target")
    assert model.decoder.output.weight is model.decoder.embedding.weight
    source = tmp_path / "src.de"
    source.write_text("ein Mann spielt mit einem Ball\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["translate", "-m", str(out / "best.pt"), "-q", "--beam", "2", str(source)])
    assert_ok(result)
    assert len(result.stdout.splitlines()) == 1


# ----------------------------------------------------------------------------- bad files


def bad_files(trained: Path, tmp_path: Path) -> dict[str, Path]:
    real = (trained / "best.pt").read_bytes()
    files = {
        "truncated": real[: len(real) // 2],
        "empty": b"",
        "random bytes": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "a text file": b"a man plays with a ball\n",  # e.g. a source or hypothesis file given by mistake
        "another text file": b"hello world\n",
        "yaml": b"model:\n  cell: gru\n",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name.replace(' ', '_')}.pt"
        paths[name].write_bytes(data)
    for name, obj in {
        "another dict": {"model": {"w": torch.zeros(2)}, "step": 3},
        "a tensor": torch.zeros(3),
        "a list": [1, 2, 3],
        "an unsafe pickle": {"format": checkpoint.FORMAT, "when": datetime.date(2020, 1, 1)},
    }.items():
        paths[name] = tmp_path / f"{name.replace(' ', '_')}.pt"
        torch.save(obj, paths[name])
    paths["a directory"] = tmp_path / "somedir"
    paths["a directory"].mkdir()
    paths["a missing file"] = tmp_path / "nope.pt"
    return paths


CASES = [
    "truncated",
    "empty",
    "random bytes",
    "yaml",
    "another dict",
    "a tensor",
    "a list",
    "an unsafe pickle",
    "a directory",
    "a missing file",
    "a text file",
    "another text file",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_checkpoint_files_are_one_line_errors(trained, tmp_path, case):
    path = bad_files(trained, tmp_path)[case]
    with pytest.raises(NmtError) as info:
        checkpoint.load(path)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    assert str(path) in message
    assert len(message) < 300


# ----------------------------------------------------------------------------- files


def touch_steps(directory: Path, steps) -> None:
    for step in steps:
        checkpoint.save(checkpoint.step_path(directory, step), {"step": step})


def test_step_checkpoints_sort_by_step_not_by_name(tmp_path):
    for name in ("ckpt-5.pt", "ckpt-10.pt", "ckpt-0000007.pt", "ckpt-x.pt", "best.pt", "ckpt-3.pt.tmp", "other-4.pt"):
        (tmp_path / name).write_bytes(b"")
    assert [step for step, _ in checkpoint.step_checkpoints(tmp_path)] == [5, 7, 10]
    assert checkpoint.latest(tmp_path) == tmp_path / "ckpt-10.pt"
    (tmp_path / "empty").mkdir()
    assert checkpoint.latest(tmp_path / "empty") is None


@pytest.mark.parametrize("keep, left", [(2, [40, 50]), (1, [50]), (0, [50]), (9, [10, 20, 30, 40, 50])])
def test_prune_keeps_the_newest(tmp_path, keep, left):
    touch_steps(tmp_path, [10, 20, 30, 40, 50])
    (tmp_path / "best.pt").write_bytes(b"x")
    checkpoint.prune(tmp_path, keep)
    assert [step for step, _ in checkpoint.step_checkpoints(tmp_path)] == left
    assert (tmp_path / "best.pt").exists()


def test_save_load_round_trip_and_step_names(tmp_path):
    path = checkpoint.step_path(tmp_path, 123)
    assert path.name == "ckpt-0000123.pt"
    checkpoint.save(path, {"progress": {"step": 123}, "w": torch.arange(3)})
    loaded = checkpoint.load(path)
    assert loaded["format"] == checkpoint.FORMAT and loaded["progress"] == {"step": 123}
    assert torch.equal(loaded["w"], torch.arange(3))
    assert os.listdir(tmp_path) == [path.name]


def test_a_failed_save_leaves_the_previous_file(tmp_path):
    path = tmp_path / "best.pt"
    checkpoint.save(path, {"step": 1})
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        checkpoint.save(path, {"step": 2, "bad": lambda: None})  # cannot be pickled
    assert checkpoint.load(path)["step"] == 1
    assert os.listdir(tmp_path) == ["best.pt"]
