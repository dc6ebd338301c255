"""``nmt train``: the training loop.

One optimizer step = ``accumulate`` token batches (under torchrun, ``world x accumulate``
consecutive batches shared out over the ranks: ``distributed.py``); every ``log_every``
steps a log line and event (``report.py``), every ``valid_every`` steps a validation
(loss, greedy BLEU and chrF), a step checkpoint and, if ``valid_metric`` improved,
``best.pt`` (``resume.py``), until a stop (``stopping.py``). The batch order of an epoch
is a function of (seed, epoch), and a checkpoint stores the position in the epoch and the
RNG states, so a resumed run takes the same steps as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch

from nmt_cli import allocator, lock
from nmt_cli import device as devices
from nmt_cli.config import Config
from nmt_cli.errors import NmtError
from nmt_cli.train import distributed, metrics, report, stopping
from nmt_cli.train.resume import Progress, save
from nmt_cli.train.run import Run, setup
from nmt_cli.train.scheduled_sampling import teacher_forcing_ratio
from nmt_cli.train.validate import validate

# Steps between hand-backs of the C heap's free pages (allocator.release). Each costs the
# next step a page fault per 4 kB it touches again, so handing back after every step is
# slow, and never handing back lets the peak grow: every few steps keeps most of both
# (docs/performance.md).
RELEASE_EVERY = 10


def train(
    cfg: Config, data_dir: Path, out: Path, resume: bool, device: str = "auto", display=None, init: Path | None = None
) -> Progress:
    """Train (or resume) a model, from the weights of checkpoint ``init`` if given;
    ``display`` has ``line(text)`` and ``status(text)``.

    Under torchrun this process is one rank of a data-parallel run (rank 0 displays).
    """
    dev = devices.resolve(device)
    with distributed.process_group(dev) as ranks, lock.owner(out, take=ranks.main):  # one owner: rank 0 of the run
        if ranks.main:
            lock.remove_stale(Path(out))  # a killed run's half-written files
        log = (display or report.Quiet()) if ranks.main else report.Quiet()
        run = setup(cfg, Path(data_dir), Path(out), resume, distributed.rank_device(dev, ranks), ranks, log, init)
        report.started(run, cfg.train.precision)
        try:
            with stopping.signals(run.stop_signal):
                loop(run)
        finally:
            run.net = run.model  # let go of DDP while its process group is still there
    return run.progress


def loop(run: Run) -> None:
    cfg, p = run.cfg.train, run.progress
    started, window = time.perf_counter() - p.elapsed, report.Window()
    batches, batches_epoch = [], -1
    while not stopping.check(run):
        if batches_epoch != p.epoch:
            batches = run.data.train.batches(cfg.batch_tokens, cfg.seed, p.epoch, cfg.batch_multiple)
            batches_epoch = p.epoch
        group = batches[p.batches_done : p.batches_done + cfg.accumulate * run.ranks.world]
        run.schedule.apply(run.optimizer, p.step + 1, stopping.budget_used(run, len(batches)))
        loss, nll, tokens = train_step(run, group)
        if not math.isfinite(loss) and cfg.precision != "fp16":  # fp16's scaler skips such steps itself
            raise NmtError(f"{run.out}: the loss is {loss} at step {p.step + 1}: training diverged; lower train.lr")
        window.add(loss, nll, tokens)
        p.step, p.batches_done = p.step + 1, p.batches_done + len(group)
        if run.device.type == "cpu" and p.step % RELEASE_EVERY == 0:  # CUDA tensors are not on this heap
            allocator.release()  # peak RSS stays near a step's live tensors (see there)
        p.elapsed = time.perf_counter() - started
        run.log.status(report.status(run, window))
        if p.step % cfg.log_every == 0:
            report.logged(run, window)
            window = report.Window()
        if p.step % cfg.valid_every == 0:
            validate_and_save(run, scheduled=True)
        if p.batches_done >= len(batches):
            p.epoch, p.batches_done = p.epoch + 1, 0
    if p.stop_reason.startswith("signal"):
        save(run, best=False)
    elif p.validated_step != p.step:
        validate_and_save(run, scheduled=False)
    report.stopped(run)


def train_step(run: Run, group: list) -> tuple[float, float, int]:
    """One optimizer step over the batches ``group`` (index arrays), shared out over the
    ranks; the loss is averaged over all their target tokens. Returns the sums of loss
    and -log p over all ranks, and the target tokens."""
    tokens = int(sum(run.data.train.tgt_len[b].sum() for b in group))  # every rank's, from the length arrays
    mine = distributed.share(group, run.ranks)
    # DDP averages gradients over ranks: weighting by world/tokens makes the step's gradient
    # the gradient of (sum of token losses)/tokens, as one process over the whole group.
    # A rank left without a batch (end of an epoch) still joins the averaging, with weight 0.
    weight = run.ranks.world / tokens if mine else 0.0
    work = mine or group[:1]
    t = run.cfg.train
    ratio = teacher_forcing_ratio(t, run.progress.step)
    loss_sum = nll_sum = 0.0
    for i, indices in enumerate(work):
        batch = run.data.train.collate(indices, multiple=t.batch_multiple, max_tokens=t.batch_tokens).to(run.device)
        with _gradient_sync(run, last=i == len(work) - 1):
            with run.autocast():
                loss, nll = run.net(batch, t.label_smoothing, ratio)
            run.scaler.scale(loss * weight).backward()
        if mine:
            loss_sum, nll_sum = loss_sum + loss.item(), nll_sum + nll.item()
    run.scaler.unscale_(run.optimizer)  # the scaler does nothing but under fp16
    if t.clip_norm:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), t.clip_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    if run.ema:
        run.ema.update(run.progress.step + 1)  # the step this is
    loss_sum, nll_sum = distributed.total([loss_sum, nll_sum], run.device)
    return loss_sum, nll_sum, tokens


def _gradient_sync(run: Run, last: bool):
    """DDP averages gradients once a step, in the backward pass of a rank's last batch."""
    if last or not isinstance(run.net, torch.nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return run.net.no_sync()


def validate_and_save(run: Run, scheduled: bool) -> None:
    """Validate, log, checkpoint. Only ``scheduled`` validations (every ``valid_every``)
    count for the plateau schedule and early stopping, so that the extra one at a stop
    does not change the trajectory of a run resumed from there."""
    p = run.progress
    scores = None
    if run.ranks.main:  # the other ranks wait for its scores
        with run.ema.applied() if run.ema else contextlib.nullcontext():
            scores = validate(run)
        hyps = scores.pop("hypotheses")
    scores = distributed.from_main(scores)
    p.validated_step = p.step
    metric = run.cfg.train.valid_metric
    score = metrics.signed(metric, scores[metric])
    if scheduled:
        run.schedule.validated(score)
    improved = p.best_score is None or score > metrics.signed(metric, p.best_score)
    if improved:
        p.best_score, p.best_step = scores[metric], p.step
        if run.ranks.main:
            (run.out / "valid.best.hyp").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    report.validated(run, scores, improved)
    save(run, best=improved)
    distributed.barrier()  # the others wait while rank 0 writes
