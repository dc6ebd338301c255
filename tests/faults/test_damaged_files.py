"""Damaged and malformed checkpoints and prep directories, as a user meets them: a flipped
byte, a file of the wrong kind under a checkpoint's name, crafted sizes and weights, a
changed id file. Each is a one-line error naming the file, exit code 2; nothing runs on
the bad data."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TEST_PAIRS, assert_error_ends, assert_ok, make_pairs, run_prep, run_train, write_lines
from typer.testing import CliRunner

from nmt_cli import checkpoint
from nmt_cli.cli import app


def nmt(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def source(tmp_path) -> Path:
    return write_lines(tmp_path / "src.de", [de for de, _ in make_pairs(TEST_PAIRS, 3)])


def flip_a_weight_byte(path: Path) -> None:
    """Change one byte inside the stored bytes of a weight (as a failing disk would)."""
    weight = max(checkpoint.load(path)["model"].values(), key=torch.Tensor.numel)
    data = bytearray(path.read_bytes())
    at = data.find(weight.reshape(-1)[:8].numpy().tobytes())
    assert at > 0
    data[at + 3] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.fixture
def model_copy(tmp_path, trained) -> Path:
    out = tmp_path / "model"
    shutil.copytree(trained, out)
    return out


# ------------------------------------------------------------------- a flipped byte


def test_a_flipped_byte_is_found_by_every_reader(model_copy, source, tmp_path, prepped):
    best = model_copy / "best.pt"
    flip_a_weight_byte(best)
    damaged = f"{best}: damaged checkpoint: model changed since it was written"
    assert_error_ends(nmt("translate", "-m", best, source), 2, damaged)
    ref = write_lines(tmp_path / "ref.en", [en for _, en in make_pairs(TEST_PAIRS, 3)])
    assert_error_ends(nmt("score", "--model", best, "--src", source, "-r", ref), 2, damaged)
    assert_error_ends(nmt("average", best, model_copy / "ckpt-0000030.pt", "-o", tmp_path / "avg.pt"), 2, damaged)
    shown = json.loads(nmt("info", best, "--json").stdout)["digest"]
    assert shown["holds"] is False and shown["damaged"] == ["model"]

    newest = model_copy / "ckpt-0000030.pt"
    flip_a_weight_byte(newest)
    assert_error_ends(
        run_train(prepped, model_copy, "--resume", "--set", "train.max_steps=40"),
        2,
        f"{newest}: damaged checkpoint: model",
    )


def test_an_intact_checkpoint_shows_its_digest(trained):
    shown = json.loads(nmt("info", trained / "best.pt", "--json").stdout)["digest"]
    assert shown == {"model_sha256": checkpoint.digest(checkpoint.load(trained / "best.pt")["model"]), "holds": True}


def test_a_checkpoint_from_before_digests_loads(tmp_path, trained, source):
    payload = checkpoint.load(trained / "best.pt")
    del payload["digest"]
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    assert_ok(nmt("translate", "-q", "-m", old, source))
    assert "written before nmt checkpoints carried digests" in json.loads(nmt("info", old, "--json").stdout)["digest"]


def test_the_digest_is_cheap_and_works_on_mapped_files(tmp_path):
    weights = {f"w{i}": torch.randn(1000, 1000) for i in range(7)}  # 7M parameters
    checkpoint.digest(weights)
    start = time.perf_counter()
    checkpoint.digest(weights)
    assert time.perf_counter() - start < 0.2  # about 0.02 s on a CPU with SHA extensions
    path = tmp_path / "w.pt"
    checkpoint.save(path, {"model": weights})
    assert checkpoint.load(path, mmap=True, require=("model",))["model"]["w3"].equal(weights["w3"])


# ------------------------------------------------------------ malformed checkpoints


def crafted(tmp_path: Path, trained: Path, change) -> Path:
    """best.pt changed by ``change(payload)`` and saved whole (its digest holds: what is
    checked is its structure)."""
    payload = checkpoint.load(trained / "best.pt")
    change(payload)
    path = tmp_path / "crafted.pt"
    checkpoint.save(path, payload)
    return path


def _bigger_subwords(tmp_path: Path):
    assert_ok(run_prep(tmp_path, "--vocab-size", "140", "--out", tmp_path / "big"))
    return (tmp_path / "big" / "spm.model").read_bytes()


def _last_weight(payload) -> torch.Tensor:
    return list(payload["model"].values())[-1]


CRAFTED = {
    "vocab-none": (lambda p, t: p.update(vocab=None), "vocab is not a mapping"),
    "tgt-words-out-of-range": (lambda p, t: p["vocab"]["tgt_words"].append(10**6), "vocab.tgt_words"),
    "vocab-size-absurd": (lambda p, t: p["vocab"].update(src_size=10**12), "vocab.src_size"),
    "mis-shaped-weight": (
        lambda p, t: p["model"].update({next(iter(p["model"])): torch.zeros(7)}),
        "is (7,), the config",
    ),
    "emb-size-800-gb": (lambda p, t: p["config"]["model"].update(emb_size=10**9), "the config makes it"),
    "unknown-config-key": (lambda p, t: p["config"]["model"].update(colour="red"), "config: unknown key"),
    "nan-weight": (lambda p, t: _last_weight(p).view(-1).__setitem__(5, float("nan")), "NaN or infinite"),
    "inf-weight": (lambda p, t: _last_weight(p).view(-1).__setitem__(0, float("-inf")), "NaN or infinite"),
    "subwords-beyond-vocab": (
        lambda p, t: p["vocab"].update(src_spm=_bigger_subwords(t)),
        "source SentencePiece model has 140",
    ),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_a_malformed_checkpoint_is_one_line(tmp_path, trained, source, case, corpus):
    change, fragment = CRAFTED[case]
    path = crafted(tmp_path, trained, lambda payload: change(payload, tmp_path))
    line = assert_error_ends(
        nmt("translate", "-q", "-m", path, source), 2, f"{path}: malformed nmt checkpoint", fragment
    )
    assert len(line) < 400


def test_an_averaged_checkpoint_is_no_place_to_resume_from(model_copy, prepped):
    assert_ok(nmt("average", model_copy, "--last", "2", "-o", model_copy / "ckpt-0000031.pt"))
    assert_error_ends(
        run_train(prepped, model_copy, "--resume", "--set", "train.max_steps=40"),
        2,
        "ckpt-0000031.pt: written by `nmt average`",
        "resume from a step checkpoint",
    )


# ------------------------------------------------------------------ prep directories


@pytest.fixture
def prep_copy(tmp_path, prepped) -> Path:
    """The prepped tiny corpus and its inputs, copied (``tmp_path/out``, ``tmp_path/data``)."""
    shutil.copytree(prepped.parent / "data", tmp_path / "data")
    shutil.copytree(prepped, tmp_path / "out")
    return tmp_path / "out"


def _set_id(prep: Path, name: str, index: int, value: int) -> None:
    ids = np.fromfile(prep / name, dtype="<u2")
    ids[index] = value
    ids.tofile(prep / name)


def test_a_changed_id_file_of_the_same_size_is_not_up_to_date(prep_copy, tmp_path):
    size = (prep_copy / "train.en.ids").stat().st_size
    _set_id(prep_copy, "train.en.ids", 10, 7)
    assert (prep_copy / "train.en.ids").stat().st_size == size
    assert_error_ends(run_prep(tmp_path), 2, "damaged")
    assert_error_ends(run_train(prep_copy, tmp_path / "m"), 2, "train.en.ids", "changed since prep")
    assert_ok(run_prep(tmp_path, "--force"))
    assert_ok(run_train(prep_copy, tmp_path / "m2", "--set", "train.max_steps=2"))


def test_an_id_beyond_the_vocabulary_names_split_and_sentence(prep_copy, tmp_path):
    """Even with a manifest edited to match: the ids are checked against the vocabulary."""
    _set_id(prep_copy, "train.en.ids", 0, 65535)
    manifest = json.loads((prep_copy / "manifest.json").read_text())
    from nmt_cli.io import sha256_file

    manifest["files"]["train.en.ids"]["sha256"] = sha256_file(prep_copy / "train.en.ids")
    (prep_copy / "manifest.json").write_text(json.dumps(manifest))
    assert_error_ends(
        run_train(prep_copy, tmp_path / "m"),
        2,
        f"{prep_copy}/train.en.ids: sentence 1 holds id 65535, beyond the vocabulary of 100",
    )
