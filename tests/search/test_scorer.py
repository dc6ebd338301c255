"""Ensembles: one model, or two copies of it, search as that model does; weights mix the
members' log-probabilities; members scoring different word lists combine in the
vocabulary's id space."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_batch
from test_beam import A, B, Bigram, toy_table
from test_greedy import VOCAB, sources, untrained

from nmt_cli.model.rewrites import inference_decoder
from nmt_cli.search.beam import beam_search
from nmt_cli.search.greedy import greedy_encoded
from nmt_cli.search.scorer import Scorer
from nmt_cli.vocab import EOS, SOS


def searched(model, seqs, beam=1):
    batch = make_batch(seqs)
    encoded = model.encode(batch.src, batch.src_lengths)
    if beam == 1:
        return [[h] for h in greedy_encoded(model, encoded, batch.src_lengths, 1.5, 10)]
    return beam_search(model, encoded, batch.src_lengths, beam, 1.5, 10, nbest=beam)


@pytest.mark.parametrize("beam", [1, 4])
def test_one_model_and_two_copies_of_it_search_as_that_model(beam):
    model, seqs = untrained(seed=1), sources(9, seed=2)
    alone = searched(model, seqs, beam)
    for members in ([model], [model, model]):
        for hyps, expected in zip(searched(Scorer(members), seqs, beam), alone):
            assert [h.tokens for h in hyps] == [h.tokens for h in expected]
            assert [h.logprob for h in hyps] == pytest.approx([h.logprob for h in expected], abs=1e-4)


class Toy(Bigram):
    embedding = torch.nn.Embedding(9, 1)  # the vocabulary size an ensemble reads


def test_weights_mix_the_members_log_probabilities():
    one = Toy(toy_table({SOS: {A: 0.7, B: 0.3}}))
    two = Toy(toy_table({SOS: {A: 0.1, B: 0.9}}))
    lengths = torch.tensor([2])
    for (w1, w2), word in (((0.8, 0.2), A), ((0.3, 0.7), B)):
        scorer = Scorer([one, two], [w1 * 2, w2 * 2])  # scaled to sum 1
        (hyp,) = greedy_encoded(scorer, [one.encoded([2]), two.encoded([2])], lengths, 0.0, 3)
        p1, p2 = (t.table[SOS].log_softmax(-1) for t in (one, two))
        assert hyp.tokens == [word]
        expected = w1 * float(p1[word]) + w2 * float(p2[word])
        expected += w1 * float(one.table[word].log_softmax(-1)[EOS]) + w2 * float(two.table[word].log_softmax(-1)[EOS])
        assert hyp.logprob == pytest.approx(expected, abs=1e-4)


def test_members_scoring_different_words_combine_by_vocabulary_id():
    """A word one member cannot output is -inf for the ensemble."""
    model = untrained(seed=3)
    full = torch.arange(VOCAB)
    restricted = untrained(seed=3)
    restricted.decoder = inference_decoder(restricted.decoder, full[(full != 7) & (full != 9)])
    whole = untrained(seed=3)
    whole.decoder = inference_decoder(whole.decoder, full)
    seqs = sources(20, seed=8)
    scorer = Scorer([restricted, whole])
    for (hyp,) in searched(scorer, seqs):
        assert not {7, 9} & set(hyp.tokens)
    assert scorer.producible([4, 5]) and not scorer.producible([4, 7])
    alone = searched(model, seqs)
    assert [h.tokens for (h,) in searched(Scorer([whole, whole]), seqs)] == [h.tokens for (h,) in alone]
    assert not math.isnan(searched(scorer, seqs)[0][0].logprob)
