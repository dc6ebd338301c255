"""Beam search, batched over sentences.

Each sentence keeps ``beam`` open hypotheses. At every step each open hypothesis is
extended by every word; of the (beam × vocab) extensions per sentence the best 2·beam by
log-probability are looked at in order:

* an extension by EOS among the best ``beam`` is *finished*: it leaves the beam and is
  kept with its ranking score (:mod:`nmt_cli.search.hypothesis`: GNMT length and
  coverage penalties);
* the best ``beam`` extensions by another word stay open (2·beam candidates always hold
  that many, since at most ``beam`` of them end in EOS).

A sentence is done when it has ``beam`` finished hypotheses and no open one can beat the
worst of them: an open log-probability only falls as words are added, so its best
reachable score is log P / lp(limit) (lp grows with length) with a coverage penalty of 0
(the most it can reach). At the length limit ``max_len_a · src_len + max_len_b`` the open
hypotheses are finished as they are. Done sentences leave the batch, so the work per step
shrinks as the batch empties. With :class:`~nmt_cli.search.sampling.Prefixes`, a
sentence's only extension while in its prefix is the prefix's next word, scored as the
model scores it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from nmt_cli.model.seq2seq import Seq2Seq
from nmt_cli.search.hypothesis import Hypothesis, coverage_penalty, length_penalty, output_limits, ranking_score
from nmt_cli.search.sampling import Prefixes
from nmt_cli.search.scorer import Scorer, scorer_of
from nmt_cli.vocab import EOS, SOS


class _Sentence:
    """The finished hypotheses of one sentence and when it is done."""

    def __init__(self, beam: int, limit: int, alpha: float):
        self.beam, self.limit, self.alpha = beam, limit, alpha
        self.finished: list[Hypothesis] = []

    def add(self, hyp: Hypothesis) -> None:
        self.finished.append(hyp)
        self.finished.sort(key=lambda h: -h.score)
        del self.finished[self.beam :]

    def done(self, best_open_logprob: float) -> bool:
        if len(self.finished) < self.beam:
            return False
        reachable = best_open_logprob / length_penalty(self.limit, self.alpha) if self.alpha else best_open_logprob
        return reachable <= self.finished[-1].score


@dataclass
class _Candidates:
    """The best 2·beam extensions of each sentence at one step, best first: (n, 2*beam) each."""

    scores: Tensor  # log P of the extended hypothesis
    rows: Tensor  # the row (n*beam indexing) of the hypothesis extended
    words: Tensor  # the word it is extended by
    open: Tensor  # True for the best `beam` extensions that do not end the hypothesis

    @classmethod
    def best(
        cls, logits: Tensor, normalizer: Tensor | float, scores: Tensor, beam: int, word_ids: Callable[[Tensor], Tensor]
    ) -> _Candidates:
        """From word scores (n*beam, words), their normalizer (n*beam,) and open scores
        (n, beam); column j of ``logits`` is the word ``word_ids(j)``.

        A sentence's best 2·beam extensions are among each hypothesis' own best 2·beam
        words, so the (beam × vocab) table is never built: n × (beam × 2·beam) candidates.
        The softmax keeps the order of a row's words, so they are picked by score and only
        the picked ones are normalized: log P = z - logsumexp(z), no log-probability table.
        """
        n = scores.size(0)
        per_row = min(2 * beam, logits.size(-1))
        word_logp, words = logits.topk(per_row, dim=-1)  # (n*beam, per_row)
        word_logp -= normalizer.unsqueeze(1) if isinstance(normalizer, Tensor) else normalizer
        top_scores, top = (scores.view(-1, 1) + word_logp).view(n, -1).topk(2 * beam, dim=-1)
        rows = top // per_row + torch.arange(n, device=logits.device).unsqueeze(1) * beam
        word = word_ids(words.view(n, -1).gather(1, top))
        not_eos = word != EOS
        return cls(top_scores, rows, word, not_eos & (not_eos.cumsum(dim=-1) <= beam))


class _Search:
    """The open hypotheses of the sentences still searching (``beam`` rows each, sentence
    by sentence) and the finished ones of every sentence."""

    def __init__(
        self,
        limits: list[int],
        beam: int,
        alpha: float,
        beta: float,
        keep_attention: bool,
        src_len: int,
        device: torch.device,
    ):
        self.beam, self.alpha, self.beta, self.keep_attention = beam, alpha, beta, keep_attention
        self.sentences = [_Sentence(beam, limit, alpha) for limit in limits]
        self.alive = list(range(len(limits)))  # original index of each sentence still searching
        rows = len(limits) * beam
        self.scores = torch.zeros(len(limits), beam, device=device)  # (n, beam) log P of the open hypotheses
        self.scores[:, 1:] = float("-inf")  # at first every beam is the same SOS: keep one
        self.history = torch.empty(rows, 0, dtype=torch.long, device=device)  # (rows, steps) words
        self.attention = torch.zeros(rows, 0, src_len, device=device)  # (rows, steps, src_len), if kept
        self.coverage = torch.zeros(rows, src_len, device=device)  # (rows, src_len) attention summed over steps

    def finish(self, c: _Candidates, i: int, j: int, step: int, weights: Tensor, mask: Tensor, ended: bool) -> None:
        """Candidate j of sentence i leaves the beam: by EOS (``ended``) or at the length limit."""
        row = int(c.rows[i, j])
        tokens = self.history[row].tolist() + ([] if ended else [int(c.words[i, j])])
        attention = torch.cat([self.attention[row], weights[row].unsqueeze(0)]).cpu() if self.keep_attention else None
        cp = coverage_penalty(self.coverage[row], mask, self.beta)
        logprob = float(c.scores[i, j])
        self.sentences[self.alive[i]].add(
            Hypothesis(tokens, ranking_score(logprob, step + 1, self.alpha, cp), logprob, attention)
        )

    def searching(self, c: _Candidates, step: int, weights: Tensor, mask: Tensor) -> list[int]:
        """Finish what ends at this step; the positions (in ``alive``) of sentences not done."""
        real = c.scores > float("-inf")
        ends = (c.words[:, : self.beam] == EOS) & real[:, : self.beam]  # EOS among the best `beam`
        for i, j in ends.nonzero().tolist():
            self.finish(c, i, j, step, weights, mask[i], ended=True)
        best_open = c.scores[c.open].view(-1, self.beam)[:, 0].tolist()
        still = []
        for i, s in enumerate(self.alive):
            if step + 1 >= self.sentences[s].limit:  # out of length: the open hypotheses end here
                for j in (c.open[i] & real[i]).nonzero().flatten().tolist():
                    self.finish(c, i, j, step, weights, mask[i], ended=False)
            elif not self.sentences[s].done(best_open[i]):
                still.append(i)
        return still

    def advance(self, c: _Candidates, still: list[int], weights: Tensor) -> tuple[Tensor, Tensor]:
        """Keep the open extensions of the ``still`` sentences; returns the parent row of each
        new open hypothesis (to reorder the decoder state by) and its word."""
        rows = c.rows[c.open].view(-1, self.beam)[still].flatten()  # (len(still)*beam,)
        words = c.words[c.open].view(-1, self.beam)[still].flatten()
        self.scores = c.scores[c.open].view(-1, self.beam)[still]
        self.alive = [self.alive[i] for i in still]
        self.history = torch.cat([self.history.index_select(0, rows), words.unsqueeze(1)], dim=1)
        if self.keep_attention:
            self.attention = torch.cat(
                [self.attention.index_select(0, rows), weights.index_select(0, rows).unsqueeze(1)], dim=1
            )
        if self.beta:
            self.coverage = self.coverage.index_select(0, rows)
        return rows, words


@torch.no_grad()
def beam_search(
    model: Seq2Seq | Scorer,
    encoded: tuple,
    lengths: Tensor,
    beam: int,
    max_len_a: float,
    max_len_b: int,
    alpha: float = 0.0,
    beta: float = 0.0,
    nbest: int = 1,
    keep_attention: bool = False,
    prefixes: Prefixes | None = None,
) -> list[list[Hypothesis]]:
    """The ``nbest`` best hypotheses of each sentence, best first.

    ``encoded`` is ``model.encode(src, lengths)`` for a batch of sentences (or a
    :class:`~nmt_cli.search.scorer.Scorer` and its ``encode``); lengths (batch,). The
    encoder memory stays one row per sentence: the decoder attends for a sentence's
    ``beam`` hypotheses at once (see ``Decoder._attend``).
    """
    scorer, members = scorer_of(model, encoded)
    mask = members[0][0].mask
    batch, device = mask.size(0), mask.device
    limits = output_limits(lengths, max_len_a, max_len_b)
    if prefixes is not None:
        limits = torch.maximum(limits, prefixes.lengths[:batch].cpu() + 1)
    limits = limits.tolist()
    search = _Search(limits, beam, alpha, beta, keep_attention, mask.size(1), device)
    prev = torch.full((batch,), SOS, dtype=torch.long, device=device)  # one row a sentence at first
    for step in range(max(limits)):
        logits, members, weights = scorer.step(prev, members, step)  # (n*beam, words)
        if step == 0:  # every hypothesis is SOS: the decoder ran once a sentence, its rows are copied
            logits, weights = logits.repeat_interleave(beam, dim=0), weights.repeat_interleave(beam, dim=0)
            members = scorer.select(members, torch.arange(batch, device=device).repeat_interleave(beam))
        weights = weights.float()  # (n*beam, src_len)
        if beta:
            search.coverage = search.coverage + weights
        normalizer = scorer.normalizer(logits)
        if prefixes is not None:
            sentences = torch.tensor(search.alive, device=device).repeat_interleave(beam)
            logits = prefixes.force(logits, sentences, step, scorer.columns)
        candidates = _Candidates.best(logits, normalizer, search.scores, beam, scorer.word_ids)
        still = search.searching(candidates, step, weights, mask)
        if not still:
            break
        if len(still) < len(search.alive):
            mask = mask[still]
            members = scorer.select(members, sentences=torch.tensor(still, device=device))
        rows, prev = search.advance(candidates, still, weights)
        members = scorer.select(members, rows)
    return [sentence.finished[:nbest] for sentence in search.sentences]
