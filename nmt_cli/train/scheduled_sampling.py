"""The teacher-forcing ratio over training (scheduled sampling, Bengio et al. 2015).

With ratio r, each decoder step of each training sentence reads the reference's previous
word with probability r and the model's own greedy prediction otherwise, so the model
learns to continue from its own mistakes, as it must at translation time. The ratio at
optimizer step s (0-based), with r_min = ``teacher_forcing``:

* ``constant``: r = r_min (1.0, the default, is plain teacher forcing);
* ``linear``: r = max(r_min, 1 - (1 - r_min) · s / N), N = ``teacher_forcing_steps``;
* ``inverse_sigmoid``: r = r_min + (1 - r_min) · k / (k + exp(s / k)), k =
  ``teacher_forcing_steps``: close to 1 at first, halfway down at s = k ln k.
"""

from __future__ import annotations

import math

from nmt_cli.config import TrainConfig


def teacher_forcing_ratio(cfg: TrainConfig, step: int) -> float:
    """The share of decoder steps fed the reference word at optimizer step ``step``."""
    floor, n = cfg.teacher_forcing, cfg.teacher_forcing_steps
    if cfg.teacher_forcing_schedule == "linear":
        return max(floor, 1.0 - (1.0 - floor) * step / n)
    if cfg.teacher_forcing_schedule == "inverse_sigmoid":
        return floor + (1.0 - floor) * n / (n + math.exp(min(step / n, 700.0)))
    return floor
