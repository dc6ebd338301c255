"""The next word's scores for search: one model, or an ensemble of models.

An ensemble of models m = 1..M with weights w_m (positive, Σ w_m = 1) scores word y as a
weighted product of experts, not renormalised::

    log p(y | y_<t, x) = Σ_m w_m log p_m(y | y_<t, x)

The sum over words of exp(that) is at most 1 (a weighted geometric mean of
distributions); search ranks by it and reports it as the hypothesis' log-probability, so
an ensemble of copies of one model scores exactly as that model does. The members may
differ in architecture but share the target vocabulary: their log-probabilities are
combined in its id space, where a word outside a member's output words (``output_vocab:
target``) is -inf for that member, so the ensemble produces only words every member can.
Alignments and attention come from the first member.

One model is a one-member ensemble whose scores are its output layer's logits over the
words it scores (column j: word ``word_ids(j)``), normalised by search
(:meth:`Scorer.normalizer`): no per-member log-softmax, no copy into the id space.

A member's decoding state is ``(memory, state, feed)`` as ``Seq2Seq.encode`` returns it:
the encoder memory (a row per sentence), each layer's RNN state and the fed-back h̃ (a row
per hypothesis).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Member = tuple  # (memory, state, feed) of one model


class Scorer:
    """Models (``Seq2Seq``, or anything with its ``encode`` and ``decoder``) and their weights."""

    def __init__(self, models: Sequence, weights: Sequence[float] | None = None):
        self.models = list(models)
        total = sum(weights) if weights is not None else len(self.models)
        self.weights = [w / total for w in weights] if weights is not None else [1.0 / len(self.models)] * len(models)
        self.vocab = None if len(self.models) == 1 else self.models[0].decoder.embedding.num_embeddings
        # each member's column of every vocabulary id (None: the id itself); for an ensemble
        # one past its last column, where an -inf column is appended, for a word it does not
        # score; for one model -1
        self.maps = [_columns_of(m.decoder, self.vocab) for m in self.models]

    def encode(self, src: Tensor, lengths: Tensor) -> list[Member]:
        return [model.encode(src, lengths) for model in self.models]

    def step(self, prev: Tensor, members: list[Member], t: int) -> tuple[Tensor, list[Member], Tensor]:
        """Scores (rows, columns) of the words after ``prev`` (rows,), the members' new
        states, and the first member's attention weights (rows, src_len)."""
        total, first, new = None, None, []
        for i, (model, (memory, state, feed)) in enumerate(zip(self.models, members)):
            decoder = model.decoder
            att, state, weights = decoder.step(decoder.embed(prev), state, feed, memory, t)
            new.append((memory, state, att if feed is not None else None))
            scores = decoder.search_scores(att)  # (rows, k), PAD and SOS at -inf
            if self.vocab is None:
                return scores, new, weights
            first = weights if first is None else first
            logp = torch.log_softmax(scores, dim=-1)
            if self.maps[i] is not None:  # into the vocabulary's id space
                logp = torch.cat([logp, logp.new_full((logp.size(0), 1), float("-inf"))], dim=1)[:, self.maps[i]]
            total = logp * self.weights[i] if total is None else total + logp * self.weights[i]
        return total, new, first

    def normalizer(self, scores: Tensor) -> Tensor | float:
        """What to subtract from :meth:`step`'s scores for log-probabilities (rows,), or 0.0."""
        return torch.logsumexp(scores, dim=-1) if self.vocab is None else 0.0

    def word_ids(self, columns: Tensor) -> Tensor:
        """The vocabulary ids of columns of :meth:`step`'s scores."""
        return self.models[0].decoder.word_ids(columns) if self.vocab is None else columns

    def columns(self, ids: Tensor) -> Tensor:
        """The columns of vocabulary ``ids`` (words search can output) in :meth:`step`'s scores."""
        return ids if self.vocab is not None or self.maps[0] is None else self.maps[0][ids]

    def producible(self, ids: Sequence[int]) -> bool:
        """Whether search can output every one of ``ids``."""
        for table, model in zip(self.maps, self.models):
            if table is not None and ids:
                if max(ids) >= table.numel():
                    return False
                columns = table[torch.tensor(ids, device=table.device)]
                if bool(((columns < 0) | (columns == model.decoder.output_ids.numel())).any()):
                    return False
        return True

    @staticmethod
    def select(members: list[Member], rows: Tensor | None = None, sentences: Tensor | None = None) -> list[Member]:
        """The members' states for hypothesis ``rows`` and memory for ``sentences`` (indices)."""
        return [
            (
                memory.select(sentences) if sentences is not None else memory,
                [s.index_select(0, rows) for s in state] if rows is not None else state,
                feed.index_select(0, rows) if feed is not None and rows is not None else feed,
            )
            for memory, state, feed in members
        ]


def _columns_of(decoder, vocab: int | None) -> Tensor | None:
    ids = getattr(decoder, "output_ids", None)
    if ids is None:
        return None
    size = vocab if vocab is not None else int(ids.max()) + 1
    table = torch.full((size,), ids.numel() if vocab is not None else -1, dtype=torch.long, device=ids.device)
    table[ids] = torch.arange(ids.numel(), device=ids.device)
    return table


def scorer_of(model, encoded) -> tuple[Scorer, list[Member]]:
    """``model`` and ``encoded`` as search reads them: a :class:`Scorer` and its members'
    states (a single model's ``encode`` output becomes a one-member list)."""
    if isinstance(model, Scorer):
        return model, encoded
    return Scorer([model]), [encoded]
