"""The encoder: shapes, zeros at padding, final states, and a sentence's outputs that do
not depend on what it is batched with."""

from __future__ import annotations

import pytest
import torch
from conftest import PAD_ID, make_batch, random_sequences, tiny_model_config
from torch import nn

from nmt_cli.model.encoder import Encoder, Packing

VOCAB = 30
LENGTHS = [4, 9, 1, 6, 9]  # words before EOS: unsorted, ties, a one-word sentence
GRID = [
    pytest.param(cell, bidirectional, layers, id=f"{cell}-{'bi' if bidirectional else 'uni'}-{layers}l")
    for cell in ("gru", "lstm")
    for bidirectional in (True, False)
    for layers in (1, 2)
]


def build(cell: str, bidirectional: bool, layers: int, dropout: float = 0.0, seed: int = 0) -> Encoder:
    torch.manual_seed(seed)
    cfg = tiny_model_config(
        cell=cell, bidirectional=bidirectional, encoder_layers=layers, dropout=dropout, emb_dropout=dropout
    )
    encoder = Encoder(cfg, nn.Embedding(VOCAB, cfg.emb_size, padding_idx=PAD_ID))
    return encoder.eval()


def sources(seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [random_sequences(1, VOCAB, n, n, g)[0] for n in LENGTHS]


@pytest.mark.parametrize("cell, bidirectional, layers", GRID)
def test_shapes_and_zero_states_at_padding(cell, bidirectional, layers):
    encoder = build(cell, bidirectional, layers)
    batch = make_batch(sources())
    states, final_h, final_c = encoder(batch.src, batch.src_lengths)
    size = 12 * (2 if bidirectional else 1)
    assert encoder.output_size == size
    assert states.shape == (*batch.src.shape, size)
    assert final_h.shape == (len(LENGTHS), size)
    if cell == "gru":
        assert final_c is None
    else:
        assert final_c.shape == (len(LENGTHS), size)
    padding = batch.src == PAD_ID
    assert padding.any()
    assert bool((states[padding] == 0).all())
    assert bool((states[~padding].abs().sum(-1) > 0).all())


@pytest.mark.parametrize("cell, bidirectional, layers", GRID)
def test_states_are_zero_at_padding_in_training_mode_too(cell, bidirectional, layers):
    encoder = build(cell, bidirectional, layers, dropout=0.3).train()
    batch = make_batch(sources())
    states, _, _ = encoder(batch.src, batch.src_lengths)
    assert bool((states[batch.src == PAD_ID] == 0).all())
    encoder.eval()
    with torch.no_grad():
        assert not torch.equal(states.detach(), encoder(batch.src, batch.src_lengths)[0])  # dropout was on


@pytest.mark.parametrize("cell, bidirectional, layers", GRID)
def test_a_sentence_encodes_the_same_alone_and_in_a_padded_batch(cell, bidirectional, layers):
    encoder = build(cell, bidirectional, layers)
    sents = sources()
    batch = make_batch(sents)
    with torch.no_grad():
        states, final_h, final_c = encoder(batch.src, batch.src_lengths)
        for row, sent in enumerate(sents):
            alone = make_batch([sent])
            s1, h1, c1 = encoder(alone.src, alone.src_lengths)
            n = len(sent) + 1
            assert torch.allclose(states[row, :n], s1[0], atol=1e-5), row
            assert torch.allclose(final_h[row], h1[0], atol=1e-5), row
            if cell == "lstm":
                assert torch.allclose(final_c[row], c1[0], atol=1e-5), row


@pytest.mark.parametrize("cell, bidirectional, layers", GRID)
def test_final_state_is_each_direction_at_its_own_sentence_end(cell, bidirectional, layers):
    """The forward direction ends at the sentence's last token (EOS), not at the padded
    end; the backward direction ends at position 0, having started at that EOS."""
    encoder = build(cell, bidirectional, layers)
    batch = make_batch(sources())
    with torch.no_grad():
        states, final_h, _ = encoder(batch.src, batch.src_lengths)
    hidden = 12
    for row, n in enumerate(batch.src_lengths.tolist()):
        assert torch.allclose(final_h[row, :hidden], states[row, n - 1, :hidden], atol=1e-6), row
        if bidirectional:
            assert torch.allclose(final_h[row, hidden:], states[row, 0, hidden:], atol=1e-6), row


@pytest.mark.parametrize("cell, bidirectional, layers", GRID)
def test_extra_padding_columns_change_nothing(cell, bidirectional, layers):
    encoder = build(cell, bidirectional, layers)
    batch = make_batch(sources())
    wide = torch.cat([batch.src, torch.full((batch.src.size(0), 3), PAD_ID)], dim=1)
    with torch.no_grad():
        states, h, c = encoder(batch.src, batch.src_lengths)
        states2, h2, c2 = encoder(wide, batch.src_lengths)
    assert torch.allclose(states2[:, : batch.src.size(1)], states, atol=1e-6)
    assert bool((states2[:, batch.src.size(1) :] == 0).all())
    assert torch.allclose(h, h2, atol=1e-6)


def load_torch_rnn(encoder: Encoder, ref: nn.GRU | nn.LSTM) -> None:
    """Copy an nn.GRU/nn.LSTM's weights into the encoder. The one place these tests know
    the encoder's parameter layout: per layer, ``ih`` (both directions' input products in
    one Linear), ``hh_weight`` (dirs, hidden, gates) and, for a GRU, ``hh_bias``."""
    suffixes = ["", "_reverse"][: 2 if ref.bidirectional else 1]
    with torch.no_grad():
        for k, layer in enumerate(encoder.layers):
            get = lambda name, k=k: [getattr(ref, f"{name}_l{k}{s}") for s in suffixes]  # noqa: E731
            layer.ih.weight.copy_(torch.cat(get("weight_ih")))
            if layer.hh_bias is None:  # LSTM: one bias
                layer.ih.bias.copy_(torch.cat([a + b for a, b in zip(get("bias_ih"), get("bias_hh"))]))
            else:
                layer.ih.bias.copy_(torch.cat(get("bias_ih")))
                layer.hh_bias.copy_(torch.stack(get("bias_hh"))[:, None, :])
            layer.hh_weight.copy_(torch.stack([w.t() for w in get("weight_hh")]))


@pytest.mark.parametrize("cell, bidirectional, layers", GRID)
def test_encoder_computes_what_torch_rnn_computes(cell, bidirectional, layers):
    """Against nn.GRU / nn.LSTM over packed sequences, with the same weights."""
    encoder = build(cell, bidirectional, layers)
    torch.manual_seed(1)
    ref = (nn.GRU if cell == "gru" else nn.LSTM)(
        16, 12, num_layers=layers, bidirectional=bidirectional, batch_first=True
    )
    load_torch_rnn(encoder, ref)
    batch = make_batch(sources())
    with torch.no_grad():
        states, final_h, final_c = encoder(batch.src, batch.src_lengths)
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            encoder.embedding(batch.src), batch.src_lengths, batch_first=True, enforce_sorted=False
        )
        out, final = ref(packed)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=batch.src.size(1))
    dirs = 2 if bidirectional else 1
    h, c = final if cell == "lstm" else (final, None)
    assert torch.allclose(states, out, atol=1e-5)
    assert torch.allclose(final_h, torch.cat(list(h[-dirs:]), dim=-1), atol=1e-5)
    if cell == "lstm":
        assert torch.allclose(final_c, torch.cat(list(c[-dirs:]), dim=-1), atol=1e-5)


@pytest.mark.parametrize("cell, bidirectional, layers", GRID)
def test_encoder_gradients_are_what_torch_rnn_gets(cell, bidirectional, layers):
    """Against autograd through nn.GRU / nn.LSTM with the same weights and the same loss:
    the packed steps, their rows rounded up (``STEP_ROWS``), the ended rows' final states."""
    encoder = build(cell, bidirectional, layers).train()
    torch.manual_seed(1)
    ref = (nn.GRU if cell == "gru" else nn.LSTM)(
        16, 12, num_layers=layers, bidirectional=bidirectional, batch_first=True
    )
    load_torch_rnn(encoder, ref)
    batch = make_batch(sources())
    states, final_h, _ = encoder(batch.src, batch.src_lengths)
    mix = torch.randn(states.shape, generator=torch.Generator().manual_seed(2))
    ((states * mix).sum() + final_h.square().sum()).backward()
    x = encoder.embedding(batch.src).detach()
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, batch.src_lengths, batch_first=True, enforce_sorted=False)
    out, final = ref(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=batch.src.size(1))
    h = final[0] if cell == "lstm" else final
    dirs = 2 if bidirectional else 1
    ((out * mix).sum() + torch.cat(list(h[-dirs:]), dim=-1).square().sum()).backward()
    suffixes = ["", "_reverse"][:dirs]
    for k, layer in enumerate(encoder.layers):
        grads = lambda name, k=k: [getattr(ref, f"{name}_l{k}{s}").grad for s in suffixes]  # noqa: E731
        torch.testing.assert_close(
            layer.hh_weight.grad, torch.stack([g.t() for g in grads("weight_hh")]), atol=1e-5, rtol=1e-4
        )
        torch.testing.assert_close(layer.ih.weight.grad, torch.cat(grads("weight_ih")), atol=1e-5, rtol=1e-4)
        if layer.hh_bias is not None:
            torch.testing.assert_close(
                layer.hh_bias.grad, torch.stack(grads("bias_hh"))[:, None, :], atol=1e-5, rtol=1e-4
            )


def test_packing_lists_each_steps_real_tokens_for_both_directions():
    """Rows sorted by length 3, 2, 2, 1 in a grid of 4 columns: step t holds the rows
    longer than t; forward reads position t, backward position len - 1 - t."""
    packing = Packing.of(torch.tensor([3, 2, 2, 1]), length=4, dirs=2)
    assert packing.steps == [4, 3, 1]
    assert (packing.batch, packing.length) == (4, 4)
    forward = [(0, 0), (1, 0), (2, 0), (3, 0), (0, 1), (1, 1), (2, 1), (0, 2)]  # (row, position)
    backward = [(0, 2), (1, 1), (2, 1), (3, 0), (0, 1), (1, 0), (2, 0), (0, 0)]
    assert packing.index.tolist() == [[b * 4 + s for b, s in forward], [b * 4 + s for b, s in backward]]
    assert Packing.of(torch.tensor([3, 2, 2, 1]), length=4, dirs=1).index.tolist() == packing.index[:1].tolist()


def test_word_dropout_drops_whole_source_words_in_training_only():
    """With word_dropout near 1 every word's embedding is zeroed: the states are those of
    an all-zero input, whatever the words; in evaluation the words count again."""
    torch.manual_seed(0)
    cfg = tiny_model_config(cell="gru", dropout=0.0, emb_dropout=0.0, word_dropout=0.999)
    encoder = Encoder(cfg, nn.Embedding(VOCAB, cfg.emb_size, padding_idx=PAD_ID)).train()
    a, b = make_batch(sources(1)), make_batch(sources(2))
    torch.manual_seed(1)
    dropped_a, _, _ = encoder(a.src, a.src_lengths)
    torch.manual_seed(1)
    dropped_b, _, _ = encoder(b.src, b.src_lengths)
    assert torch.allclose(dropped_a, dropped_b)  # the same lengths, every word dropped
    encoder.eval()
    assert not torch.allclose(encoder(a.src, a.src_lengths)[0], encoder(b.src, b.src_lengths)[0])
