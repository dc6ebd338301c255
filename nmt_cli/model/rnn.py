"""Recurrent cells written from linear layers, stacked, one time step at a time.

The decoder runs step by step (attention needs each state), so its cells are plain
``nn.Linear`` layers plus elementwise gates. That buys two things over ``nn.GRUCell``:
the matrix products autocast to bf16 on CPU, and the first layer's input product is a
sum of one product per input part (embedding, context, fed-back attentional state), so
the parts known in advance (the target embeddings, under teacher forcing) are projected
for all time steps in one matrix product: see :meth:`StackedCells.project`.

GRU (Cho et al. 2014), with ``gi = W_i x + b_i`` and ``gh = W_h h + b_h`` split in three::

    r = σ(gi_r + gh_r)        z = σ(gi_z + gh_z)
    n = tanh(gi_n + r ⊙ gh_n)     h' = (1 - z) ⊙ n + z ⊙ h

LSTM (Hochreiter & Schmidhuber 1997), gates split in four::

    i, f, g, o = σ(·), σ(·), tanh(·), σ(·) of (W_i x + W_h h + b)
    c' = f ⊙ c + i ⊙ g        h' = o ⊙ tanh(c')

The vanilla (Elman) RNN, no gate: ``h' = tanh(W_i x + W_h h + b)``. Its gradient through
time is a product of W_h and tanh' factors, which vanishes (or explodes) over long
spans: the gates of the GRU and LSTM are the cure, which ``cell: rnn`` lets one measure.

A layer's state is one tensor: ``h`` (batch, hidden) for a GRU or RNN, ``[h; c]`` (batch,
2*hidden) for an LSTM, so a whole stack's state is a list that beam search can reorder
with one ``index_select`` per layer.

With ``residual``, layer i > 0 passes on its output plus its input, ``h_i + h_{i-1}``
(as in GNMT): the sum gives the gradient a path around each layer, so deep stacks train.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt_cli.model.dropout import Dropout

GATES = {"gru": 3, "lstm": 4, "rnn": 1}  # blocks of ``hidden`` in a cell's input product


class StackedCells(nn.Module):
    """``layers`` GRU or LSTM cells; layer 0's input comes in named parts.

    ``inputs`` maps each part of layer 0's input to its size, e.g. ``{"emb": 256,
    "context": 512}``; the first part carries the bias.
    """

    def __init__(
        self, cell: str, inputs: dict[str, int], hidden: int, layers: int, dropout: float, residual: bool = False
    ):
        super().__init__()
        self.cell, self.hidden, self.residual = cell, hidden, residual
        gates = GATES[cell]
        first = next(iter(inputs))
        self.inputs = nn.ModuleDict({k: nn.Linear(n, gates * hidden, bias=k == first) for k, n in inputs.items()})
        self.ih = nn.ModuleList(nn.Linear(hidden, gates * hidden) for _ in range(layers - 1))
        self.hh = nn.ModuleList(nn.Linear(hidden, gates * hidden, bias=cell == "gru") for _ in range(layers))
        self.dropout = Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = self.hidden**-0.5  # as torch's own RNNs
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    @property
    def state_size(self) -> int:
        return state_size(self.cell, self.hidden)

    def project(self, part: str, x: Tensor) -> Tensor:
        """Layer 0's input product for one part: (..., size) -> (..., gates*hidden)."""
        return self.inputs[part](x)

    def forward(
        self, gi: Tensor, state: list[Tensor], top_recurrent: Tensor | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """One step. ``gi`` is layer 0's summed input products (batch, gates*hidden);
        ``top_recurrent`` the top layer's recurrent product W_hh h + b_hh, when the caller
        has made it (joined with Bahdanau's query: ``rewrites.py``).

        Returns the top layer's output h (batch, hidden) and the new state of every layer.
        """
        new_state, h = [], gi
        for i, layer_state in enumerate(state):
            inputs = gi if i == 0 else self.ih[i - 1](self.dropout(h))  # layer i reads layer i-1's output
            top = i == len(state) - 1 and top_recurrent is not None
            recurrent = top_recurrent if top else self.hh[i](layer_state[..., : self.hidden])
            out, layer_state = cell_step(self.cell, inputs, recurrent, layer_state)
            h = out + h if self.residual and i > 0 else out
            new_state.append(layer_state)
        return h, new_state


def state_size(cell: str, hidden: int) -> int:
    """A layer's state: h, or [h; c] for an LSTM."""
    return 2 * hidden if cell == "lstm" else hidden


def cell_step(cell: str, gi: Tensor, gh: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """Gate arithmetic of one GRU/LSTM/RNN step; any leading shape, gates on the last dim.

    gi, gh: (..., gates*hidden) input and recurrent products (biases included);
    state: (..., hidden) for a GRU or RNN, (..., 2*hidden) = [h; c] for an LSTM.
    Returns the output h (..., hidden) and the new state. The gate arithmetic runs in the
    state's dtype (fp32), also when the products come from bf16/fp16 autocast, so that small
    updates of a remembered state are not rounded away.
    """
    gi, gh = gi.to(state.dtype), gh.to(state.dtype)
    if cell == "rnn":
        h = torch.tanh(gi + gh)
        return h, h
    if cell == "gru":
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        h = n + z * (state - n)  # = (1 - z) * n + z * h_prev
        return h, h
    i, f, g, o = (gi + gh).chunk(4, dim=-1)
    hidden = gi.size(-1) // 4
    c = torch.sigmoid(f) * state[..., hidden:] + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, torch.cat([h, c], dim=-1)
