"""The attentional decoder: one step predicts the next target word.

With s the decoder RNN's top state, c the attention context, y the previous word's
embedding and h̃ the attentional state that predicts the word:

``bahdanau`` (Bahdanau et al. 2015): attend with the previous state, feed the context in::

    c_t = attend(s_{t-1});  s_t = RNN([y_{t-1}; c_t; h̃_{t-1}], s_{t-1});  h̃_t = tanh(W_o [s_t; c_t])

``luong_*`` (Luong et al. 2015): attend with the new RNN output::

    s_t = RNN([y_{t-1}; h̃_{t-1}], s_{t-1});  c_t = attend(s_t);  h̃_t = tanh(W_c [s_t; c_t])

``h̃_{t-1}`` in the RNN input is *input feeding* (``input_feeding``); without it, and with
Luong attention, the RNN does not depend on attention at all, so the attention and
output layers run once over all time steps after the recurrence.

Then P(y_t) = softmax(W_out dropout(h̃_t)), W_out optionally tied to the target embedding.
The softmax runs over the whole target vocabulary, or over a list of words
(``output_vocab: target``: those of the training targets), W_out's rows for them alone;
a word outside the list is then scored as UNK.

This is the reference network. ``rewrites.py`` makes it faster for training and for
inference by overriding how a step makes its products (:meth:`Decoder.embed`,
:meth:`Decoder.layer0`, :meth:`Decoder.query`, :meth:`Decoder.logits`), never the equations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nmt_cli.config import ModelConfig
from nmt_cli.device import to_autocast_dtype
from nmt_cli.model.attention import Attention
from nmt_cli.model.dropout import Dropout
from nmt_cli.model.loss import Workspace, projected_losses
from nmt_cli.model.rnn import StackedCells
from nmt_cli.model.shapes import over_rounded_rows
from nmt_cli.vocab import PAD, SOS, UNK


@dataclass
class Memory:
    """What the decoder reads from the encoder, computed once per batch."""

    states: Tensor  # (batch, src_len, memory) encoder outputs
    keys: Tensor  # (batch, src_len, key) precomputed attention keys
    mask: Tensor  # (batch, src_len) True at real tokens

    def select(self, index: Tensor) -> Memory:
        """Rows ``index`` of the batch (beam search, finished sentences leaving)."""
        return Memory(*(x.index_select(0, index) for x in (self.states, self.keys, self.mask)))


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig, embedding: nn.Embedding, memory: int, vocab: int, words: Tensor | None = None):
        super().__init__()
        self.cfg = cfg
        self.embedding = embedding
        self.emb_dropout = Dropout(cfg.emb_dropout)
        self.word_dropout = Dropout(cfg.word_dropout, whole=True)
        self.bahdanau = cfg.attention == "bahdanau"
        parts = {"emb": cfg.emb_size}
        if self.bahdanau:
            parts["context"] = memory
        if cfg.input_feeding:
            parts["feed"] = cfg.output_size
        self.rnn = StackedCells(cfg.cell, parts, cfg.decoder_hidden, cfg.decoder_layers, cfg.dropout, cfg.residual)
        self.attention = Attention(cfg.attention, cfg.decoder_hidden, memory, cfg.attention_size, cfg.heads, cfg.window)
        self.pre_output = nn.Linear(cfg.decoder_hidden + memory, cfg.output_size)
        self.dropout = Dropout(cfg.dropout)
        self.output = nn.Linear(cfg.output_size, vocab)
        if cfg.tie_output:
            self.output.weight = embedding.weight
        self.workspace = Workspace()  # the output layer's score table under the loss, kept between batches
        # The words the output layer scores, if not all (``words``: ``output_vocab: target``):
        # column j is word output_ids[j], columns[i] word i's column (UNK's for a word not
        # scored). The layer stays whole (and tied): its rows for these words are taken at
        # each call. Not saved: a checkpoint's vocabulary holds the list
        # (``saved.load_model``).
        self.register_buffer("output_ids", None, persistent=False)  # (k,)
        self.register_buffer("columns", None, persistent=False)  # (vocab,)
        self.banned: list[int] = [PAD, SOS]  # columns search never picks
        if words is not None:  # PAD kept as column 0: a PAD target still marks padding for the loss
            ids = torch.unique(torch.cat([words.long().cpu(), torch.tensor([PAD, UNK])]))  # sorted
            self.columns = torch.full((vocab,), int((ids == UNK).nonzero()), dtype=torch.long)
            self.columns[ids] = torch.arange(ids.numel())
            self.output_ids, self.banned = ids, [j for j, i in enumerate(ids.tolist()) if i in (PAD, SOS)]
        bridge_in = memory * (2 if cfg.cell == "lstm" else 1)
        self.bridge = nn.Linear(bridge_in, cfg.decoder_layers * self.rnn.state_size) if cfg.bridge else None

    def init_state(self, final_h: Tensor, final_c: Tensor | None) -> tuple[list[Tensor], Tensor | None]:
        """Initial RNN state per layer (batch, state) and the initial fed-back h̃ (zeros)."""
        batch = final_h.size(0)
        if self.bridge is not None:
            source = final_h if final_c is None else torch.cat([final_h, final_c], dim=-1)
            state = list(torch.tanh(self.bridge(source)).float().chunk(self.cfg.decoder_layers, dim=-1))
        else:  # one zero tensor for every layer: a state is never written in place
            state = [final_h.new_zeros(batch, self.rnn.state_size, dtype=torch.float32)] * self.cfg.decoder_layers
        feed = final_h.new_zeros(batch, self.cfg.output_size) if self.cfg.input_feeding else None
        return state, feed

    def embed(self, tokens: Tensor) -> Tensor:
        """The previous words as :meth:`step` reads them: layer 0's input product of their
        embeddings, (...,) ids -> (..., gates*hidden), for all steps at once under teacher forcing."""
        emb = self.emb_dropout(self.word_dropout(self.embedding(tokens)))  # (..., emb)
        return over_rounded_rows(self.rnn.inputs["emb"], emb)

    def step(self, emb_in: Tensor, state: list[Tensor], feed: Tensor | None, memory: Memory, t: int = 0):
        """Decoder step ``t`` (0-based target position), the module docstring's equations.

        ``emb_in`` (rows, ·): the previous words, from :meth:`embed`; ``state``: each layer's
        s_{t-1} (rows, state); ``feed``: h̃_{t-1} (rows, output) with input feeding, else None.
        ``rows`` is the memory's batch or a multiple of it (see :meth:`_attend`). Returns h̃_t
        (rows, output), the new state, and the attention weights (rows, src_len).
        """
        parts = {} if feed is None else {"feed": feed}
        if self.bahdanau:
            query, recurrent = self.query(state[-1][:, : self.rnn.hidden])
            context, weights = self._attend(query, memory, t, projected=recurrent is not None)
            h, state = self.rnn(self.layer0(emb_in, {**parts, "context": context}), state, recurrent)
        else:
            h, state = self.rnn(self.layer0(emb_in, parts), state)
            context, weights = self._attend(h, memory, t)
        return self._attentional(h, context), state, weights

    def layer0(self, emb_in: Tensor, parts: dict[str, Tensor]) -> Tensor:
        """Layer 0's input product (rows, gates*hidden): the previous words' ``emb_in`` plus
        W_k x_k for each other part (``feed``: h̃_{t-1}, ``context``: c_t)."""
        for name, x in parts.items():
            emb_in = emb_in + self.rnn.project(name, x)
        return emb_in

    def query(self, state: Tensor) -> tuple[Tensor, Tensor | None]:
        """Bahdanau's query from s_{t-1} (rows, hidden), which the attention projects, and the
        top layer's recurrent product W_hh s_{t-1} + b_hh where made here (the RNN makes it)."""
        return state, None

    def _attend(self, query: Tensor, memory: Memory, t: int, projected: bool = False) -> tuple[Tensor, Tensor]:
        """Attention for queries (rows, hidden) over a memory of ``rows / group`` sentences;
        ``projected``: the queries are Bahdanau's W_q s already (:meth:`query`).

        Rows come in groups of consecutive rows that share a sentence (the hypotheses of a
        beam), so the memory is never copied per hypothesis: a group is attention's
        "steps" dimension. Returns context (rows, memory) and weights (rows, src_len).
        """
        rows, sentences = query.size(0), memory.mask.size(0)
        context, weights = self.attention(
            query.view(sentences, rows // sentences, -1), memory.keys, memory.states, memory.mask, t, projected
        )
        return context.reshape(rows, -1), weights.reshape(rows, -1)

    def forward(self, tgt_in: Tensor, memory: Memory, state: list[Tensor], feed: Tensor | None) -> Tensor:
        """Teacher forcing over a whole target: tgt_in (batch, tgt_len) -> h̃ (batch, tgt_len, output)."""
        emb_in = self.embed(tgt_in)  # (batch, tgt_len, ·), all steps in one product
        if not self.bahdanau and feed is None:
            return self._forward_luong_no_feed(emb_in, memory, state)
        outputs = []
        for t, emb_t in enumerate(emb_in.unbind(1)):  # unbind: one backward op, not a full-size zero fill per step
            att, state, _ = self.step(emb_t, state, feed, memory, t)
            outputs.append(att)
            if feed is not None:
                feed = att
        return torch.stack(outputs, dim=1)

    def _forward_luong_no_feed(self, emb_in: Tensor, memory: Memory, state: list[Tensor]) -> Tensor:
        """Recurrence alone step by step; attention and h̃ for all steps at once."""
        tops = []
        for emb_t in emb_in.unbind(1):
            h, state = self.rnn(self.layer0(emb_t, {}), state)
            tops.append(h)
        h = torch.stack(tops, dim=1)  # (batch, tgt_len, hidden)
        positions = torch.arange(h.size(1), device=h.device)
        context, _ = self.attention(h, memory.keys, memory.states, memory.mask, positions)
        return self._attentional(h, context)

    def _attentional(self, h: Tensor, context: Tensor) -> Tensor:
        """h̃ = tanh(W_c [h; c]): (..., hidden) and (..., memory) -> (..., output).

        Joined in the context's dtype: under autocast the attention's products are bf16
        or fp16 already, and the fp32 RNN output would be cast to it by W_c anyway.
        """
        return torch.tanh(self.pre_output(torch.cat([h.to(context.dtype), context], dim=-1)))

    def sampled(self, tgt_in: Tensor, memory: Memory, state: list[Tensor], feed: Tensor | None, ratio: float) -> Tensor:
        """Scheduled sampling (Bengio et al. 2015): scores (batch, tgt_len, k) where step
        t > 0 reads the reference word y_{t-1} with probability ``ratio`` (per sentence and
        step) and otherwise the model's own greedy choice at t-1 (no gradient through the
        choice). The output layer runs inside the loop, so this path costs more than
        :meth:`forward`, which is the ratio-1 case.
        """
        rows = self._output_rows()  # once: taken at every step, the rows (and their gradient) would be copied per step
        scores, prev = [], tgt_in[:, 0]  # SOS
        for t in range(tgt_in.size(1)):
            if t > 0:
                own = self._ban(scores[-1].detach().float().clone())  # (batch, k); a copy: the scores are returned
                reference = torch.rand(prev.size(0), device=prev.device) < ratio  # (batch,)
                prev = torch.where(reference, tgt_in[:, t], self.word_ids(own.argmax(dim=-1)))
            att, state, _ = self.step(self.embed(prev), state, feed, memory, t)
            if feed is not None:
                feed = att
            scores.append(self.logits(att, rows))  # (batch, k)
        return torch.stack(scores, dim=1)

    def logits(self, att: Tensor, rows: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """(..., output) -> (..., k) unnormalized scores of the output words (column j:
        word ``word_ids(j)``; k = vocab when the layer scores every word); ``rows``: the
        layer's :meth:`_output_rows`, when the caller has taken them already."""
        return F.linear(self.dropout(att), *(rows or self._output_rows()))

    def _output_rows(self) -> tuple[Tensor, Tensor]:
        """The output layer's weight (k, output) and bias (k,) for the words it scores."""
        weight, bias = self.output.weight, self.output.bias
        if self.output_ids is None:
            return weight, bias
        return weight.index_select(0, self.output_ids), bias.index_select(0, self.output_ids)

    def target_columns(self, target: Tensor) -> Tensor:
        """Target word ids (...) -> their columns of :meth:`logits` (a word the layer does
        not score counts as UNK); PAD stays PAD."""
        return target if self.columns is None else self.columns[target]

    def search_scores(self, att: Tensor) -> Tensor:
        """fp32 scores (rows, k) of the words a search may produce, the banned columns
        (PAD, SOS) at -inf. Column j is the word ``word_ids(j)``."""
        return self._ban(self.logits(att).float())

    def _ban(self, scores: Tensor) -> Tensor:
        """``scores`` (rows, k) with the columns search never picks at -inf, in place."""
        for column in self.banned:  # one fill per column: a list index would build an index tensor every step
            scores[:, column] = float("-inf")
        return scores

    def word_ids(self, columns: Tensor) -> Tensor:
        """The vocabulary ids of columns of :meth:`search_scores`."""
        return columns if self.output_ids is None else self.output_ids[columns]

    def losses(self, att: Tensor, target: Tensor, label_smoothing: float) -> tuple[Tensor, Tensor]:
        """The loss sums of :meth:`logits` against ``target`` (...,), the scores never stored."""
        x = to_autocast_dtype(self.dropout(att))  # (..., output)
        weight, bias = self._output_rows()  # (k, output), (k,)
        return projected_losses(x, weight, bias, self.target_columns(target), label_smoothing, self.workspace)
