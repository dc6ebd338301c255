"""GNMT's length and coverage penalties and the ranking score of a finished hypothesis."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import EOS_ID, make_batch, sources, untrained

from nmt_cli.search.beam import beam_search
from nmt_cli.search.greedy import greedy_encoded
from nmt_cli.search.hypothesis import Hypothesis, coverage_penalty, length_penalty, output_limits, ranking_score


@pytest.mark.parametrize("length", [0, 1, 7, 50])
def test_alpha_zero_is_no_length_penalty(length):
    assert length_penalty(length, 0.0) == 1.0


@pytest.mark.parametrize("length, alpha, want", [(1, 1.0, 1.0), (7, 1.0, 2.0), (7, 0.6, 2.0**0.6), (19, 0.5, 2.0)])
def test_length_penalty_is_gnmt_formula(length, alpha, want):
    assert length_penalty(length, alpha) == pytest.approx(want)


def test_length_penalty_grows_with_length():
    values = [length_penalty(n, 0.6) for n in range(1, 30)]
    assert values == sorted(values) and len(set(values)) == len(values)


def test_coverage_penalty_is_zero_without_beta():
    assert coverage_penalty(torch.tensor([0.0, 0.1]), torch.tensor([True, True]), 0.0) == 0.0


def test_coverage_penalty_sums_the_log_of_capped_coverage_over_real_positions():
    coverage = torch.tensor([0.5, 2.0, 0.25, 0.0])  # the last position is padding
    mask = torch.tensor([True, True, True, False])
    want = 0.4 * (math.log(0.5) + math.log(1.0) + math.log(0.25))
    assert coverage_penalty(coverage, mask, 0.4) == pytest.approx(want, rel=1e-6)


def test_full_coverage_costs_nothing_and_an_unattended_word_costs_a_lot():
    mask = torch.tensor([True, True])
    assert coverage_penalty(torch.tensor([1.0, 3.0]), mask, 1.0) == pytest.approx(0.0)
    never = coverage_penalty(torch.tensor([1.0, 0.0]), mask, 1.0)
    assert math.isfinite(never) and never < -20  # clamped at 1e-10, not -inf


def test_ranking_score():
    assert ranking_score(-3.0, 4, 0.0) == -3.0
    assert ranking_score(-3.0, 7, 1.0) == pytest.approx(-1.5)
    assert ranking_score(-3.0, 7, 1.0, -0.25) == pytest.approx(-1.75)
    assert ranking_score(float("-inf"), 3, 0.6, -1.0) == float("-inf")


def test_a_longer_hypothesis_is_penalized_less_per_word_with_alpha():
    """With alpha > 0 the same log-probability ranks higher when it is spread over more words."""
    assert ranking_score(-6.0, 10, 0.6) > ranking_score(-6.0, 3, 0.6)


def test_hypothesis_fields():
    hyp = Hypothesis([4, 5], -1.0, -2.0)
    assert (hyp.tokens, hyp.score, hyp.logprob, hyp.attention) == ([4, 5], -1.0, -2.0, None)


@pytest.mark.parametrize("beam", [1, 3])
@pytest.mark.parametrize("a, b", [(1.5, 2), (0.0, 1), (2.0, 0), (1.0, 5)])
def test_greedy_and_beam_stop_at_the_one_length_rule(beam, a, b):
    """A model that never ends by itself writes max(1, a·(source length + EOS) + b) words."""
    model = untrained()
    with torch.no_grad():
        model.decoder.output.bias[EOS_ID] = -1e4
    seqs = sources()
    batch = make_batch(seqs)
    encoded = model.encode(batch.src, batch.src_lengths)
    if beam == 1:
        lengths = [[len(h.tokens)] for h in greedy_encoded(model, encoded, batch.src_lengths, a, b)]
    else:
        hyps = beam_search(model, encoded, batch.src_lengths, beam, a, b, nbest=beam)
        lengths = [[len(h.tokens) for h in line] for line in hyps]
    want = [max(1, int((len(s) + 1) * a + b)) for s in seqs]  # source length counts its EOS
    assert output_limits(batch.src_lengths, a, b).tolist() == want
    assert lengths == [[n] * len(line) for n, line in zip(want, lengths)]
