"""An exponential moving average of the weights (``train.ema``: its decay d).

After optimizer step n (1, 2, ...) θ̄ ← d_n·θ̄ + (1−d_n)·θ, from θ̄ = θ where the run
starts, with d_n = min(d, (1 + n) / (10 + n)): a mean of the recent weights, over about the
last 1/(1−d) steps. The warm-up of d_n keeps the first, random weights from lingering in
θ̄ (with d = 0.998 alone they would still weigh 0.998^1000 ≈ 14% after 1,000 steps), as
TensorFlow's ``ExponentialMovingAverage(num_updates=n)`` does. Like checkpoint averaging
(``average.py``) it lies nearer the centre of the region the optimizer's late steps scatter
around than any one step's weights, and it is kept at every step rather than every
checkpoint (Polyak and Juditsky 1992).

θ̄ is what validation scores (so it decides ``best.pt``, patience and the plateau
schedule) and what ``best.pt`` holds as its weights (what ``nmt translate`` loads). Step
checkpoints hold both: θ under ``model``, from which training goes on, and θ̄ under
``ema``, so that a resumed run goes on with the same average. Every rank keeps its own;
their weights, and so their averages, are the same.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from nmt_cli.errors import NmtError


class Ema:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.params = dict(model.named_parameters())  # a tied weight once
        self.shadow = {name: p.detach().clone() for name, p in self.params.items()}

    def decay_at(self, step: int) -> float:
        """d_n of optimizer step ``step`` (n, from 1)."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """θ̄ ← θ̄ + (1−d_n)·(θ − θ̄), after optimizer step ``step``."""
        weight = 1.0 - self.decay_at(step)
        for name, p in self.params.items():
            self.shadow[name].lerp_(p, weight)

    @contextlib.contextmanager
    def applied(self):
        """The model holds θ̄ inside the block (to validate it), θ again after it."""
        own = {name: p.detach().clone() for name, p in self.params.items()}
        self._copy(self.shadow)
        try:
            yield
        finally:
            self._copy(own)

    @torch.no_grad()
    def _copy(self, weights: dict[str, torch.Tensor]) -> None:
        for name, p in self.params.items():
            p.copy_(weights[name])

    def weights(self, model: nn.Module) -> dict[str, Any]:
        """``model.state_dict()`` with θ̄ for θ: the weights of ``best.pt``. Tied names share
        one tensor, as in the model's own state dict."""
        mine = {id(p): self.shadow[name] for name, p in self.params.items()}
        return {name: mine.get(id(t), t.detach()) for name, t in model.state_dict(keep_vars=True).items()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor], path) -> None:
        if {name: t.shape for name, t in state.items()} != {name: t.shape for name, t in self.shadow.items()}:
            raise NmtError(f"{path}: malformed nmt checkpoint (its ema weights are not the model's)")
        with torch.no_grad():
            for name, t in state.items():
                self.shadow[name].copy_(t)
