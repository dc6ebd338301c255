"""A checkpoint made ready for inference (nmt_cli/decode/inference.py): the options that
fit together (int8 with bf16, sampling's options with --sampling), the beam the output
layer allows, the precision probe's shapes and the ensemble's weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import assert_ok, assert_one_line_error, make_pairs, write_lines
from typer.testing import CliRunner

from nmt_cli import device as devices
from nmt_cli.cli import app
from nmt_cli.config import DecodeConfig, ModelConfig
from nmt_cli.decode.inference import Inference, choose_precision, ensemble_weights
from nmt_cli.errors import NmtError
from nmt_cli.model.rewrites import FusedEncoder, Int8Linear

CPU = torch.device("cpu")
OLD = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "old_checkpoints").glob("*.pt"))


def translate(*args):
    return CliRunner().invoke(app, ["translate", *map(str, args)])


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return write_lines(tmp_path_factory.mktemp("inference") / "src.de", [de for de, _ in make_pairs(8, 6)])


# --------------------------------------------------------------------------- int8 with bf16


def test_int8_with_bf16_runs_the_decoders_products_in_int8_and_the_rest_in_bf16(ckpt, source):
    """Both flags hold: the decoder's linear layers are int8 (Bahdanau's v aside), the
    encoder stays the reference one that bf16 keeps on a CPU, unquantized (it read its
    layers' weights itself, an AttributeError on an Int8Linear)."""
    model = Inference.load(ckpt, {"quantize": "int8", "precision": "bf16"}, CPU).model
    assert isinstance(model.decoder.output, Int8Linear) and isinstance(model.decoder.joined_inputs, Int8Linear)
    assert not isinstance(model.encoder, FusedEncoder)
    assert not any(isinstance(m, Int8Linear) for m in model.encoder.modules())
    result = translate(source, "-m", ckpt, "--quantize", "int8", "--precision", "bf16")
    assert_ok(result)
    assert len(result.stdout.splitlines()) == 8 and "bf16, int8" in result.stderr


# --------------------------------------------------------------------------- the beam


@pytest.mark.parametrize("path", OLD, ids=[p.stem for p in OLD])
def test_the_beam_is_at_most_the_words_the_output_layer_scores(path):
    """Counted before the layer is cut (and before the precision probe, which times
    beam-wide products), as the cut layer has them: PAD and SOS never picked."""
    decoder = Inference.load(path, {"beam": 1}, CPU).model.decoder
    words = decoder.output.out_features - len(decoder.banned)
    assert Inference.load(path, {"beam": words}, CPU).decode.beam == words
    with pytest.raises(NmtError, match=rf"^--beam {words + 1}: more than the {words} words {path} can output"):
        Inference.load(path, {"beam": words + 1}, CPU)


@pytest.mark.parametrize("path", OLD[:1], ids=[p.stem for p in OLD[:1]])
def test_a_beam_it_does_not_search_with_is_not_checked(path):
    assert Inference.load(path, {"beam": 100_000}, CPU, search=False)  # forced decoding (nmt score --model)
    assert Inference.load(path, {"beam": 100_000, "sampling": True}, CPU)


def test_a_beam_wider_than_the_output_layer_is_a_one_line_error(ckpt, source):
    assert_one_line_error(translate(source, "-m", ckpt, "--beam", 100_000), "--beam 100000: more than the ", "words")


def test_the_precision_probe_times_sampling_rows_not_beam_rows(monkeypatch):
    """Sampling searches no beam: its rows are the batch's samples."""
    shapes = []

    def probe(precision, device, timed):
        shapes.extend(timed)
        return "fp32", "probe"

    monkeypatch.setattr(devices, "resolve_precision", probe)
    choose_precision(DecodeConfig(sampling=True, beam=100_000, nbest=4), ModelConfig(), CPU)
    choose_precision(DecodeConfig(beam=4), ModelConfig(), CPU)
    assert {rows for rows, _, _ in shapes} == {160 // 4 * 4}


# --------------------------------------------------------------------------- sampling's options


@pytest.mark.parametrize("flag, value", [("--topk", 5), ("--topp", 0.5), ("--temperature", 2), ("--seed", 3)])
def test_a_sampling_option_without_sampling_is_a_one_line_error(ckpt, source, flag, value):
    """Search would ignore it."""
    assert_one_line_error(translate(source, "-m", ckpt, flag, value), f"{flag} applies to --sampling")
    assert_one_line_error(translate(source, "-m", ckpt, "--no-sampling", flag, value), f"{flag} applies to --sampling")
    assert_ok(translate(source, "-m", ckpt, "--sampling", flag, value))


# --------------------------------------------------------------------------- ensemble weights


@pytest.mark.parametrize("weights", ["inf,1", "1,nan", "0,1", "-1,2"])
def test_ensemble_weights_are_finite_and_positive(weights):
    with pytest.raises(NmtError, match="^--weights: give 2 finite positive numbers"):
        ensemble_weights(weights, 2)
