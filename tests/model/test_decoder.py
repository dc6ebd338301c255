"""The attentional decoder: teacher forcing equals step-by-step decoding, padding of the
source or of other sentences changes no logit, initial states, tying."""

from __future__ import annotations

import pytest
import torch
from conftest import PAD_ID, make_batch, random_sequences, tiny_model_config

from nmt_cli.model.decoder import Memory
from nmt_cli.model.seq2seq import Seq2Seq

SRC_VOCAB, TGT_VOCAB = 31, 23
ATTENTIONS = ["bahdanau", "luong_dot", "luong_general"]
GRID = [
    pytest.param(attention, cell, feeding, id=f"{attention}-{cell}-{'feed' if feeding else 'nofeed'}")
    for attention in ATTENTIONS
    for cell in ("gru", "lstm")
    for feeding in (True, False)
]


def build(seed: int = 0, vocab: tuple[int, int] = (SRC_VOCAB, TGT_VOCAB), **overrides) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(tiny_model_config(**overrides), *vocab).eval()


def pairs(lengths: list[tuple[int, int]], seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    src = [random_sequences(1, SRC_VOCAB, s, s, g)[0] for s, _ in lengths]
    tgt = [random_sequences(1, TGT_VOCAB, t, t, g)[0] for _, t in lengths]
    return src, tgt


@pytest.mark.parametrize("attention, cell, feeding", GRID)
def test_a_sentence_gets_the_same_logits_alone_and_batched_with_longer_ones(attention, cell, feeding):
    model = build(attention=attention, cell=cell, input_feeding=feeding, encoder_layers=2, decoder_layers=2)
    src, tgt = pairs([(3, 4), (9, 2), (5, 10), (12, 11), (1, 1)])
    batch = make_batch(src, tgt)
    with torch.no_grad():
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        assert logits.shape == (*batch.tgt_in.shape, TGT_VOCAB)
        for row in range(len(src)):
            alone = make_batch([src[row]], [tgt[row]])
            want = model(alone.src, alone.src_lengths, alone.tgt_in)[0]
            n = len(tgt[row]) + 1
            assert torch.allclose(logits[row, :n], want, atol=1e-5), row


def decode_step_by_step(model: Seq2Seq, batch, step) -> torch.Tensor:
    """h̃ of every target position (batch, tgt_len, output) from ``step(t, prev ids, state,
    feed, memory)``, one position at a time, checking the attention weights on the way."""
    memory, state, feed = model.encode(batch.src, batch.src_lengths)
    outputs = []
    for t in range(batch.tgt_in.size(1)):
        att, state, weights = step(batch.tgt_in[:, t], state, feed, memory, t)
        if feed is not None:
            feed = att
        outputs.append(att)
        assert bool((weights[batch.src == PAD_ID] == 0).all())
        assert torch.allclose(weights.sum(-1), torch.ones(batch.src.size(0)), atol=1e-6)
    return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("attention, cell, feeding", GRID)
def test_teacher_forcing_equals_decoding_step_by_step(attention, cell, feeding):
    """forward() (with its all-steps-at-once paths) computes what step() computes one word
    at a time, as greedy and beam search call it."""
    model = build(attention=attention, cell=cell, input_feeding=feeding, decoder_layers=2)
    src, tgt = pairs([(4, 6), (7, 3), (2, 5)])
    batch = make_batch(src, tgt)
    dec = model.decoder
    with torch.no_grad():
        forced = dec(batch.tgt_in, *model.encode(batch.src, batch.src_lengths))
        stepped = decode_step_by_step(model, batch, lambda prev, *rest: dec.step(dec.embed(prev), *rest))
    assert forced.shape == (len(src), batch.tgt_in.size(1), model.cfg.output_size)
    assert torch.allclose(forced, stepped, atol=1e-5)


@pytest.mark.parametrize("attention, cell, feeding", GRID)
def test_teacher_forcing_gradients_equal_step_by_step_ones(attention, cell, feeding):
    """The gradients of forward() (with its all-steps-at-once paths) are those of step()
    one word at a time."""
    model = build(attention=attention, cell=cell, input_feeding=feeding, decoder_layers=2).train()
    batch = make_batch(*pairs([(4, 6), (7, 3), (2, 5)]))
    dec = model.decoder
    mix = torch.randn(
        len(batch.tgt_in), batch.tgt_in.size(1), model.cfg.output_size, generator=torch.Generator().manual_seed(3)
    )

    def gradients(outputs) -> dict[str, torch.Tensor]:
        model.zero_grad()
        (outputs * mix).sum().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    forced = gradients(dec(batch.tgt_in, *model.encode(batch.src, batch.src_lengths)))
    stepped = gradients(decode_step_by_step(model, batch, lambda prev, *rest: dec.step(dec.embed(prev), *rest)))
    assert forced.keys() == stepped.keys() and any(name.startswith("decoder.rnn.hh") for name in forced)
    for name in forced:
        torch.testing.assert_close(forced[name], stepped[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bridge", [True, False])
@pytest.mark.parametrize("feeding", [True, False])
def test_initial_state(cell, layers, bridge, feeding):
    model = build(cell=cell, decoder_layers=layers, bridge=bridge, input_feeding=feeding)
    batch = make_batch(*pairs([(3, 3), (6, 2)]))
    with torch.no_grad():
        _, state, feed = model.encode(batch.src, batch.src_lengths)
    size = 20 * (2 if cell == "lstm" else 1)  # [h; c] for an LSTM
    assert [s.shape for s in state] == [(2, size)] * layers
    if bridge:
        assert all(s.abs().sum() > 0 for s in state)
        assert all(bool((s.abs() <= 1).all()) for s in state)  # tanh
    else:
        assert all(bool((s == 0).all()) for s in state)
        assert model.decoder.bridge is None
    if feeding:
        assert feed is not None and feed.shape == (2, 14) and bool((feed == 0).all())
    else:
        assert feed is None


def test_bridge_reads_the_source():
    """With a bridge, the decoder's initial state depends on the source sentence."""
    model = build(bridge=True)
    with torch.no_grad():
        states = [model.encode(b.src, b.src_lengths)[1][0] for b in (make_batch([[5, 6, 7]]), make_batch([[8, 9]]))]
    assert not torch.allclose(states[0], states[1])


def test_tie_output_and_share_embeddings_share_one_table():
    model = build(share_embeddings=True, tie_output=True, vocab=(TGT_VOCAB, TGT_VOCAB))  # sharing: a joint vocabulary
    assert model.encoder.embedding is model.decoder.embedding
    assert model.decoder.output.weight is model.decoder.embedding.weight
    untied = build()
    assert untied.encoder.embedding is not untied.decoder.embedding
    assert untied.decoder.output.weight is not untied.decoder.embedding.weight


def test_memory_select_takes_rows():
    states, keys = torch.randn(4, 5, 3), torch.randn(4, 5, 2)
    mask = torch.rand(4, 5) > 0.5
    picked = Memory(states, keys, mask).select(torch.tensor([2, 0, 2]))
    assert torch.equal(picked.states, states[[2, 0, 2]])
    assert torch.equal(picked.keys, keys[[2, 0, 2]])
    assert torch.equal(picked.mask, mask[[2, 0, 2]])


TARGET_WORDS = [1, 3, 5, 7, 11]  # UNK, EOS and three words: PAD joins them as column 0


def test_a_target_vocabulary_scores_its_words_alone_with_the_whole_layers_weights():
    full = build(seed=4)
    torch.manual_seed(4)
    target = Seq2Seq(tiny_model_config(output_vocab="target"), SRC_VOCAB, TGT_VOCAB, TARGET_WORDS).eval()
    assert target.decoder.output_ids.tolist() == [PAD_ID, *TARGET_WORDS]
    att = torch.randn(3, full.cfg.output_size)
    with torch.no_grad():
        torch.testing.assert_close(target.decoder.logits(att), full.decoder.logits(att)[:, [PAD_ID, *TARGET_WORDS]])
        scores = target.decoder.search_scores(att)
    assert torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()  # PAD never; SOS is not there
    assert target.decoder.word_ids(torch.tensor([1, 5])).tolist() == [1, 11]


def test_a_target_vocabulary_loss_is_over_its_words_and_counts_any_other_as_unk():
    torch.manual_seed(5)
    model = Seq2Seq(tiny_model_config(output_vocab="target"), SRC_VOCAB, TGT_VOCAB, TARGET_WORDS).eval()
    att = torch.randn(1, 4, model.cfg.output_size, requires_grad=True)
    target = torch.tensor([[3, 11, 4, PAD_ID]])  # 4 is not among the words: it counts as UNK (column 1)
    eps = 0.1
    loss, nll = model.decoder.losses(att, target, eps)
    logp = torch.log_softmax(model.decoder.logits(att).double(), dim=-1)[0]  # (4, 6): PAD UNK EOS 5 7 11
    picked = logp[[0, 1, 2], [2, 5, 1]]
    torch.testing.assert_close(nll.double(), -picked.sum())
    smoothed = (1 - eps) * -picked + eps * -logp[:3].mean(dim=-1)
    torch.testing.assert_close(loss.double(), smoothed.sum())
    loss.backward()
    rows = model.decoder.output.weight.grad.abs().sum(dim=1)  # (vocab,)
    kept = torch.zeros(TGT_VOCAB, dtype=torch.bool)
    kept[[PAD_ID, *TARGET_WORDS]] = True
    assert (rows[~kept] == 0).all() and (rows[kept] > 0).all()  # the other words' rows are never scored


def test_a_target_vocabulary_needs_its_word_list():
    with pytest.raises(ValueError, match="target words"):
        Seq2Seq(tiny_model_config(output_vocab="target"), SRC_VOCAB, TGT_VOCAB)
