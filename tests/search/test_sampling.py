"""Sampling and target prefixes: the same seed gives the same words, batched or not; top-k
1 and a temperature near 0 are greedy; the draws follow the softmax; prefixes are forced
in greedy and beam search and scored as the model scores them."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import EOS_ID, PAD_ID, SOS_ID, make_batch
from test_beam import TRAP, A, B, Bigram, C, D, toy_table
from test_greedy import sources, untrained

from nmt_cli.search.beam import beam_search
from nmt_cli.search.greedy import greedy_encoded
from nmt_cli.search.hypothesis import output_limits
from nmt_cli.search.sampling import Prefixes, Sampler


def sample(model, seqs, seed=1, lines=None, a=1.5, b=10, **options):
    """Samples of ``seqs`` (lines numbered ``lines``, else 0..n-1) in one batch."""
    batch = make_batch(seqs)
    lines = lines if lines is not None else range(len(seqs))
    steps = output_limits(batch.src_lengths, a, b).tolist()
    sampler = Sampler.seeded([(i, 0) for i in lines], steps, seed, "cpu", **options)
    encoded = model.encode(batch.src, batch.src_lengths)
    return greedy_encoded(model, encoded, batch.src_lengths, a, b, sampler=sampler)


def greedy_words(model, seqs):
    batch = make_batch(seqs)
    return [
        h.tokens for h in greedy_encoded(model, model.encode(batch.src, batch.src_lengths), batch.src_lengths, 1.5, 10)
    ]


def test_the_same_seed_gives_the_same_words_batched_or_not():
    model, seqs = untrained(), sources(12, seed=4)
    together = [h.tokens for h in sample(model, seqs)]
    assert together == [h.tokens for h in sample(model, seqs)]
    assert together != [h.tokens for h in sample(model, seqs, seed=2)]
    for i, seq in enumerate(seqs):
        assert [h.tokens for h in sample(model, [seq], lines=[i])] == [together[i]]
    order = list(reversed(range(len(seqs))))
    assert [h.tokens for h in sample(model, [seqs[i] for i in order], lines=order)] == [together[i] for i in order]


def test_top_k_1_and_a_temperature_near_0_are_greedy():
    model, seqs = untrained(seed=2), sources(10, seed=6)
    expected = greedy_words(model, seqs)
    assert [h.tokens for h in sample(model, seqs, topk=1)] == expected
    assert [h.tokens for h in sample(model, seqs, temperature=1e-4)] == expected


def test_samples_keep_the_length_limit_and_hold_no_special_ids():
    model, seqs = untrained(seed=3), sources(20, seed=7)
    limits = output_limits(make_batch(seqs).src_lengths, 0.5, 2).tolist()
    for hyp, limit in zip(sample(model, seqs, a=0.5, b=2, temperature=3.0), limits):
        assert len(hyp.tokens) + 1 <= limit or len(hyp.tokens) == limit
        assert not {PAD_ID, SOS_ID, EOS_ID} & set(hyp.tokens)
        assert math.isfinite(hyp.logprob)


FIRST = toy_table({SOS_ID: {A: 0.5, B: 0.3, C: 0.2}})  # then EOS for sure


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, {A: 0.5, B: 0.3, C: 0.2}),
        ({"topk": 2}, {A: 0.625, B: 0.375}),
        ({"topp": 0.7}, {A: 0.625, B: 0.375}),  # the mass before C is 0.8: C is left out
        ({"temperature": 2.0}, None),
    ],
)
def test_draws_follow_the_truncated_tempered_softmax(options, expected):
    model, n = Bigram(FIRST), 4000
    lengths = torch.full((n,), 3)
    sampler = Sampler.seeded([(i, 0) for i in range(n)], [3] * n, 7, "cpu", **options)
    hyps = greedy_encoded(model, model.encoded([3] * n), lengths, 0.0, 3, sampler=sampler)
    if expected is None:  # p ∝ p_model^(1/T), the whole table (the floor words too)
        weights = FIRST[SOS_ID].div(2.0).softmax(-1)
        expected = {w: float(weights[w]) for w in (A, B, C)}
    counts = {w: sum(h.tokens[:1] == [w] for h in hyps) / n for w in expected}
    for word, p in expected.items():
        assert counts[word] == pytest.approx(p, abs=0.03)
    assert all(h.tokens and h.tokens[0] not in (PAD_ID, SOS_ID) for h in hyps)
    for h in hyps:  # the reported score is the model's own log-probability
        assert h.logprob == pytest.approx(float(FIRST[SOS_ID].log_softmax(-1)[h.tokens[0]]), abs=1e-4)


@pytest.mark.parametrize("feed", [False, True])
def test_greedy_and_beam_begin_with_the_prefix_and_score_it(feed):
    model = Bigram(TRAP)
    lengths = torch.tensor([3, 3, 3])
    prefixes = Prefixes([[B], [A, D], []], "cpu")
    greedy_hyps = greedy_encoded(model, model.encoded([3, 3, 3], feed), lengths, 0.0, 5, prefixes=prefixes)
    assert [h.tokens for h in greedy_hyps] == [[B], [A, D], [A, C]]
    assert greedy_hyps[0].logprob == pytest.approx(math.log(0.4), abs=1e-5)
    assert greedy_hyps[1].logprob == pytest.approx(math.log(0.6 * 0.3 * 0.5), abs=1e-5)
    results = beam_search(model, model.encoded([3, 3, 3], feed), lengths, 3, 0.0, 5, nbest=3, prefixes=prefixes)
    assert results[0][0].tokens == [B] and all(h.tokens[:1] == [B] for h in results[0])
    assert results[1][0].tokens[:2] == [A, D] and all(h.tokens[:2] == [A, D] for h in results[1])
    assert results[1][0].logprob == pytest.approx(math.log(0.6 * 0.3 * 0.5), abs=1e-5)
    assert results[2][0].tokens == [B]  # no prefix: the beam's own best


def test_an_empty_prefix_is_no_prefix_and_the_limit_makes_room_for_a_prefix():
    model, seqs = untrained(seed=5), sources(8, seed=9)
    batch = make_batch(seqs)
    encoded = model.encode(batch.src, batch.src_lengths)
    empty = Prefixes([[]] * len(seqs), "cpu")
    plain = greedy_encoded(model, encoded, batch.src_lengths, 1.5, 10)
    assert [h.tokens for h in greedy_encoded(model, encoded, batch.src_lengths, 1.5, 10, prefixes=empty)] == [
        h.tokens for h in plain
    ]
    beams = beam_search(model, encoded, batch.src_lengths, 3, 1.5, 10)
    assert [
        [h.tokens for h in hs] for hs in beam_search(model, encoded, batch.src_lengths, 3, 1.5, 10, prefixes=empty)
    ] == [[h.tokens for h in hs] for hs in beams]
    long = Prefixes([[5, 6, 7, 8, 9, 10]] * len(seqs), "cpu")
    for hyp in greedy_encoded(model, encoded, batch.src_lengths, 0.0, 2, prefixes=long):
        assert hyp.tokens[:6] == [5, 6, 7, 8, 9, 10] and len(hyp.tokens) <= 7
