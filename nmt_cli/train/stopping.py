"""When training stops: at a signal, its budget (``max_steps``, ``max_epochs``,
``max_time``) spent, or its ``patience`` run out; and the share of the budget used, the
clock of the ``budget`` learning-rate schedule; the command that resumes a stopped run."""

from __future__ import annotations

import contextlib
import shlex
import signal
from pathlib import Path

from nmt_cli.config import parse_duration
from nmt_cli.train import distributed
from nmt_cli.train.metrics import METRIC_NAMES
from nmt_cli.train.run import Run


def check(run: Run) -> bool:
    """Whether training must stop before its next step; the reason goes to progress.

    Every rank stops at the same step: the first reason in rank order wins (clocks and
    signals are each rank's own; everything else is the same on all ranks).
    """
    reasons = distributed.gather(_reason(run))
    run.progress.stop_reason = next((r for r in reasons if r), "")
    return bool(run.progress.stop_reason)


def _reason(run: Run) -> str:
    """Why training must stop before its next step ("" to go on)."""
    cfg, p = run.cfg.train, run.progress
    if run.stop_signal:
        return f"signal {run.stop_signal[0]}"
    if cfg.max_steps and p.step >= cfg.max_steps:
        return f"max_steps {cfg.max_steps}"
    if cfg.max_epochs and p.epoch >= cfg.max_epochs:
        return f"max_epochs {cfg.max_epochs}"
    if (budget := parse_duration(cfg.max_time)) and p.elapsed >= budget:
        return f"max_time {cfg.max_time}"
    if cfg.patience and run.schedule.bad >= cfg.patience:
        name = METRIC_NAMES[cfg.valid_metric]
        return f"patience {cfg.patience}: no {name} improvement in {run.schedule.bad} validations"
    return ""


def budget_used(run: Run, epoch_batches: int) -> float:
    """The share of the run's budget used so far: the largest of its shares of max_steps,
    max_epochs and max_time (those set); 0 without limits. Rank 0's clock on every rank,
    so that all ranks take the same learning rate."""
    cfg, p = run.cfg.train, run.progress
    shares = [0.0]
    if cfg.max_steps:
        shares.append(p.step / cfg.max_steps)
    if cfg.max_epochs:
        shares.append((p.epoch + p.batches_done / max(1, epoch_batches)) / cfg.max_epochs)
    if cfg.max_time:
        shares.append(distributed.from_main(p.elapsed) / parse_duration(cfg.max_time))
    return max(shares)


@contextlib.contextmanager
def signals(flag: list):
    """SIGINT/SIGTERM ask the loop to stop after the current step (a second SIGINT kills)."""

    def handler(signum, frame):
        if flag and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.append(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def resume_command(recipe: Path, data: Path, out: Path, assignments: list[str], threads: int, device: str) -> str:
    """The command that continues an interrupted run with its own settings, quoted for a shell."""
    if distributed.launched():
        return "the same torchrun command with --resume"
    words = ["nmt", "train", str(recipe), "--data", str(data), "--out", str(out)]
    words += [word for assignment in assignments for word in ("--set", assignment)]
    words += (["--threads", str(threads)] if threads else []) + (["--device", device] if device != "auto" else [])
    return shlex.join([*words, "--resume"])
