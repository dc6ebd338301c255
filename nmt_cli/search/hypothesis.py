"""A finished translation hypothesis, GNMT's length and coverage penalties, and the
limit on a hypothesis' length.

Beam search ranks finished hypotheses by (Wu et al. 2016, "Google's NMT system")::

    score(Y, X) = log P(Y|X) / lp(Y) + cp(X; Y)
    lp(Y) = ((5 + |Y|) / 6) ** α
    cp(X; Y) = β · Σ_i log(min(Σ_j a_ij, 1))

where |Y| counts the generated tokens (EOS included) and a_ij is the attention weight on
source position i at target step j. α = 0 and β = 0 give plain log-probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor


@dataclass
class Hypothesis:
    tokens: list[int]  # target ids, without SOS and EOS
    score: float  # the ranking score above
    logprob: float  # log P(Y|X), EOS included when the hypothesis ended with one
    attention: Tensor | None = None  # (steps, src_len) weights per output step, if kept


def length_penalty(length: int, alpha: float) -> float:
    return ((5.0 + length) / 6.0) ** alpha if alpha else 1.0


def coverage_penalty(coverage: Tensor, mask: Tensor, beta: float) -> float:
    """β Σ_i log(min(Σ_j a_ij, 1)) over real source positions; coverage, mask (src_len,)."""
    if not beta:
        return 0.0
    covered = coverage[mask].float().clamp(min=1e-10, max=1.0)
    return beta * float(covered.log().sum())


def ranking_score(logprob: float, length: int, alpha: float, cp: float = 0.0) -> float:
    return logprob / length_penalty(length, alpha) + cp if logprob > -math.inf else -math.inf


def output_limits(lengths: Tensor, max_len_a: float, max_len_b: int) -> Tensor:
    """The most subwords (EOS included) a search may output for sources of ``lengths``
    (EOS included): ``max_len_a * length + max_len_b``, at least 1."""
    return (lengths.float() * max_len_a + max_len_b).long().clamp(min=1)
