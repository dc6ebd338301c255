"""Beam search, batched over sentences.

Each sentence keeps ``beam`` open hypotheses. At every step each open hypothesis is
extended by every word; of the (beam × vocab) extensions per sentence the best 2·beam by
log-probability are looked at in order:

* an extension by EOS among the best ``beam`` is *finished*: it leaves the beam and is
  kept with its ranking score (:mod:`nmt_cli.decode.hypothesis`: GNMT length and
  coverage penalties);
* the best ``beam`` extensions by another word stay open (2·beam candidates always hold
  that many, since at most ``beam`` of them end in EOS).

A sentence is done when it has ``beam`` finished hypotheses and no open one can beat the
worst of them: an open log-probability only falls as words are added, so its best
reachable score is log P / lp(limit) (lp grows with length) with a coverage penalty of 0
(the most it can reach). At the length limit ``max_len_a · src_len + max_len_b`` the open
hypotheses are finished as they are. Done sentences leave the batch, so the work per step
shrinks as the batch empties.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nmt_cli.decode.hypothesis import Hypothesis, coverage_penalty, length_penalty, ranking_score
from nmt_cli.model.seq2seq import Seq2Seq
from nmt_cli.prep.subwords import EOS, PAD, SOS


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


@torch.no_grad()
def beam_search(model: Seq2Seq, encoded: tuple, lengths: Tensor, beam: int, max_len_a: float, max_len_b: int,
                alpha: float = 0.0, beta: float = 0.0, nbest: int = 1, keep_attention: bool = False) -> list[list[Hypothesis]]:
    """The ``nbest`` best hypotheses of each sentence, best first.

    ``encoded`` is ``model.encode(src, lengths)`` for a batch of sentences; lengths (batch,).
    """
    memory, state, feed = encoded
    batch, device = memory.mask.size(0), memory.mask.device
    limits = (lengths.float() * max_len_a + max_len_b).long().clamp(min=1).tolist()
    sentences = [_Sentence(beam, limit, alpha) for limit in limits]
    alive = list(range(batch))  # original index of each sentence still searching

    rows = torch.arange(batch, device=device).repeat_interleave(beam)  # (batch*beam,)
    state = [s.index_select(0, rows) for s in state]  # the memory stays one row per sentence
    feed = feed.index_select(0, rows) if feed is not None else None
    scores = torch.zeros(batch, beam, device=device)  # log P of each open hypothesis
    scores[:, 1:] = float("-inf")  # at first all beams are the same SOS: keep one
    prev = torch.full((batch * beam,), SOS, dtype=torch.long, device=device)
    history = torch.empty(batch * beam, 0, dtype=torch.long, device=device)  # (rows, steps)
    attention = torch.zeros(batch * beam, 0, memory.mask.size(1), device=device)  # (rows, steps, src_len)
    coverage = torch.zeros(batch * beam, memory.mask.size(1), device=device)  # (rows, src_len)
    track_attention = keep_attention or beta > 0

    for t in range(max(limits)):
        n = len(alive)
        att, state, weights = model.decoder.step(model.decoder.embed(prev), state, feed, memory)
        logp = torch.log_softmax(model.decoder.logits(att).float(), dim=-1)  # (n*beam, vocab)
        logp[:, PAD] = logp[:, SOS] = float("-inf")
        weights = weights.float()
        if track_attention:
            coverage = coverage + weights

        # The sentence's best 2*beam extensions are among each hypothesis' own best 2*beam
        # words, so the (beam × vocab) table is never built: (n, beam * 2*beam) candidates.
        per_row = min(2 * beam, logp.size(-1))
        word_logp, words = logp.topk(per_row, dim=-1)  # (n*beam, per_row)
        candidates = (scores.view(-1, 1) + word_logp).view(n, -1)
        top_scores, top = candidates.topk(2 * beam, dim=-1)  # (n, 2*beam), best first
        parent = top // per_row
        word = words.view(n, -1).gather(1, top)
        is_eos = word == EOS
        keep = ~is_eos & ((~is_eos).cumsum(dim=-1) <= beam)  # the best `beam` other extensions
        parent_rows = (parent + torch.arange(n, device=device).unsqueeze(1) * beam)  # (n, 2*beam)

        def hypothesis(i: int, j: int, ended: bool) -> Hypothesis:
            row = int(parent_rows[i, j])
            tokens = history[row].tolist() + ([] if ended else [int(word[i, j])])
            att_rows = torch.cat([attention[row], weights[row].unsqueeze(0)]) if keep_attention else None
            cp = coverage_penalty(coverage[row], memory.mask[i], beta)
            logprob = float(top_scores[i, j])
            return Hypothesis(tokens, ranking_score(logprob, t + 1, alpha, cp), logprob,
                              att_rows.cpu() if att_rows is not None else None)

        eos_hits = (is_eos[:, :beam] & (top_scores[:, :beam] > float("-inf"))).nonzero().tolist()
        for i, j in eos_hits:
            sentences[alive[i]].add(hypothesis(i, j, ended=True))

        next_scores = top_scores[keep].view(n, beam)
        next_rows = parent_rows[keep].view(n, beam)
        next_words = word[keep].view(n, beam)
        still = []
        best_open = next_scores[:, 0].tolist()
        for i, s in enumerate(alive):
            sentence = sentences[s]
            if t + 1 >= sentence.limit:  # out of length: the open hypotheses end here
                for j in keep[i].nonzero().flatten().tolist():
                    if top_scores[i, j] > float("-inf"):
                        sentence.add(hypothesis(i, j, ended=False))
            elif not sentence.done(best_open[i]):
                still.append(i)
        if not still:
            break

        rows = next_rows[still].flatten()  # (len(still)*beam,) parent row of each new open hypothesis
        if len(still) < n:
            memory = memory.select(torch.tensor(still, device=device))
            alive = [alive[i] for i in still]
        state = [s.index_select(0, rows) for s in state]
        feed = att.index_select(0, rows) if feed is not None else None
        history = torch.cat([history.index_select(0, rows), next_words[still].flatten().unsqueeze(1)], dim=1)
        if keep_attention:
            attention = torch.cat([attention.index_select(0, rows), weights.index_select(0, rows).unsqueeze(1)], dim=1)
        if track_attention:
            coverage = coverage.index_select(0, rows)
        scores = next_scores[still]
        prev = next_words[still].flatten()
    return [sentence.finished[:nbest] for sentence in sentences]

