"""Sampling: each output word drawn from the model's distribution, truncated and tempered,
and target prefixes forced on search.

With s_i the log-probability (up to a constant) of word i, temperature T and
truncation to a set K of words::

    p_i ∝ exp(s_i / T)  for i in K, else 0

where K is every word, the ``topk`` most probable words, or (``topp`` < 1, nucleus
sampling) the smallest set of most probable words whose mass under exp(s/T) is at least
``topp``. T → 0 tends to greedy search, as does ``topk`` 1. PAD and SOS are never drawn
(their scores are -inf).

The draw is by inverse CDF: with u uniform in [0, 1), the word is the first i (in
descending probability when truncated, else in column order) whose cumulative
probability exceeds u · Σ p. Each sentence (and each sample of a sentence) reads its
own uniforms, one a step, from a generator seeded from (seed, line, sample): a line's
output does not depend on which lines share its batch, nor on their order. A
hypothesis' reported log-probability is the model's own (untempered, untruncated) one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

_MIX = 0x9E3779B97F4A7C15  # an odd 64-bit constant: (seed, line, sample) to one generator seed


@dataclass
class Sampler:
    """Draws for a batch: ``uniforms`` (sentences + 1, steps), the last row a sink's."""

    uniforms: Tensor
    topk: int = 0
    topp: float = 1.0
    temperature: float = 1.0

    @classmethod
    def seeded(cls, keys: Sequence[tuple[int, int]], steps: Sequence[int], seed: int, device, **options) -> Sampler:
        """Uniforms for sentences keyed (line, sample), as many as each one's length limit
        ``steps`` (a count that depends on the sentence alone, as its draws must)."""
        table = torch.zeros(len(keys) + 1, max(steps, default=1))
        for row, ((line, sample), count) in enumerate(zip(keys, steps)):
            table[row, :count] = _uniforms(seed, line, sample, count)
        return cls(table.to(device), **options)

    def draw(self, scores: Tensor, sentences: Tensor, t: int) -> Tensor:
        """Columns (rows,) drawn from ``scores`` (rows, columns) for rows of ``sentences``."""
        logits = scores / self.temperature
        if self.topk:
            logits, order = logits.topk(min(self.topk, logits.size(-1)), dim=-1)  # sorted, most probable first
        elif self.topp < 1.0:
            logits, order = logits.sort(dim=-1, descending=True)
        else:
            order = None
        probs = torch.softmax(logits, dim=-1)
        if self.topp < 1.0:  # keep a word while the mass before it is under topp
            probs = probs * ((probs.cumsum(dim=-1) - probs) < self.topp)
        cdf = probs.cumsum(dim=-1)
        target = self.uniforms[sentences, t].unsqueeze(1) * cdf[:, -1:]
        pick = (cdf <= target).sum(dim=-1).clamp(max=cdf.size(-1) - 1)
        return pick if order is None else order.gather(1, pick.unsqueeze(1)).squeeze(1)


def _uniforms(seed: int, line: int, sample: int, steps: int) -> Tensor:
    mixed = ((seed * _MIX + line) * _MIX + sample) % (1 << 63)
    return torch.rand(steps, generator=torch.Generator().manual_seed(mixed))


class Prefixes:
    """Target prefixes (vocabulary ids, no EOS) forced on the first steps of search."""

    def __init__(self, prefixes: Sequence[Sequence[int]], device):
        self.longest = max((len(p) for p in prefixes), default=0)
        self.lengths = torch.tensor([len(p) for p in prefixes] + [0], device=device)  # a sink row last
        ids = torch.zeros(len(prefixes) + 1, max(self.longest, 1), dtype=torch.long)
        for i, p in enumerate(prefixes):
            ids[i, : len(p)] = torch.tensor(p, dtype=torch.long)
        self.ids = ids.to(device)

    def force(self, scores: Tensor, sentences: Tensor, t: int, columns) -> Tensor:
        """``scores`` (rows, columns) where every column but the prefix word's is -inf in
        the rows of ``sentences`` still in their prefix at step ``t``; ``columns(ids)``: the
        columns of words."""
        if t >= self.longest:
            return scores
        forced = self.lengths[sentences] > t
        if not bool(forced.any()):
            return scores
        column = columns(self.ids[sentences, t]).clamp(min=0).unsqueeze(1)  # rows not forced: any column
        only = torch.full_like(scores, float("-inf")).scatter_(1, column, scores.gather(1, column))
        return torch.where(forced.unsqueeze(1), only, scores)
