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
"""

from __future__ import annotations

import functools
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
class Joined:
    """Under teacher forcing, the products of a step that read the same input, joined into
    one product each, their weights joined once per batch (in autocast's dtype: cast once,
    not at every step): Bahdanau's query with the top layer's recurrent product (both read
    s_{t-1}), and layer 0's context and fed-back input parts. A step then makes two
    products instead of four, and its backward pass as many fewer."""

    query: tuple[Tensor, Tensor] | None  # [W_q; W_hh] (heads*att + gates*hidden, hidden), [0; b_hh]
    inputs: Tensor | None  # [W_context W_feed] (gates*hidden, memory + output)


@dataclass
class Memory:
    """What the decoder reads from the encoder, computed once per batch."""

    states: Tensor  # (batch, src_len, memory) encoder outputs
    keys: Tensor  # (batch, src_len, key) precomputed attention keys
    mask: Tensor  # (batch, src_len) True at real tokens

    def select(self, index: Tensor) -> Memory:
        """Rows ``index`` of the batch (beam search, finished sentences leaving)."""
        return Memory(
            self.states.index_select(0, index), self.keys.index_select(0, index), self.mask.index_select(0, index)
        )


class Decoder(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        embedding: nn.Embedding,
        memory_size: int,
        vocab_size: int,
        output_words: Tensor | None = None,
    ):
        super().__init__()
        self.cfg = cfg
        self.embedding = embedding
        self.emb_dropout = Dropout(cfg.emb_dropout)
        self.word_dropout = Dropout(cfg.word_dropout, whole=True)
        self.bahdanau = cfg.attention == "bahdanau"
        parts = {"emb": cfg.emb_size}
        if self.bahdanau:
            parts["context"] = memory_size
        if cfg.input_feeding:
            parts["feed"] = cfg.output_size
        self.rnn = StackedCells(cfg.cell, parts, cfg.decoder_hidden, cfg.decoder_layers, cfg.dropout, cfg.residual)
        self.attention = Attention(
            cfg.attention, cfg.decoder_hidden, memory_size, cfg.attention_size, cfg.heads, cfg.window
        )
        self.query_joined: nn.Linear | None = None  # see join_query
        self.pre_output = nn.Linear(cfg.decoder_hidden + memory_size, cfg.output_size)
        self.dropout = Dropout(cfg.dropout)
        self.output = nn.Linear(cfg.output_size, vocab_size)
        if cfg.tie_output:
            self.output.weight = embedding.weight
        self.workspace = Workspace()  # the output layer's score table under the loss, kept between batches
        # The words the output layer scores, if not all: column j is word output_ids[j]; and
        # each word's column (UNK's for a word the layer does not score). Not saved: a
        # checkpoint's vocabulary holds the list (``saved.load_model``).
        self.register_buffer("output_ids", None, persistent=False)  # (k,)
        self.register_buffer("columns", None, persistent=False)  # (vocab,)
        self.banned: list[int] = [PAD, SOS]  # columns search never picks
        self.cut = False  # the output layer holds the rows of output_ids alone (cut_output)
        if output_words is not None:
            self.score_words(output_words)
        bridge_in = memory_size * (2 if cfg.cell == "lstm" else 1)
        self.bridge = nn.Linear(bridge_in, cfg.decoder_layers * self.rnn.state_size) if cfg.bridge else None

    def init_state(self, final_h: Tensor, final_c: Tensor | None) -> tuple[list[Tensor], Tensor | None]:
        """Initial RNN state per layer (batch, state) and the initial fed-back h̃ (zeros)."""
        batch = final_h.size(0)
        if self.bridge is not None:
            source = final_h if final_c is None else torch.cat([final_h, final_c], dim=-1)
            state = list(torch.tanh(self.bridge(source)).float().chunk(self.cfg.decoder_layers, dim=-1))
        else:
            state = [
                final_h.new_zeros(batch, self.rnn.state_size, dtype=torch.float32)
                for _ in range(self.cfg.decoder_layers)
            ]
        feed = final_h.new_zeros(batch, self.cfg.output_size) if self.cfg.input_feeding else None
        return state, feed

    def embed(self, tokens: Tensor) -> Tensor:
        """Layer 0's input product for target words: (...,) ids -> (..., gates*hidden)."""
        emb = self.emb_dropout(self.word_dropout(self.embedding(tokens)))  # (..., emb)
        return over_rounded_rows(functools.partial(self.rnn.project, "emb"), emb)

    def step(
        self,
        emb_in: Tensor,
        state: list[Tensor],
        feed: Tensor | None,
        memory: Memory,
        t: int = 0,
        joined: Joined | None = None,
    ):
        """Decoder step ``t`` (0-based target position) from the embedded previous word
        ``emb_in`` (rows, gates*hidden): its layer-0 product, made for all steps at once
        under teacher forcing (:meth:`embed`); ``joined``: the batch's :meth:`joined` weights.

        ``rows`` is the memory's batch or a multiple of it (see :meth:`_attend`). Returns
        h̃_t (rows, output), the new state, and the attention weights (rows, src_len).
        """
        weight = joined.inputs if joined is not None else None
        return self._step(lambda parts: self.rnn.project_all(parts, emb_in, weight), state, feed, memory, t, joined)

    def search_step(self, prev: Tensor, state: list[Tensor], feed: Tensor | None, memory: Memory, t: int = 0):
        """:meth:`step` from the previous words' ids ``prev`` (rows,), for search: layer 0's
        input parts (embedding, context, fed-back h̃) go into one product
        (:meth:`StackedCells.project_all`)."""
        emb = self.emb_dropout(self.embedding(prev))  # (rows, emb)
        return self._step(lambda parts: self.rnn.project_all({"emb": emb, **parts}), state, feed, memory, t)

    def _step(
        self, product, state: list[Tensor], feed: Tensor | None, memory: Memory, t: int, joined: Joined | None = None
    ):
        """The step itself; ``product(parts)`` is layer 0's input product given the parts
        other than the embedding ({"feed": h̃_{t-1}, "context": c_t} as the model has them)."""
        parts = {} if feed is None else {"feed": feed}
        if self.bahdanau:
            query, recurrent = self._query(state[-1][:, : self.rnn.hidden], joined)
            context, weights = self._attend(query, memory, t, projected=recurrent is not None)
            h, state = self.rnn(product({**parts, "context": context}), state, recurrent)
        else:
            h, state = self.rnn(product(parts), state)
            context, weights = self._attend(h, memory, t)
        return self._attentional(h, context), state, weights

    def _query(self, state: Tensor, joined: Joined | None) -> tuple[Tensor, Tensor | None]:
        """Bahdanau's query from s_{t-1} (rows, hidden): s_{t-1} itself, or (after
        :meth:`join_query`, or with ``joined`` weights) its projection W_q s_{t-1} (rows,
        heads*att) made in one product with the top layer's recurrent product (rows,
        gates*hidden)."""
        if self.query_joined is not None:
            both = self.query_joined(state)  # (rows, heads*att + gates*hidden)
        elif joined is not None and joined.query is not None:
            both = F.linear(state, *joined.query)
        else:
            return state, None
        size = self.attention.query_layer.out_features
        return both[:, :size], both[:, size:]

    def _query_weights(self) -> tuple[Tensor, Tensor]:
        """[W_q; W_hh] (heads*att + gates*hidden, hidden) and [0; b_hh]: Bahdanau's query and
        the top layer's recurrent product W_hh s_{t-1} + b_hh, which read the same state."""
        query, hh = self.attention.query_layer.weight, self.rnn.hh[-1]
        hh_bias = hh.bias if hh.bias is not None else hh.weight.new_zeros(hh.out_features)  # an LSTM's is in gi
        return torch.cat([query, hh.weight]), torch.cat([query.new_zeros(query.size(0)), hh_bias])

    def joined(self) -> Joined | None:
        """The batch's :class:`Joined` weights, for teacher forcing; None once the model is
        made ready for inference (:meth:`join_query`, ``StackedCells.join_inputs``, whose
        layers may be int8): forced decoding then runs on those layers."""
        if self.query_joined is not None or self.rnn.joined is not None:
            return None
        parts = [k for k in self.rnn.inputs if k != "emb"]
        inputs = to_autocast_dtype(self.rnn.joined_weight(parts)) if len(parts) > 1 else None
        if not self.bahdanau:
            return Joined(None, inputs)
        weight, bias = self._query_weights()
        return Joined((to_autocast_dtype(weight), bias), inputs)

    def join_query(self) -> None:
        """For decoding with Bahdanau attention: one layer [W_q; W_hh] for the query and the
        top layer's recurrent product (:meth:`_query_weights`), one product a step instead
        of two."""
        if not self.bahdanau:
            return
        weight, bias = self._query_weights()
        joined = nn.Linear(weight.size(1), weight.size(0), device=weight.device)
        with torch.no_grad():
            joined.weight.copy_(weight)
            joined.bias.copy_(bias)
        self.query_joined = joined

    def _attend(self, query: Tensor, memory: Memory, t: int, projected: bool = False) -> tuple[Tensor, Tensor]:
        """Attention for queries (rows, hidden) over a memory of ``rows / group`` sentences;
        ``projected``: the queries are Bahdanau's W_q s already (:meth:`_query`).

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
        emb_in = self.embed(tgt_in)  # (batch, tgt_len, gates*hidden), all steps in one product
        if not self.bahdanau and feed is None:
            return self._forward_luong_no_feed(emb_in, memory, state)
        outputs, joined = [], self.joined()
        for t, emb_t in enumerate(emb_in.unbind(1)):  # unbind: one backward op, not a full-size zero fill per step
            att, state, _ = self.step(emb_t, state, feed, memory, t, joined)
            outputs.append(att)
            if feed is not None:
                feed = att
        return torch.stack(outputs, dim=1)

    def _forward_luong_no_feed(self, emb_in: Tensor, memory: Memory, state: list[Tensor]) -> Tensor:
        """Recurrence alone step by step; attention and h̃ for all steps at once."""
        tops = []
        for emb_t in emb_in.unbind(1):
            h, state = self.rnn(emb_t, state)
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
        joined = self.joined()
        scores, prev = [], tgt_in[:, 0]  # SOS
        for t in range(tgt_in.size(1)):
            if t > 0:
                own = self._ban(scores[-1].detach().float().clone())  # (batch, k); a copy: the scores are returned
                reference = torch.rand(prev.size(0), device=prev.device) < ratio  # (batch,)
                prev = torch.where(reference, tgt_in[:, t], self.word_ids(own.argmax(dim=-1)))
            att, state, _ = self.step(self.embed(prev), state, feed, memory, t, joined)
            if feed is not None:
                feed = att
            scores.append(self.logits(att, rows))  # (batch, k)
        return torch.stack(scores, dim=1)

    def score_words(self, ids: Tensor) -> None:
        """Let the output layer score the words ``ids`` alone (``output_vocab: target``):
        column j of the scores is word ``ids[j]``, in id order. PAD is kept as column 0, so
        that a PAD target still marks padding for the loss. The layer itself stays whole
        (and tied to the embedding): its rows for these words are taken at each call."""
        vocab = self.output.out_features
        ids = torch.unique(torch.cat([ids.long().cpu(), torch.tensor([PAD, UNK])]))  # sorted: PAD first
        columns = torch.full((vocab,), int((ids == UNK).nonzero()), dtype=torch.long)
        columns[ids] = torch.arange(ids.numel())
        device = self.output.weight.device
        self.output_ids, self.columns = ids.to(device), columns.to(device)
        self.banned = [j for j, i in enumerate(ids.tolist()) if i in (PAD, SOS)]

    def restrict_output(self, ids: Tensor) -> None:
        """For search: an output layer that scores the words ``ids`` (k,) alone, e.g. the
        target words of the training data. Left out are words the model has never been
        trained to produce (with a joint vocabulary, the source language's own subwords:
        half of it for Multi30k de-en), and the output layer, softmax and top-k of every
        search step shrink by as much. Never PAD or SOS. The layer is a copy: it is not
        tied to the embedding any more."""
        keep = ids[(ids != PAD) & (ids != SOS)].to(self.output.weight.device)
        self.output_ids, self.columns, self.banned = keep, None, []
        self.cut_output()

    def cut_output(self) -> None:
        """For inference: make the output layer a copy of its rows for the words it scores
        (:meth:`score_words`, :meth:`restrict_output`), a plain layer of k rows that int8
        quantization can take; nothing to do when it scores every word."""
        if self.output_ids is None or self.cut:
            return
        layer = nn.Linear(self.output.in_features, self.output_ids.numel(), device=self.output_ids.device)
        with torch.no_grad():
            layer.weight.copy_(self.output.weight[self.output_ids])
            layer.bias.copy_(self.output.bias[self.output_ids])
        self.output, self.cut = layer, True

    def logits(self, att: Tensor, rows: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """(..., output) -> (..., k) unnormalized scores of the output words (column j:
        word ``word_ids(j)``; k = vocab when the layer scores every word); ``rows``: the
        layer's :meth:`_output_rows`, when the caller has taken them already."""
        x = self.dropout(att)
        if rows is None and not self._takes_rows:
            return self.output(x)  # a plain or int8 layer
        return F.linear(x, *(rows or self._output_rows()))

    @property
    def _takes_rows(self) -> bool:
        """Whether the layer is whole and the words it scores are some of its rows (score_words)."""
        return self.output_ids is not None and not self.cut

    def _output_rows(self) -> tuple[Tensor, Tensor]:
        """The output layer's weight (k, output) and bias (k,) for the words it scores."""
        weight, bias = self.output.weight, self.output.bias
        if not self._takes_rows:
            return weight, bias
        return weight.index_select(0, self.output_ids), bias.index_select(0, self.output_ids)

    def target_columns(self, target: Tensor) -> Tensor:
        """Target word ids (...) -> their columns of :meth:`logits` (a word the layer does
        not score counts as UNK); PAD stays PAD."""
        return target if self.columns is None else self.columns[target]

    def search_scores(self, att: Tensor) -> Tensor:
        """fp32 scores (rows, k) of the words a search may produce: those of
        :meth:`restrict_output`, or every word with PAD and SOS at -inf. Column j is the
        word ``word_ids(j)``."""
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
