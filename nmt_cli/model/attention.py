"""Attention: a context vector c = Σ_i a_i h_i over the encoder states h_i.

The weights a = softmax(score(q, h_i)) over source positions, where q is the decoder's
query (its previous state for Bahdanau, its current RNN output for Luong). Padding
positions get score -inf, so they never receive weight.

* ``bahdanau`` (additive / MLP, Bahdanau et al. 2015): score = vᵀ tanh(W_q q + W_k h_i)
* ``luong_dot`` (Luong et al. 2015): score = qᵀ h_i
* ``luong_general`` (Luong et al. 2015): score = qᵀ W h_i
* ``luong_local`` (Luong et al. 2015, local-p): the decoder predicts an aligned source
  position p_t = S · sigmoid(v_pᵀ tanh(W_p q)), S the source length, and only positions
  i with |i - p_t| ≤ D (``window``) are scored (general score); their softmax weights
  are then multiplied by a Gaussian centred on p_t, exp(-(i - p_t)² / 2σ²) with σ = D/2,
  so a weighs positions near p_t most. Weights do not sum to one, as in the paper.
* ``luong_local_m`` (local-m, monotonic): the same with p_t = t, the target position
  (kept at the last source word once t passes it).

Multi-head (``heads`` k > 1, additive or general): k independent scorers (their own W_k,
W_q and v, or W), each a softmax and a context; the k contexts are concatenated and
projected back to the memory size, by a projection that starts as their mean. The
weights reported (alignments, coverage, plots) are the heads' mean. With k = 1 there is
no projection: it is the single-head model.

Hard attention (a decoding-time diagnostic, ``rewrites.HardAttention``): the context is
the state of the most weighted source position alone instead of the weighted sum.

Everything that depends on the encoder states alone (W_k h_i, W h_i) is computed once
per batch by :meth:`Attention.keys` and reused at every decoder step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt_cli.model.shapes import over_rounded_rows

LOCAL = ("luong_local", "luong_local_m")


class Attention(nn.Module):
    def __init__(
        self, kind: str, query_size: int, memory_size: int, attention_size: int, heads: int = 1, window: int = 0
    ):
        super().__init__()
        self.kind, self.heads, self.window = kind, heads, window
        if kind == "bahdanau":
            self.key_layer = nn.Linear(memory_size, heads * attention_size, bias=False)
            self.query_layer = nn.Linear(query_size, heads * attention_size, bias=False)
            self.v = nn.Linear(attention_size, heads, bias=False)  # row h: head h's v
        elif kind in ("luong_general", *LOCAL):
            self.key_layer = nn.Linear(memory_size, heads * query_size, bias=False)
        elif kind != "luong_dot":
            raise ValueError(f"unknown attention {kind!r}")
        if kind == "luong_local":
            self.position = nn.Sequential(
                nn.Linear(query_size, attention_size, bias=False), nn.Tanh(), nn.Linear(attention_size, 1, bias=False)
            )
        self.combine = nn.Linear(heads * memory_size, memory_size) if heads > 1 else None
        self.init_combine()

    def init_combine(self) -> None:
        """Start the projection of the k concatenated contexts as their mean, [I/k ... I/k]
        without bias, rather than as a random mix of them: every head then starts with an
        equal say, and the loss falls faster (docs/results.md, "Architectures"). Without a
        warmup, Adam's first full-size steps on this wide projection stall training at the
        unigram loss either way: multi-head recipes warm up."""
        if self.combine is None:
            return
        memory_size = self.combine.out_features
        with torch.no_grad():
            self.combine.weight.copy_(torch.eye(memory_size).repeat(1, self.heads) / self.heads)
            self.combine.bias.zero_()

    def keys(self, memory: Tensor) -> Tensor:
        """Per-batch precomputation: (batch, src_len, memory) -> (batch, src_len, heads*key)."""
        return memory if self.kind == "luong_dot" else over_rounded_rows(self.key_layer, memory)

    def forward(
        self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor, step: int | Tensor = 0, projected: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Context and weights for queries (batch, steps, query); mask (batch, src_len), True
        = real token; ``step`` (local-m) the target position of every query, or a tensor
        (steps,) of each query's position; ``projected``: Bahdanau's queries are W_q q
        already (batch, steps, heads*att).

        Returns context (batch, steps, memory) and weights (batch, steps, src_len).
        """
        weights = self.weights(query, keys, mask, step, projected)  # (batch, heads, steps, src_len)
        if self.combine is None:  # one head
            weights = weights.squeeze(1)  # (batch, steps, src_len)
            return torch.bmm(weights.to(memory.dtype), memory), weights  # context (batch, steps, memory)
        context = torch.matmul(weights.to(memory.dtype), memory.unsqueeze(1))  # (batch, heads, steps, memory)
        context = self.combine(torch.cat(context.unbind(1), dim=-1))  # (batch, steps, memory)
        return context, weights.mean(dim=1)

    def weights(
        self, query: Tensor, keys: Tensor, mask: Tensor, step: int | Tensor = 0, projected: bool = False
    ) -> Tensor:
        """Each head's weights a (batch, heads, steps, src_len), fp32; arguments as :meth:`forward`'s."""
        scores = self.scores(query, keys, projected).float()  # (batch, heads, steps, src_len)
        allowed = mask[:, None, None, :]  # (batch, 1, 1, src_len)
        gauss = None
        if self.kind in LOCAL:
            gauss, window = self._local(query, mask, step)  # (batch, 1, steps, src_len) each
            allowed = allowed & window
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        return weights * gauss if gauss is not None else weights

    def scores(self, query: Tensor, keys: Tensor, projected: bool = False) -> Tensor:
        """Unmasked scores (batch, heads, steps, src_len); keys (batch, src_len, heads*key)."""
        batch, src_len = keys.shape[:2]
        if self.kind == "bahdanau":
            query = query if projected else self.query_layer(query)  # (batch, steps, heads*att)
            # (batch, steps, 1, heads*att) + (batch, 1, src_len, heads*att): every head at once
            hidden = (query.unsqueeze(2) + keys.unsqueeze(1)).tanh_()  # in place: the largest table of a step
            if self.heads == 1:
                return self.v(hidden).squeeze(-1).unsqueeze(1)
            hidden = hidden.unflatten(-1, (self.heads, -1))  # (batch, steps, src_len, heads, att)
            # every v on every head's units, then head h's v on head h's units: the diagonal
            scores = self.v(hidden).diagonal(dim1=-2, dim2=-1)  # (batch, steps, src_len, heads)
            return scores.permute(0, 3, 1, 2)
        keys = keys.view(batch, src_len, self.heads, -1).transpose(1, 2)  # (batch, heads, src_len, key)
        return torch.matmul(query.unsqueeze(1), keys.transpose(2, 3))  # (batch, heads, steps, src_len)

    def _local(self, query: Tensor, mask: Tensor, step: int | Tensor) -> tuple[Tensor, Tensor]:
        """The Gaussian (batch, 1, steps, src_len) around p_t and the window |i - p_t| <= D."""
        lengths = mask.sum(dim=1, keepdim=True).float()  # (batch, 1): S
        if self.kind == "luong_local":
            p = lengths * torch.sigmoid(self.position(query).squeeze(-1).float())  # (batch, steps), in [0, S]
        else:
            steps = step if isinstance(step, Tensor) else torch.full((query.size(1),), step, device=query.device)
            p = torch.minimum(steps.float().unsqueeze(0), lengths - 1)  # (batch, steps)
        positions = torch.arange(mask.size(1), device=mask.device, dtype=torch.float32)
        distance = positions - p.unsqueeze(-1)  # (batch, steps, src_len)
        sigma = self.window / 2
        gauss = torch.exp(-distance.square() / (2 * sigma * sigma))
        return gauss.unsqueeze(1), (distance.abs() <= self.window).unsqueeze(1)
