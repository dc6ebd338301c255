"""Dropout (Srivastava et al. 2014), inverted: in training each unit is kept with
probability 1 - p and scaled by 1 / (1 - p), so that its expected value is unchanged and
evaluation is the identity.

It computes what ``nn.Dropout`` computes, with the mask drawn another way on a CPU:
torch's CPU ``bernoulli_`` draws its numbers one at a time, where ``torch.rand`` fills a
whole tensor with vectorized code, so "uniform >= p" makes the same kind of mask in
less time (docs/performance.md). A GPU keeps torch's fused kernel.

``whole=True`` drops whole vectors rather than units: word dropout (Gal and Ghahramani
2016; Sennrich and Zhang 2019 found it among the strongest regularizers for small
corpora). Applied to embeddings (batch, len, emb), each word's vector is zeroed with
probability p and the rest scaled by 1 / (1 - p), so the model cannot lean on any one
word of its input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Dropout(nn.Module):
    def __init__(self, p: float, whole: bool = False):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p, self.whole = p, whole

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" and not self.whole:
            return nn.functional.dropout(x, self.p, training=True)
        shape = (*x.shape[:-1], 1) if self.whole else x.shape  # a vector's units share its draw
        scale = torch.rand(shape, device=x.device) >= self.p  # True where kept
        return x * scale.to(x.dtype).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}" + (", whole=True" if self.whole else "")
