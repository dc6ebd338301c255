"""Each rewrite of ``model/rewrites.py`` gives the reference network's outputs: the
training decoder its losses and gradients (teacher forcing and scheduled sampling), the
inference decoder and fused encoder its scores (teacher forcing and step by step, with a
cut and a restricted output layer). The fused encoder alone and hard attention:
``test_architectures.py``; the int8 model: ``tests/decode/test_translator.py``."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import PAD_ID, SOS_ID, make_batch, random_sequences, tiny_model_config

from nmt_cli.config import DecodeConfig
from nmt_cli.model.rewrites import (
    FusedEncoder,
    InferenceDecoder,
    Int8Linear,
    TrainingDecoder,
    for_inference,
    for_training,
    inference_decoder,
)
from nmt_cli.model.seq2seq import Seq2Seq

SRC_VOCAB, TGT_VOCAB = 31, 23
TARGET_WORDS = [1, 3, 5, 7, 11]  # UNK, EOS and three words (output_vocab: target)
GRID = [
    pytest.param(dict(attention=attention, cell=cell, input_feeding=feeding, decoder_layers=2), id=name)
    for attention in ("bahdanau", "luong_dot", "luong_general")
    for cell in ("gru", "lstm")
    for feeding in (True, False)
    for name in [f"{attention}-{cell}-{'feed' if feeding else 'nofeed'}"]
] + [pytest.param(dict(output_vocab="target"), id="target-words")]


def build(seed: int = 0, **overrides) -> Seq2Seq:
    torch.manual_seed(seed)
    words = TARGET_WORDS if overrides.get("output_vocab") == "target" else None
    return Seq2Seq(tiny_model_config(**overrides), SRC_VOCAB, TGT_VOCAB, words).eval()


def batch_of(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return make_batch(random_sequences(4, SRC_VOCAB, 2, 8, g), random_sequences(4, TGT_VOCAB, 1, 9, g))


def search_scores(model: Seq2Seq, batch) -> torch.Tensor:
    """The search scores (batch, tgt_len, k) of every step, stepping as search does."""
    dec = model.decoder
    memory, state, feed = model.encode(batch.src, batch.src_lengths)
    scores = []
    for t in range(batch.tgt_in.size(1)):
        att, state, _ = dec.step(dec.embed(batch.tgt_in[:, t]), state, feed, memory, t)
        feed = att if feed is not None else None
        scores.append(dec.search_scores(att))
    return torch.stack(scores, dim=1)


@pytest.mark.parametrize("overrides", GRID)
@pytest.mark.parametrize("ratio", [1.0, 0.5])
def test_the_training_rewrite_gives_the_reference_losses_and_gradients(overrides, ratio):
    reference = build(dropout=0.1, **overrides).train()
    model = copy.deepcopy(reference)
    parameters = list(model.parameters())
    net = for_training(model)
    assert isinstance(model.decoder, TrainingDecoder) and list(net.parameters()) == parameters
    assert model.state_dict().keys() == reference.state_dict().keys()
    batch = batch_of()
    got, want = [], []
    for m, run, out in ((reference, reference.loss, want), (model, net, got)):
        torch.manual_seed(2)  # the same dropout masks and sampled words
        loss, nll = run(batch, 0.1, ratio)
        loss.backward()
        out += [loss, nll, *(p.grad for p in m.parameters())]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)
    assert model.decoder._joined == (None, None)  # a step outside a pass is the reference's


@pytest.mark.parametrize("overrides", GRID)
def test_the_inference_rewrite_gives_the_reference_scores(overrides):
    reference = build(**overrides)
    model = for_inference(copy.deepcopy(reference), DecodeConfig(), torch.device("cpu"))
    assert isinstance(model.decoder, InferenceDecoder) and isinstance(model.encoder, FusedEncoder)
    assert (model.decoder.output.out_features == len(TARGET_WORDS) + 1) == ("output_vocab" in overrides)
    batch = batch_of()
    with torch.no_grad():
        torch.testing.assert_close(  # teacher forcing (forced decoding)
            model(batch.src, batch.src_lengths, batch.tgt_in),
            reference(batch.src, batch.src_lengths, batch.tgt_in),
            atol=1e-5,
            rtol=1e-4,
        )
        torch.testing.assert_close(search_scores(model, batch), search_scores(reference, batch), atol=1e-5, rtol=1e-4)


def test_a_restricted_output_layer_scores_the_kept_words_as_the_whole_layer_does():
    model = build()
    att = torch.randn(5, model.cfg.output_size)
    full = model.decoder.search_scores(att)  # (5, vocab), PAD and SOS at -inf
    assert torch.isinf(full[:, [PAD_ID, SOS_ID]]).all() and torch.isfinite(full[:, 3:]).all()
    ids = torch.tensor([0, 2, 3, 5, 7, 11])  # PAD and SOS are dropped from any list
    dec = inference_decoder(model.decoder, ids)
    kept = dec.search_scores(att)  # (5, 4)
    assert dec.output_ids.tolist() == [3, 5, 7, 11] and dec.output.out_features == 4
    torch.testing.assert_close(kept, full[:, [3, 5, 7, 11]])
    assert dec.word_ids(torch.tensor([[0, 3], [1, 2]])).tolist() == [[3, 11], [5, 7]]


@pytest.mark.parametrize("bias", [True, False])
def test_an_int8_layer_is_close_to_its_float_layer_and_each_row_its_own(bias):
    """Within int8's rounding of the float layer, for rows of any scale (3-D inputs too);
    a row's output is the same bits alone as in any batch, and a row of zeros gives the bias."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 40, bias=bias)
    int8 = Int8Linear(layer)
    x = torch.randn(3, 7, 64) * torch.logspace(-3, 2, 7).view(1, 7, 1)
    x[0, 0] = 0
    with torch.no_grad():
        expected, got = layer(x), int8(x)
    assert got.shape == expected.shape
    error = (got - expected).abs().amax(-1) / expected.abs().amax(-1).clamp_min(1e-9)
    assert error[:, 1:].max() < 0.03 and torch.equal(got[0, 0], layer.bias if bias else torch.zeros(40))
    rows = x.reshape(-1, 64)
    alone = torch.cat([int8(rows[i : i + 1]) for i in range(len(rows))])
    assert torch.equal(alone, int8(rows)) and torch.equal(int8(rows.flip(0)), alone.flip(0))
