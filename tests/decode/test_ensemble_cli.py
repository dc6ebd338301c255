"""`nmt translate` and `nmt score --model` with several models, sampling and prefixes, end
to end on the trained tiny model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import assert_ok, assert_one_line_error, make_pairs, write_lines
from typer.testing import CliRunner

from nmt_cli.cli import app


def nmt(*args):
    return CliRunner().invoke(app, [*map(str, args)])


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return write_lines(tmp_path_factory.mktemp("ens") / "src.de", [de for de, _ in make_pairs(12, 4)])


def test_an_ensemble_of_copies_translates_as_the_model(ckpt, source):
    alone = nmt("translate", "-m", ckpt, "--precision", "fp32", "--scores", source)
    assert_ok(alone)
    both = nmt("translate", "-m", ckpt, "-m", ckpt, "--weights", "2,2", "--precision", "fp32", "--scores", source)
    assert_ok(both)
    rows = [[line.split("\t") for line in r.stdout.splitlines()] for r in (alone, both)]
    assert [text for text, _ in rows[1]] == [text for text, _ in rows[0]]
    assert [float(s) for _, s in rows[1]] == pytest.approx([float(s) for _, s in rows[0]], abs=1e-3)


def test_models_of_other_vocabularies_are_a_one_line_error(trained, prepped_separate, tmp_path, source):
    from conftest import run_train, sets

    other = tmp_path / "sep"
    assert_ok(run_train(prepped_separate, other, *sets("train.max_steps=2")))
    result = nmt("translate", "-m", trained / "best.pt", "-m", other / "best.pt", source)
    assert_one_line_error(result, "SentencePiece model differs")
    ref = write_lines(tmp_path / "ref.en", [en for _, en in make_pairs(12, 4)])
    result = nmt("score", "-r", ref, "--src", source, "--model", trained / "best.pt", "--model", other / "best.pt")
    assert_one_line_error(result, "SentencePiece model differs")


def test_bad_weights_are_a_one_line_error(ckpt, source):
    assert_one_line_error(nmt("translate", "-m", ckpt, "-m", ckpt, "--weights", "1", source), "--weights")
    assert_one_line_error(nmt("translate", "-m", ckpt, "--weights", "-1", source), "--weights")


def test_forced_scores_of_an_ensemble_of_copies_are_the_models(ckpt, source, tmp_path):
    ref = write_lines(tmp_path / "ref.en", [en for _, en in make_pairs(12, 4)])
    alone = nmt("score", "-r", ref, "--src", source, "--model", ckpt)
    both = nmt("score", "-r", ref, "--src", source, "--model", ckpt, "--model", ckpt)
    assert_ok(alone)
    assert_ok(both)
    assert both.stdout == alone.stdout


def test_sampling_n_best_gives_n_rows_a_line_and_the_same_seed_the_same_rows(ckpt, source):
    runs = [
        nmt("translate", "-m", ckpt, "--sampling", "--nbest", "3", "--seed", "5", *extra, source)
        for extra in ([], ["--batch-size", "2"])
    ]
    for result in runs:
        assert_ok(result)
    assert runs[0].stdout == runs[1].stdout
    rows = [line.split("\t") for line in runs[0].stdout.splitlines()]
    assert [(int(r[0]), int(r[1])) for r in rows] == [(i, k) for i in range(12) for k in (1, 2, 3)]
    assert all(math.isfinite(float(r[2])) and float(r[2]) <= 0 for r in rows)  # each sample's log-probability


def test_outputs_begin_with_their_prefix(ckpt, source, tmp_path):
    prefixes = ["old", "", "a green car", *[""] * 9]
    path = write_lines(tmp_path / "prefix.txt", prefixes)
    plain = nmt("translate", "-m", ckpt, "--beam", "1", source)
    for beam in ("1", "3"):
        result = nmt("translate", "-m", ckpt, "--beam", beam, "--prefix", path, source)
        assert_ok(result)
        lines = result.stdout.splitlines()
        assert lines[0].startswith("old") and lines[2].startswith("a green car")
        if beam == "1":
            assert lines[1] == plain.stdout.splitlines()[1]


def test_a_prefix_count_mismatch_is_a_one_line_error(ckpt, source, tmp_path):
    path = write_lines(tmp_path / "prefix.txt", ["a", "b"])
    assert_one_line_error(nmt("translate", "-m", ckpt, "--prefix", path, source), "--prefix has 2 lines")


def test_every_member_of_an_ensemble_takes_the_first_ones_int8(monkeypatch, ckpt):
    """``auto`` resolves once, for the first model: where it takes int8, every member's
    products are int8."""
    import torch

    from nmt_cli import device
    from nmt_cli.decode.inference import load_all
    from nmt_cli.model.rewrites import Int8Linear

    monkeypatch.setattr(device, "bf16_speedup", lambda shapes: 0.05)
    monkeypatch.setattr(device, "int8_products", lambda: True)
    members = load_all([ckpt, ckpt], {}, torch.device("cpu"))
    assert [(m.decode.precision, m.decode.quantize) for m in members] == [("fp32", "int8")] * 2
    assert all(isinstance(m.model.decoder.output, Int8Linear) for m in members)
