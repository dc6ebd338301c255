"""Optimizers and learning-rate schedules.

The schedule sets the learning rate before every optimizer step, as a function of the
step and (for ``plateau``) of the validation history; its state is plain data, saved in
checkpoints:

* ``constant``: lr, after an optional linear warmup of ``warmup_steps``;
* ``plateau``: lr x factor^k, where k grows by one each time ``plateau_patience``
  validations in a row fail to improve ``valid_metric`` (never below ``min_lr``);
* ``inverse_sqrt``: linear warmup to lr at ``warmup_steps``, then lr * sqrt(warmup / step);
* ``budget``: lr * min(1, (1 - u) / d), decaying linearly to ``min_lr`` over the last
  share d (``decay_share``) of the run's budget, where u is the share of it used: the
  largest of step / ``max_steps``, epochs / ``max_epochs`` and elapsed time /
  ``max_time``, for the limits that are set (after an optional warmup). d = 1 decays
  from the start; d < 1 holds lr for the first 1 - d of the budget, then decays
  ("warmup-stable-decay"). A run with a fixed budget ends at a small lr whatever its
  length, the best of the simple schedules for training to a budget (Li et al. 2020,
  "Budgeted Training"). With ``max_time`` the lr follows the clock, so a resumed run
  continues the schedule but does not repeat an uninterrupted run's trajectory exactly.

Early stopping counts validations without improvement (``bad``, against ``patience``).
Under ``budget`` those of the hold (d < 1, before the decay starts) do not count: at the
peak lr the score levels off, and the decay still to come is what raises it
(``docs/results.md``: patience).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from nmt_cli.config import TrainConfig


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)  # one kernel for all parameters


class Schedule:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.scale = 1.0  # plateau reductions so far, as a factor
        self.best = -math.inf
        self.bad = 0
        self.holding = False  # budget: the lr is still held at its peak (set by apply)

    def lr(self, step: int, used: float = 0.0) -> float:
        """Learning rate for optimizer step ``step`` (1-based); ``used`` the share of the
        budget used before it (``budget``)."""
        cfg, warm = self.cfg, self.cfg.warmup_steps
        if cfg.schedule == "inverse_sqrt":
            return cfg.lr * (step / warm if warm and step < warm else math.sqrt(warm / step) if warm else 1.0)
        warmup = min(1.0, step / warm) if warm else 1.0
        if cfg.schedule == "budget":
            return max(cfg.lr * min(self._decay_left(used), 1.0), min(cfg.min_lr, cfg.lr)) * warmup
        floor = min(cfg.min_lr, cfg.lr) if self.scale < 1 else 0.0  # reductions never raise the lr
        return max(cfg.lr * self.scale, floor) * warmup

    def _decay_left(self, used: float) -> float:
        """``budget``: the share of the decay still ahead, > 1 while the lr is held."""
        return max(1.0 - used, 0.0) / self.cfg.decay_share

    def apply(self, optimizer: torch.optim.Optimizer, step: int, used: float = 0.0) -> float:
        lr = self.lr(step, used)
        self.holding = self.cfg.schedule == "budget" and self._decay_left(used) > 1.0
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def validated(self, score: float) -> None:
        """Bookkeeping after a validation (its ``valid_metric``, turned higher-is-better): the validations
        without improvement, for early stopping and the plateau schedule; under ``budget``
        none count while the lr is held."""
        if score > self.best:
            self.best, self.bad = score, 0
            return
        if self.holding:
            return
        self.bad += 1
        patience = self.cfg.plateau_patience
        if self.cfg.schedule == "plateau" and patience and self.bad % patience == 0:
            self.scale *= self.cfg.plateau_factor

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale, self.best, self.bad = state["scale"], state["best"], state["bad"]
