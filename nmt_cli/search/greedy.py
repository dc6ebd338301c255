"""Greedy decoding: at each step take the single most probable word.

Batched: all sentences step together; a sentence stops as soon as it has produced EOS or
reached its length limit ``max_len_a * src_len + max_len_b``, and finished sentences leave
the batch, so the work per step shrinks as sentences finish. The rows left are rounded up
to a multiple of ``STEP_ROWS`` (finished rows stay as padding, their words dropped): the
matrix-product library compiles a kernel for each shape it meets (see ``shapes.py``).

With a :class:`~nmt_cli.search.sampling.Sampler` each word is drawn instead of taken as
the best; with :class:`~nmt_cli.search.sampling.Prefixes` a sentence's first words are
its prefix, scored as the model scores them (the length limit is then at least the
prefix and EOS).
"""

from __future__ import annotations

import torch
from torch import Tensor

from nmt_cli.model.seq2seq import Seq2Seq
from nmt_cli.model.shapes import STEP_ROWS, rounded_rows
from nmt_cli.search.hypothesis import Hypothesis, output_limits
from nmt_cli.search.sampling import Prefixes, Sampler
from nmt_cli.search.scorer import Scorer, scorer_of
from nmt_cli.vocab import EOS, PAD, SOS


@torch.no_grad()
def greedy(model: Seq2Seq, src: Tensor, lengths: Tensor, max_len_a: float, max_len_b: int) -> list[Hypothesis]:
    """The greedy translation of each sentence; src (batch, src_len)."""
    return greedy_encoded(model, model.encode(src, lengths), lengths, max_len_a, max_len_b)


@torch.no_grad()
def greedy_encoded(
    model: Seq2Seq | Scorer,
    encoded: tuple,
    lengths: Tensor,
    max_len_a: float,
    max_len_b: int,
    keep_attention: bool = False,
    logprobs: bool = True,
    row_multiple: int = STEP_ROWS,
    sampler: Sampler | None = None,
    prefixes: Prefixes | None = None,
) -> list[Hypothesis]:
    """:func:`greedy` from ``encoded``, ``model.encode(src, lengths)``, when the caller has it
    (or a :class:`~nmt_cli.search.scorer.Scorer` and its ``encode``).

    Without ``logprobs`` the per-step softmax normalizer is skipped (a pass over the
    vocabulary for every word) and hypotheses carry NaN scores. The rows left are rounded
    up to a multiple of ``row_multiple``.
    """
    scorer, members = scorer_of(model, encoded)
    mask = members[0][0].mask
    batch, src_len, device = mask.size(0), mask.size(1), mask.device
    limits = output_limits(lengths, max_len_a, max_len_b).to(device)  # (batch,)
    if prefixes is not None:
        limits = torch.maximum(limits, prefixes.lengths[:batch] + 1)
    steps = int(limits.max())
    limits = torch.cat([limits, limits.new_zeros(1)])  # (batch+1,): row `batch` is the sink, never going on
    # one row more than the batch: the sink, where rows kept only as padding write
    tokens = torch.full((batch + 1, steps), PAD, dtype=torch.long, device=device)
    word_logp = torch.full((batch + 1, steps), 0.0 if logprobs else float("nan"), device=device)
    attention = torch.zeros(batch + 1, steps, src_len, device=device) if keep_attention else None
    alive = torch.arange(batch, device=device)  # original index of each row (the sink's for a finished one)
    prev = torch.full((batch,), SOS, dtype=torch.long, device=device)
    for t in range(steps):
        scores, members, weights = scorer.step(prev, members, t)  # (rows, words)
        normalizer = scorer.normalizer(scores) if logprobs else None
        if prefixes is not None:
            scores = prefixes.force(scores, alive, t, scorer.columns)
        if sampler is None:
            best, column = scores.max(dim=-1)  # (rows,)
        else:
            column = sampler.draw(scores, alive, t)
            best = scores.gather(1, column.unsqueeze(1)).squeeze(1)
        prev = scorer.word_ids(column)
        tokens[alive, t] = prev
        if normalizer is not None:
            word_logp[alive, t] = best - normalizer
        if attention is not None:
            attention[alive, t] = weights.float()
        going = (prev != EOS) & (limits[alive] > t + 1)  # (rows,)
        if not bool(going.all()):
            n = int(going.sum())
            if n == 0:
                break
            alive = torch.where(going, alive, batch)
            rows = rounded_rows(n, alive.numel(), row_multiple)
            if rows < alive.numel():
                keep = torch.argsort((~going).to(torch.uint8), stable=True)[:rows]  # going rows first
                alive, prev = alive[keep], prev[keep]
                members = scorer.select(members, keep, keep)
    return [
        _hypothesis(row, lp, att)
        for row, lp, att in zip(
            tokens[:batch].tolist(),
            word_logp[:batch].cpu(),
            attention[:batch].cpu() if attention is not None else [None] * batch,
        )
    ]


def _hypothesis(row: list[int], logprobs: Tensor, attention: Tensor | None) -> Hypothesis:
    """One sentence's output row (PAD after its last step) as a hypothesis."""
    steps = row.index(EOS) + 1 if EOS in row else (row.index(PAD) if PAD in row else len(row))
    logprob = float(logprobs[:steps].sum())
    words = row[: steps - 1] if steps and row[steps - 1] == EOS else row[:steps]
    return Hypothesis(words, logprob, logprob, attention[:steps] if attention is not None else None)
