"""Attention: a context vector c = Σ_i a_i h_i over the encoder states h_i.

The weights a = softmax(score(q, h_i)) over source positions, where q is the decoder's
query (its previous state for Bahdanau, its current RNN output for Luong). Padding
positions get score -inf, so they never receive weight.

* ``bahdanau`` (additive / MLP, Bahdanau et al. 2015): score = vᵀ tanh(W_q q + W_k h_i)
* ``luong_dot`` (Luong et al. 2015): score = qᵀ h_i
* ``luong_general`` (Luong et al. 2015): score = qᵀ W h_i

Everything that depends on the encoder states alone (W_k h_i, W h_i) is computed once
per batch by :meth:`Attention.keys` and reused at every decoder step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Attention(nn.Module):
    def __init__(self, kind: str, query_size: int, memory_size: int, attention_size: int):
        super().__init__()
        self.kind = kind
        if kind == "bahdanau":
            self.key_layer = nn.Linear(memory_size, attention_size, bias=False)
            self.query_layer = nn.Linear(query_size, attention_size, bias=False)
            self.v = nn.Linear(attention_size, 1, bias=False)
        elif kind == "luong_general":
            self.key_layer = nn.Linear(memory_size, query_size, bias=False)
        elif kind != "luong_dot":
            raise ValueError(f"unknown attention {kind!r}")

    def keys(self, memory: Tensor) -> Tensor:
        """Per-batch precomputation: (batch, src_len, memory) -> (batch, src_len, key)."""
        return memory if self.kind == "luong_dot" else self.key_layer(memory)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Context and weights for queries (batch, steps, query); mask (batch, src_len), True = real token.

        Returns context (batch, steps, memory) and weights (batch, steps, src_len).
        """
        if self.kind == "bahdanau":
            # (batch, steps, 1, att) + (batch, 1, src_len, att) -> (batch, steps, src_len)
            hidden = torch.tanh(self.query_layer(query).unsqueeze(2) + keys.unsqueeze(1))
            scores = self.v(hidden).squeeze(-1)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))  # (batch, steps, src_len)
        scores = scores.float().masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights.to(memory.dtype), memory)  # (batch, steps, memory)
        return context, weights
