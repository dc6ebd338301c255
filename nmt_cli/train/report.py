"""What a training run tells: its lines on the display (the start, every ``log_every``
steps, each validation, the stop), the live status line, and its events in
``metrics.jsonl`` (rank 0 alone)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from nmt_cli import device as devices
from nmt_cli.config import parse_duration
from nmt_cli.errors import EnvError, os_reason
from nmt_cli.model.loss import perplexity
from nmt_cli.model.seq2seq import parameter_count
from nmt_cli.train.metrics import METRIC_NAMES
from nmt_cli.train.run import Run
from nmt_cli.train.scheduled_sampling import teacher_forcing_ratio


class Quiet:
    """The display of a rank other than 0, or of a run given none."""

    def line(self, text: str) -> None:
        pass

    def status(self, text: str) -> None:
        pass


@dataclass
class Window:
    """Sums over the steps since the last log line."""

    loss: float = 0.0
    nll: float = 0.0
    tokens: int = 0
    start: float = field(default_factory=time.perf_counter)

    def add(self, loss: float, nll: float, tokens: int) -> None:
        self.loss, self.nll, self.tokens = self.loss + loss, self.nll + nll, self.tokens + tokens


def started(run: Run, asked: str) -> None:
    """The start lines and event; ``asked`` is the precision the config asked for."""
    t, ranks, n, p = run.cfg.train, run.ranks, parameter_count(run.model), run.progress
    fresh = f"; weights from {p.init} (optimizer, schedule, step count and best score start fresh)"
    run.log.line(
        f"training {n:,} parameters on {run.device}, {run.precision_line}; "
        f"{len(run.data.train):,} training pairs; writing {run.out}{fresh if p.init and not p.step else ''}"
    )
    note = ranks.main and asked == "bf16" and devices.slow_bf16_note(run.device, t.precision, "--set train.precision")
    if note:
        run.log.line(note)
    start = {"precision": t.precision, "precision_asked": asked, "device": str(run.device), "ranks": ranks.world}
    event(run, "start", **start, parameters=n, **({"init": p.init} if p.init else {}))
    run.log.line(
        f"effective batch: {ranks.world} rank{'s' if ranks.world > 1 else ''} x {t.batch_tokens:,} tokens "
        f"x accumulate {t.accumulate} = {run.effective_batch:,} tokens an optimizer step"
    )


def logged(run: Run, window: Window) -> None:
    """The event and line of a logging window."""
    event(
        run,
        "train",
        loss=window.loss / window.tokens,
        ppl=perplexity(window.nll, window.tokens),
        tokens_per_s=window.tokens / (time.perf_counter() - window.start),
        lr=run.optimizer.param_groups[0]["lr"],
        ranks=run.ranks.world,
        effective_batch=run.effective_batch,
        teacher_forcing=teacher_forcing_ratio(run.cfg.train, run.progress.step - 1),
    )
    run.log.line(status(run, window))


def status(run: Run, window: Window) -> str:
    """step, epoch, loss, ppl, target tokens/s, lr, elapsed and ETA (by max_time or max_steps)."""
    p, cfg, budget = run.progress, run.cfg.train, parse_duration(run.cfg.train.max_time)
    speed = window.tokens / max(1e-9, time.perf_counter() - window.start)
    left = [budget - p.elapsed] if budget else []
    if cfg.max_steps and p.step:
        left.append(p.elapsed / p.step * (cfg.max_steps - p.step))
    eta = f" | eta {_clock(min(left))}" if left else ""
    return (
        f"step {p.step} | epoch {p.epoch + 1} | loss {window.loss / max(1, window.tokens):.3f} | "
        f"ppl {perplexity(window.nll, window.tokens):.2f} | {speed:,.0f} tgt tok/s | "
        f"lr {run.optimizer.param_groups[0]['lr']:.2e} | {_clock(p.elapsed)}{eta}"
    )


def validated(run: Run, scores: dict[str, float], improved: bool) -> None:
    """The validation's event, naming the metric that decides and its best so far, and line."""
    p, metric = run.progress, run.cfg.train.valid_metric
    event(run, "valid", **scores, metric=metric, best=p.best_score, lr=run.optimizer.param_groups[0]["lr"])
    best = (" (best)" if metric == "bleu" else f" (best {METRIC_NAMES[metric]})") if improved else ""
    run.log.line(
        f"step {p.step} valid: loss {scores['loss']:.3f} ppl {scores['ppl']:.2f} "
        f"BLEU {scores['bleu']:.2f} chrF {scores['chrf']:.2f}{best}"
    )


def stopped(run: Run) -> None:
    p, name = run.progress, METRIC_NAMES[run.cfg.train.valid_metric]
    best = f"best {name} {p.best_score:.2f} at step {p.best_step}" if p.best_score is not None else "no best yet"
    run.log.line(f"stopped at step {p.step} ({p.stop_reason}); {best}")


def event(run: Run, kind: str, **values: Any) -> None:
    """Append a record to metrics.jsonl (rank 0)."""
    if not run.ranks.main:
        return
    p = run.progress
    record = {"event": kind, "step": p.step, "epoch": p.epoch, "elapsed": round(p.elapsed, 2), **values}
    path = run.out / "metrics.jsonl"
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:  # a full disk: a write's OSError names no file
        raise EnvError(f"{path}: {os_reason(e)}") from None


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
