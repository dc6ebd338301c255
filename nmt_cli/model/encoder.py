"""The encoder: embeddings, then a stack of (bidirectional) GRU or LSTM layers.

Written from matrix products rather than ``nn.GRU`` so that it autocasts to bf16 on CPU
(the fused CPU RNN kernels stay in fp32) and so that both directions share each step:

* a layer's input products ``W_i x + b_i`` for every position and both directions are
  one matrix product over the whole batch;
* the backward direction reads each sentence reversed *within its own length*
  (padding stays at the end), so both directions step forward in time together and
  their recurrent products are one batched product (``baddbmm``) per step;
* rows are sorted by length, and step t updates only the rows still inside their
  sentence: as with packed sequences, padding costs no time and never reaches a state.

With ``residual``, every layer after the first adds its input to its output.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt_cli.config import ModelConfig
from nmt_cli.model.rnn import GATES, cell_step, state_size


class RecurrentLayer(nn.Module):
    """One layer, ``dirs`` directions, over whole sequences sorted by length (longest first)."""

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

    def forward(self, x: Tensor, reverse: Tensor, active: list[int]) -> tuple[Tensor, Tensor]:
        """x (batch, src_len, input), rows sorted by length; ``reverse`` (batch, src_len)
        reverses each row within its length; ``active[t]`` rows are inside their sentence at t.

        Returns outputs (batch, src_len, dirs*hidden), zero at padding, and the final
        state (dirs, batch, state) of each row.
        """
        batch, length, _ = x.shape
        gi = self.ih(x).view(batch, length, self.dirs, -1).transpose(0, 2)  # (dirs, src_len, batch, gates)
        if self.dirs == 2:
            gi = torch.stack([gi[0], _gather_time(gi[1], reverse)])
        state = x.new_zeros(self.dirs, batch, state_size(self.cell, self.hidden), dtype=torch.float32)  # gates run in fp32 (rnn.cell_step)
        steps = []
        for n, gi_t in zip(active, gi.unbind(1)):  # unbind: indexing gi[:, t] would fill a full-size zero gradient per step
            h = state[:, :n, : self.hidden]
            gh = torch.bmm(h, self.hh_weight) if self.hh_bias is None else torch.baddbmm(self.hh_bias, h, self.hh_weight)
            out, new = cell_step(self.cell, gi_t[:, :n], gh, state[:, :n])
            state = torch.cat([new.to(state.dtype), state[:, n:]], dim=1) if n < batch else new.to(state.dtype)
            steps.append(nn.functional.pad(out, (0, 0, 0, batch - n)))
        outputs = torch.stack(steps, dim=2)  # (dirs, batch, src_len, hidden)
        if length > len(active):
            outputs = nn.functional.pad(outputs, (0, 0, 0, length - len(active)))
        if self.dirs == 2:
            outputs = torch.stack([outputs[0], _gather_time(outputs[1].transpose(0, 1), reverse).transpose(0, 1)])
        return torch.cat(list(outputs), dim=-1), state


def _gather_time(values: Tensor, index: Tensor) -> Tensor:
    """values (src_len, batch, d) reordered in time per row: out[t, b] = values[index[b, t], b]."""
    idx = index.t().unsqueeze(-1).expand(-1, -1, values.size(-1))
    return values.gather(0, idx)


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig, embedding: nn.Embedding):
        super().__init__()
        self.embedding = embedding
        self.emb_dropout = nn.Dropout(cfg.emb_dropout)
        self.dropout = nn.Dropout(cfg.dropout)
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
        lens = lengths[order]
        positions = torch.arange(src.size(1), device=src.device)
        # position t of row b read backwards: lens[b]-1-t inside the sentence, t in the padding
        reverse = torch.where(positions < lens[:, None], lens[:, None] - 1 - positions, positions)
        counts = torch.bincount(lens, minlength=src.size(1) + 1)
        active = (lens.numel() - counts.cumsum(0))[: int(lens.max())].tolist()  # rows with len > t

        x = self.emb_dropout(self.embedding(src.index_select(0, order)))  # (batch, src_len, emb)
        for i, layer in enumerate(self.layers):
            if i == 0:
                x, state = layer(x, reverse, active)
            else:
                out, state = layer(self.dropout(x), reverse, active)
                x = out + x if self.residual else out
        final = state.index_select(1, unorder)  # (dirs, batch, state)
        h = torch.cat(list(final[..., : self.hidden]), dim=-1)
        c = torch.cat(list(final[..., self.hidden :]), dim=-1) if self.cell == "lstm" else None
        return x.index_select(0, unorder), h, c


class FusedEncoder(nn.Module):
    """The same encoder on torch's own ``nn.GRU``/``nn.LSTM``/``nn.RNN`` over packed sequences.

    For inference only: it computes what :class:`Encoder` computes, with torch's fused
    recurrent kernels (no Python per time step), and ``quantize_dynamic`` can turn its
    recurrent layers into int8 ones. One module per layer, so that residual connections
    can join them. Its forward has :class:`Encoder`'s signature.
    """

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.embedding, self.cell, self.hidden, self.dirs = encoder.embedding, encoder.cell, encoder.hidden, encoder.dirs
        self.residual = encoder.residual
        self.layers = nn.ModuleList(_fused_layer(layer, encoder.cell, encoder.dirs) for layer in encoder.layers)

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        lengths = lengths.cpu()
        x = self.embedding(src)  # (batch, src_len, emb)
        for i, rnn in enumerate(self.layers):
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, final = rnn(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
            x = out + x if self.residual and i > 0 else out  # padding stays zero: both terms are zero there
        h, c = final if self.cell == "lstm" else (final, None)
        h = torch.cat(list(h), dim=-1)  # the last layer's directions: (batch, dirs*hidden)
        c = torch.cat(list(c), dim=-1) if c is not None else None
        return x, h, c


def _fused_layer(layer: RecurrentLayer, cell: str, dirs: int) -> nn.Module:
    """torch's one-layer GRU/LSTM/RNN holding ``layer``'s weights."""
    kind = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}[cell]
    rnn = kind(layer.ih.in_features, layer.hidden, bidirectional=dirs == 2, batch_first=True, device=layer.ih.weight.device)
    weight_ih, bias_ih = layer.ih.weight.chunk(dirs), layer.ih.bias.chunk(dirs)
    with torch.no_grad():
        for d, suffix in enumerate(["", "_reverse"][:dirs]):
            getattr(rnn, f"weight_ih_l0{suffix}").copy_(weight_ih[d])
            getattr(rnn, f"bias_ih_l0{suffix}").copy_(bias_ih[d])
            getattr(rnn, f"weight_hh_l0{suffix}").copy_(layer.hh_weight[d].t())
            hh_bias = getattr(rnn, f"bias_hh_l0{suffix}")
            hh_bias.copy_(layer.hh_bias[d, 0] if layer.hh_bias is not None else torch.zeros_like(hh_bias))
    return rnn
