"""The encoder: embeddings, then a stack of (bidirectional) GRU or LSTM layers.

Written from matrix products rather than ``nn.GRU`` so that it autocasts to bf16 on CPU
(the fused CPU RNN kernels stay in fp32) and so that both directions share each step.
Sequences are *packed*, as torch's ``PackedSequence``: rows are sorted by length
(longest first) and time step t holds only the n_t rows still inside their sentence,
so padding neither costs time nor reaches a state. For direction d, step t of row b
reads source position

    s = t                 (forward)        s = len_b - 1 - t     (backward)

so both directions step forward in time together, and a packed position p = (t, b)
maps to the flat position b·src_len + s of a (batch, src_len) grid: one ``index_select``
gathers a layer's packed input, one ``index_copy`` scatters its packed output back, and
a layer's input products ``W_i x + b_i`` for every step and both directions are one
batched product over real tokens alone. Each step's recurrent products are one batched
product (``baddbmm``) for both directions.

Each step's recurrent product runs over its n_t rows rounded up to a multiple of
``STEP_ROWS``, and a layer's input product over the batch's tokens rounded up to a
multiple of ``TOKEN_ROWS`` (rows added, their products dropped): the
matrix-product library compiles and caches a kernel for every distinct shape it meets
(``shapes.py``).

With ``residual``, every layer after the first adds its input to its output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nmt_cli.config import ModelConfig
from nmt_cli.model.dropout import Dropout
from nmt_cli.model.rnn import GATES, cell_step, state_size
from nmt_cli.model.shapes import rounded_rows, token_rows


@dataclass
class Packing:
    """Where a batch's real tokens go, one step after another; see the module docstring."""

    gather: Tensor  # (dirs, shapes.token_rows(tokens)) index, then position 0: the rows input products read
    steps: list[int]  # n_t: rows inside their sentence at step t (non-increasing)
    batch: int
    length: int  # src_len

    @property
    def index(self) -> Tensor:
        """(dirs, tokens) flat position b*src_len + s of each packed token (a view of ``gather``)."""
        return self.gather[:, : sum(self.steps)]

    @classmethod
    def of(cls, lens: Tensor, length: int, dirs: int) -> Packing:
        """For rows sorted by length, lens (batch,) descending."""
        counts = torch.bincount(lens, minlength=length + 1)
        steps = lens.numel() - counts.cumsum(0)[: int(lens.max())]  # (max_len,) rows with len > t
        t = torch.repeat_interleave(torch.arange(steps.numel(), device=lens.device), steps)  # (tokens,) step
        b = torch.arange(t.numel(), device=lens.device) - (steps.cumsum(0) - steps)[t]  # row within the step
        positions = [t, lens[b] - 1 - t][:dirs]  # source position read by each direction
        index = torch.stack([b * length + s for s in positions])
        gather = nn.functional.pad(index, (0, token_rows(t.numel()) - t.numel()))
        return cls(gather, steps.tolist(), lens.numel(), length)


class RecurrentLayer(nn.Module):
    """One layer, ``dirs`` directions, over packed sequences."""

    def __init__(self, cell: str, input_size: int, hidden: int, dirs: int):
        super().__init__()
        self.cell, self.hidden, self.dirs = cell, hidden, dirs
        gates = GATES[cell] * hidden
        self.ih = nn.Linear(input_size, dirs * gates)
        self.hh_weight = nn.Parameter(torch.empty(dirs, hidden, gates))
        self.hh_bias = nn.Parameter(torch.empty(dirs, 1, gates)) if cell == "gru" else None
        bound = hidden**-0.5  # as torch's own RNNs
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: Tensor, packing: Packing) -> tuple[Tensor, Tensor]:
        """x (batch, src_len, input), rows sorted by length.

        Returns outputs (batch, src_len, dirs*hidden), zero at padding, and the final
        state (dirs, batch, state) of each row.
        """
        dirs, tokens = packing.index.shape
        xs = (
            x.reshape(-1, x.size(-1)).index_select(0, packing.gather.view(-1)).view(dirs, -1, x.size(-1))
        )  # (dirs, rows, input)
        weight = self.ih.weight.view(dirs, -1, x.size(-1)).transpose(1, 2)  # (dirs, input, gates)
        gi = torch.baddbmm(self.ih.bias.view(dirs, 1, -1), xs, weight)[:, :tokens]  # (dirs, tokens, gates)
        packed, final = self._recur(gi, packing)  # (dirs, tokens, hidden), (dirs, batch, state)
        grid = packed.new_zeros(packing.batch * packing.length, self.hidden)
        out = torch.cat([grid.index_copy(0, packing.index[d], packed[d]) for d in range(dirs)], dim=-1)
        return out.view(packing.batch, packing.length, -1), final

    def _recur(self, gi: Tensor, packing: Packing) -> tuple[Tensor, Tensor]:
        """The recurrence from the input products gi (dirs, tokens, gates): the packed
        outputs (dirs, tokens, hidden) and each row's final state (dirs, batch, state)."""
        state = gi.new_zeros(
            self.dirs, packing.batch, state_size(self.cell, self.hidden), dtype=torch.float32
        )  # gates run in fp32 (rnn.cell_step)
        finals, outputs = [], []
        for n, gi_t in zip(packing.steps, gi.split(packing.steps, dim=1)):  # gi_t (dirs, n, gates)
            if n < state.size(1):  # rows n... have ended: their state is final
                finals.append(state[:, n:])
                state = state[:, :n]
            h = state[..., : self.hidden]  # (dirs, n, hidden)
            rows = rounded_rows(n, packing.batch)
            if rows > n:
                h = nn.functional.pad(h, (0, 0, 0, rows - n))  # (dirs, rows, hidden), zeros below
            gh = (
                torch.bmm(h, self.hh_weight) if self.hh_bias is None else torch.baddbmm(self.hh_bias, h, self.hh_weight)
            )
            gh = gh[:, :n]  # (dirs, n, gates)
            out, state = cell_step(self.cell, gi_t, gh, state)
            outputs.append(out)  # (dirs, n, hidden)
        return torch.cat(outputs, dim=1), torch.cat([state, *reversed(finals)], dim=1)  # final rows in order


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig, embedding: nn.Embedding):
        super().__init__()
        self.embedding = embedding
        self.emb_dropout = Dropout(cfg.emb_dropout)
        self.word_dropout = Dropout(cfg.word_dropout, whole=True)
        self.dropout = Dropout(cfg.dropout)
        self.cell, self.hidden, self.residual = cfg.cell, cfg.encoder_hidden, cfg.residual
        self.dirs = 2 if cfg.bidirectional else 1
        self.output_size = cfg.encoder_hidden * self.dirs
        sizes = [cfg.emb_size] + [self.output_size] * (cfg.encoder_layers - 1)
        self.layers = nn.ModuleList(RecurrentLayer(cfg.cell, size, cfg.encoder_hidden, self.dirs) for size in sizes)

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """src (batch, src_len) ids, lengths (batch,).

        Returns the states (batch, src_len, dirs*hidden), zero at padding, and the last
        layer's final hidden (and, for an LSTM, cell) state, directions concatenated:
        (batch, dirs*hidden). For the backward direction "final" is at the first word.
        """
        lengths = lengths.to(src.device)
        order = torch.argsort(lengths, descending=True, stable=True)
        unorder = torch.argsort(order)
        packing = Packing.of(lengths[order], src.size(1), self.dirs)

        x = self.emb_dropout(self.word_dropout(self.embedding(src.index_select(0, order))))  # (batch, src_len, emb)
        for i, layer in enumerate(self.layers):
            if i == 0:
                x, state = layer(x, packing)
            else:
                out, state = layer(self.dropout(x), packing)
                x = out + x if self.residual else out
        final = state.index_select(1, unorder)  # (dirs, batch, state)
        h = torch.cat(list(final[..., : self.hidden]), dim=-1)
        c = torch.cat(list(final[..., self.hidden :]), dim=-1) if self.cell == "lstm" else None
        return x.index_select(0, unorder), h, c
