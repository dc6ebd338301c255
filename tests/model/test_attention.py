"""Attention: scores of each kind, exactly zero weight on source padding, shapes."""

from __future__ import annotations

import pytest
import torch

from nmt_cli.model.attention import Attention

KINDS = ["bahdanau", "luong_dot", "luong_general"]
QUERY, MEMORY, ATT = 6, 8, 5
LENGTHS = [5, 2, 7, 1]  # unsorted, one of a single token


def make_attention(kind: str, steps: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    query_size = MEMORY if kind == "luong_dot" else QUERY
    attention = Attention(kind, query_size, MEMORY, ATT)
    batch, src_len = len(LENGTHS), max(LENGTHS)
    mask = torch.arange(src_len)[None, :] < torch.tensor(LENGTHS)[:, None]
    memory = torch.randn(batch, src_len, MEMORY) * mask[..., None]  # zero at padding, as the encoder's
    query = torch.randn(batch, steps, query_size)
    return attention, query, memory, mask


def expected_scores(attention: Attention, kind: str, query, memory):
    """The paper formulas, written out independently of the module's code."""
    if kind == "luong_dot":
        return torch.einsum("btq,bsq->bts", query, memory)
    if kind == "luong_general":  # q^T W h
        return torch.einsum("btq,qm,bsm->bts", query, attention.key_layer.weight, memory)
    w_q, w_k, v = attention.query_layer.weight, attention.key_layer.weight, attention.v.weight[0]
    hidden = torch.tanh((query @ w_q.T)[:, :, None, :] + (memory @ w_k.T)[:, None, :, :])
    return hidden @ v


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_weights_are_a_distribution_over_real_positions(kind):
    attention, query, memory, mask = make_attention(kind)
    context, weights = attention(query, attention.keys(memory), memory, mask)
    assert context.shape == (len(LENGTHS), 3, MEMORY)
    assert weights.shape == (len(LENGTHS), 3, max(LENGTHS))
    assert torch.allclose(weights.sum(-1), torch.ones(len(LENGTHS), 3), atol=1e-6)
    assert bool((weights >= 0).all())


@pytest.mark.parametrize("kind", KINDS)
def test_padding_gets_exactly_zero_weight(kind):
    attention, query, memory, mask = make_attention(kind)
    _, weights = attention(query, attention.keys(memory), memory, mask)
    padding = ~mask[:, None, :].expand_as(weights)
    assert padding.any()
    assert bool((weights[padding] == 0).all()), weights[padding]
    assert bool((weights[~padding] > 0).all())
    # a single-token source puts all weight on its one token
    assert torch.equal(weights[3, :, 0], torch.ones(3))


@pytest.mark.parametrize("kind", KINDS)
def test_what_lies_in_padding_changes_nothing(kind):
    """Garbage (huge values) in the padded memory rows must not leak into the context."""
    attention, query, memory, mask = make_attention(kind)
    context, weights = attention(query, attention.keys(memory), memory, mask)
    dirty = memory + 1e4 * torch.randn_like(memory) * (~mask)[..., None]
    context2, weights2 = attention(query, attention.keys(dirty), dirty, mask)
    assert torch.equal(weights, weights2)
    assert torch.allclose(context, context2, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_scores_follow_the_formula(kind):
    attention, query, memory, mask = make_attention(kind)
    context, weights = attention(query, attention.keys(memory), memory, mask)
    scores = expected_scores(attention, kind, query, memory).masked_fill(~mask[:, None, :], float("-inf"))
    want = torch.softmax(scores, dim=-1)
    assert torch.allclose(weights, want, atol=1e-6)
    assert torch.allclose(context, want @ memory, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_each_step_attends_independently(kind):
    """Queries of several steps at once give what each step gives alone (Luong without
    input feeding attends for all steps in one call)."""
    attention, query, memory, mask = make_attention(kind, steps=4)
    keys = attention.keys(memory)
    context, weights = attention(query, keys, memory, mask)
    for t in range(4):
        c, w = attention(query[:, t : t + 1], keys, memory, mask)
        assert torch.allclose(c[:, 0], context[:, t], atol=1e-6)
        assert torch.allclose(w[:, 0], weights[:, t], atol=1e-6)


def test_only_luong_dot_has_no_parameters():
    counts = {kind: sum(p.numel() for p in Attention(kind, MEMORY, MEMORY, ATT).parameters()) for kind in KINDS}
    assert counts["luong_dot"] == 0
    assert counts["luong_general"] == MEMORY * MEMORY  # W of q^T W h, no bias
    assert counts["bahdanau"] == 2 * MEMORY * ATT + ATT  # W_q, W_k and v, no biases


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown attention"):
        Attention("luong_concat", 4, 4, 4)
