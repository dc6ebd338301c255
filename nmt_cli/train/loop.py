"""``nmt train``: the training loop.

One optimizer step = ``accumulate`` token batches; every ``log_every`` steps a log event,
every ``valid_every`` steps a validation (greedy BLEU), a step checkpoint and, if BLEU
improved, ``best.pt``. Training stops at ``patience`` validations without improvement,
``max_steps``, ``max_epochs``, ``max_time`` or SIGINT/SIGTERM (which first write a
checkpoint). Every event goes to ``MODEL_DIR/metrics.jsonl``.

Exact resume: the batch order of an epoch is a function of (seed, epoch), and a
checkpoint stores the position in the epoch and the RNG states, so a resumed run takes
the same steps as an uninterrupted one.

Under torchrun (``train/distributed.py``) a step's batches are ``world x accumulate``
consecutive batches of that order, shared out over the ranks; the effective batch, what
one optimizer step and so one step of the learning-rate schedule sees, is ranks x
batch_tokens x accumulate. Rank 0 alone validates, logs and writes.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from nmt_cli import allocator, checkpoint, lock, vocab
from nmt_cli import device as devices
from nmt_cli.config import Config, DataConfig, TrainConfig, from_dict, parse_duration, to_dict
from nmt_cli.errors import EnvError, NmtError, os_reason
from nmt_cli.model import rewrites, shapes
from nmt_cli.model.seq2seq import Seq2Seq, parameter_count
from nmt_cli.train import data as prepared_data
from nmt_cli.train import distributed, metrics
from nmt_cli.train.optim import Schedule, make_optimizer
from nmt_cli.train.scheduled_sampling import teacher_forcing_ratio
from nmt_cli.train.validate import validate

# Steps between hand-backs of the C heap's free pages (allocator.release). Each costs the
# next step a page fault per 4 kB it touches again, so handing back after every step is
# slow, and never handing back lets the peak grow: every few steps keeps most of both
# (docs/performance.md).
RELEASE_EVERY = 10


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0  # batches of the current epoch already trained on
    elapsed: float = 0.0  # training seconds, over all runs of this model
    best_bleu: float = -1.0
    best_step: int = 0
    validated_step: int = -1
    stop_reason: str = ""
    run: str = ""  # set when training starts, kept by every resume: tells one run's checkpoints from another's


@dataclass
class Run:
    """Everything the loop touches, built by :func:`setup`."""

    cfg: Config
    out: Path
    data: prepared_data.Prepared
    model: Seq2Seq
    net: torch.nn.Module  # what the training step calls: the model's loss (rewrites.for_training), or DDP around it
    ranks: distributed.Ranks
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    progress: Progress
    device: torch.device
    autocast: Any
    scaler: Any = None
    log: Any = None
    stop_signal: list = field(default_factory=list)
    precision_line: str = ""  # which precision runs and why, for the start line


def train(cfg: Config, data_dir: Path, out: Path, resume: bool, device: str = "auto", display=None) -> Progress:
    """Train (or resume) a model; ``display`` has ``line(text)`` and ``status(text)``.

    Under torchrun this process is one rank of a data-parallel run (rank 0 displays).
    """
    dev = devices.resolve(device)
    with distributed.process_group(dev) as ranks, lock.owner(out, take=ranks.main):  # one owner: rank 0 of the run
        if ranks.main:
            lock.remove_stale(Path(out))  # a killed run's half-written files
        log = (display or _Quiet()) if ranks.main else _Quiet()
        run = setup(cfg, Path(data_dir), Path(out), resume, distributed.rank_device(dev, ranks), ranks, log)
        t, parameters = run.cfg.train, parameter_count(run.model)
        run.log.line(
            f"training {parameters:,} parameters on {run.device}, {run.precision_line}; "
            f"{len(run.data.train):,} training pairs; writing {run.out}"
        )
        if (
            ranks.main
            and cfg.train.precision == "bf16"
            and (note := devices.slow_bf16_note(run.device, t.precision, "--set train.precision"))
        ):
            run.log.line(note)
        event(
            run,
            "start",
            precision=t.precision,
            precision_asked=cfg.train.precision,
            device=str(run.device),
            ranks=ranks.world,
            parameters=parameters,
        )
        run.log.line(
            f"effective batch: {ranks.world} rank{'s' if ranks.world > 1 else ''} x {t.batch_tokens:,} tokens "
            f"x accumulate {t.accumulate} = {effective_batch(run):,} tokens an optimizer step"
        )
        try:
            with _signals(run.stop_signal):
                loop(run)
        finally:
            run.net = run.model  # let go of DDP while its process group is still there
    return run.progress


def effective_batch(run: Run) -> int:
    """Padded tokens an optimizer step (and so a learning-rate schedule step) covers at most."""
    return run.ranks.world * run.cfg.train.batch_tokens * run.cfg.train.accumulate


def loop(run: Run) -> None:
    cfg, p = run.cfg.train, run.progress
    budget, started = parse_duration(cfg.max_time), time.perf_counter() - p.elapsed
    window = {"loss": 0.0, "nll": 0.0, "tokens": 0, "start": time.perf_counter()}
    batches, batches_epoch = [], -1
    while not check_stop(run, budget):
        if batches_epoch != p.epoch:
            batches, batches_epoch = (
                run.data.train.batches(cfg.batch_tokens, cfg.seed, p.epoch, cfg.batch_multiple),
                p.epoch,
            )
        group = batches[p.batches_done : p.batches_done + cfg.accumulate * run.ranks.world]
        run.schedule.apply(run.optimizer, p.step + 1, budget_used(run, len(batches)))
        loss, nll, tokens = train_step(run, group)
        p.step, p.batches_done = p.step + 1, p.batches_done + len(group)
        if run.device.type == "cpu" and p.step % RELEASE_EVERY == 0:  # CUDA tensors are not on this heap
            allocator.release()  # peak RSS stays near a step's live tensors (see there)
        p.elapsed = time.perf_counter() - started
        window["loss"], window["nll"], window["tokens"] = (
            window["loss"] + loss,
            window["nll"] + nll,
            window["tokens"] + tokens,
        )
        run.log.status(_status(run, window, budget))
        if p.step % cfg.log_every == 0:
            log_train(run, window)
            window = {"loss": 0.0, "nll": 0.0, "tokens": 0, "start": time.perf_counter()}
        if p.step % cfg.valid_every == 0:
            validate_and_save(run, scheduled=True)
        if p.batches_done >= len(batches):
            p.epoch, p.batches_done = p.epoch + 1, 0
    if p.stop_reason.startswith("signal"):
        save(run, best=False)
    elif p.validated_step != p.step:
        validate_and_save(run, scheduled=False)
    best = f"best BLEU {p.best_bleu:.2f} at step {p.best_step}" if p.best_step else "not validated yet"
    run.log.line(f"stopped at step {p.step} ({p.stop_reason}); {best}")


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
            scaled = loss * weight
            (run.scaler.scale(scaled) if run.scaler else scaled).backward()
        if mine:
            loss_sum, nll_sum = loss_sum + loss.item(), nll_sum + nll.item()
    if run.scaler:
        run.scaler.unscale_(run.optimizer)
    if t.clip_norm:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), t.clip_norm)
    if run.scaler:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
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
    p, cfg = run.progress, run.cfg.train
    scores = None
    if run.ranks.main:  # the other ranks wait for its scores
        scores = validate(
            run.model, run.data.valid, run.data.valid_refs, run.data.tgt_spm, cfg, run.device, run.autocast
        )
        hyps = scores.pop("hypotheses")
    scores = distributed.from_main(scores)
    p.validated_step = p.step
    if scheduled:
        run.schedule.validated(scores["bleu"])
    improved = scores["bleu"] > p.best_bleu
    if improved:
        p.best_bleu, p.best_step = scores["bleu"], p.step
        if run.ranks.main:
            (run.out / "valid.best.hyp").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    event(run, "valid", **scores, best_bleu=p.best_bleu, lr=run.optimizer.param_groups[0]["lr"])
    run.log.line(
        f"step {p.step} valid: loss {scores['loss']:.3f} ppl {scores['ppl']:.2f} "
        f"BLEU {scores['bleu']:.2f} chrF {scores['chrf']:.2f}{' (best)' if improved else ''}"
    )
    save(run, best=improved)
    distributed.barrier()  # the others wait while rank 0 writes


def check_stop(run: Run, budget: float) -> bool:
    """Whether training must stop before its next step; the reason goes to progress.

    Every rank stops at the same step: the first reason in rank order wins (clocks and
    signals are each rank's own; everything else is the same on all ranks).
    """
    reasons = distributed.gather(stop_reason(run, budget))
    run.progress.stop_reason = next((r for r in reasons if r), "")
    return bool(run.progress.stop_reason)


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


def stop_reason(run: Run, budget: float) -> str:
    """Why training must stop before its next step ("" to go on)."""
    cfg, p = run.cfg.train, run.progress
    if run.stop_signal:
        return f"signal {run.stop_signal[0]}"
    if cfg.max_steps and p.step >= cfg.max_steps:
        return f"max_steps {cfg.max_steps}"
    if cfg.max_epochs and p.epoch >= cfg.max_epochs:
        return f"max_epochs {cfg.max_epochs}"
    if budget and p.elapsed >= budget:
        return f"max_time {cfg.max_time}"
    if cfg.patience and run.schedule.bad >= cfg.patience:
        return f"patience {cfg.patience}: no BLEU improvement in {run.schedule.bad} validations"
    return ""


def log_train(run: Run, window: dict) -> None:
    seconds = time.perf_counter() - window["start"]
    loss, nll = window["loss"] / window["tokens"], window["nll"] / window["tokens"]
    values = {
        "loss": loss,
        "ppl": math.exp(min(nll, 50.0)),
        "tokens_per_s": window["tokens"] / seconds,
        "lr": run.optimizer.param_groups[0]["lr"],
        "ranks": run.ranks.world,
        "effective_batch": effective_batch(run),
        "teacher_forcing": teacher_forcing_ratio(run.cfg.train, run.progress.step - 1),
    }
    event(run, "train", **values)
    run.log.line(_status(run, window, parse_duration(run.cfg.train.max_time)))


def _status(run: Run, window: dict, budget: float) -> str:
    """step, epoch, loss, ppl, target tokens/s, lr, elapsed and ETA (by max_time or max_steps)."""
    p, cfg = run.progress, run.cfg.train
    loss, nll = window["loss"] / max(1, window["tokens"]), window["nll"] / max(1, window["tokens"])
    speed = window["tokens"] / max(1e-9, time.perf_counter() - window["start"])
    left = [budget - p.elapsed] if budget else []
    if cfg.max_steps and p.step:
        left.append(p.elapsed / p.step * (cfg.max_steps - p.step))
    eta = f" | eta {_clock(min(left))}" if left else ""
    return (
        f"step {p.step} | epoch {p.epoch + 1} | loss {loss:.3f} | ppl {math.exp(min(nll, 50.0)):.2f} | "
        f"{speed:,.0f} tgt tok/s | lr {run.optimizer.param_groups[0]['lr']:.2e} | {_clock(p.elapsed)}{eta}"
    )


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


def save(run: Run, best: bool) -> None:
    """Write a step checkpoint (and best.pt): rank 0 writes, every rank gives its RNG state."""
    rng = distributed.gather(_rng_state(run.device))
    if not run.ranks.main:
        return
    payload = {
        "config": to_dict(run.cfg),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler else None,
        "rng": rng[0],
        "rng_ranks": rng,  # one state per rank: each resumes its own dropout stream
        "progress": asdict(run.progress),
        "vocab": run.data.vocab,
        "data": {"fingerprint": run.data.manifest["fingerprint"]},
    }
    path = checkpoint.step_path(run.out, run.progress.step)
    checkpoint.save(path, payload, *([run.out / "best.pt"] if best else []))
    checkpoint.prune(run.out, run.cfg.train.keep_last)


def _rng_state(device: torch.device) -> dict:
    return {"torch": torch.get_rng_state(), "cuda": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else []}


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and state["cuda"]:
        torch.cuda.set_rng_state(state["cuda"][0].cpu(), device)


# ----------------------------------------------------------------------------- setup


def setup(
    cfg: Config, data_dir: Path, out: Path, resume: bool, dev: torch.device, ranks: distributed.Ranks, log
) -> Run:
    data = prepared_data.load(data_dir)
    # The data section that counts is the one the prep directory was made with: it is what
    # a checkpoint must carry (text normalization at translation time, languages).
    cfg = Config(from_dict(DataConfig, data.manifest["options"]), cfg.model, cfg.train, cfg.decode)
    resume_from, saved = _check_out(out, resume), None
    if resume_from is not None:
        state = checkpoint.load(resume_from)
        saved = checkpoint.validate(state, resume_from, resume=True)  # the checkpoint's Config
        cfg = _resumed_config(cfg, saved, resume_from)
        _check_same_data(state, data, resume_from)
        for line in _train_changes(saved.train, cfg.train):
            log.line(line)
    _check_vocab(cfg, data)
    cfg, precision_line = _choose_precision(cfg, saved.train.precision if saved else None, dev)
    autocast = devices.autocast(
        dev, cfg.train.precision, "train.precision"
    )  # refuses fp16 on CPU before anything is written
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
    model = Seq2Seq(cfg.model, data.vocab["src_size"], data.vocab["tgt_size"], data.vocab["tgt_words"]).to(dev)
    if ranks.rank:
        torch.manual_seed(cfg.train.seed + ranks.rank)  # but each rank its own dropout
    optimizer = make_optimizer(cfg.train, model.parameters())
    schedule, progress = Schedule(cfg.train), Progress(run=uuid.uuid4().hex)
    scaler = torch.amp.GradScaler("cuda") if cfg.train.precision == "fp16" else None
    if resume_from is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if scaler and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        progress = Progress(**{**state["progress"], "stop_reason": ""})
        _resume_rng(state, ranks, dev, resume_from, log)
    distributed.barrier()  # every rank has checked the output directory before rank 0 writes in it
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)
        if resume_from is not None:  # what a killed run logged after its last checkpoint comes again
            metrics.cut_back(out / "metrics.jsonl", progress.step)
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
    net = _data_parallel(model, dev)
    return Run(
        cfg,
        out,
        data,
        model,
        net,
        ranks,
        optimizer,
        schedule,
        progress,
        dev,
        autocast,
        scaler,
        log,
        precision_line=precision_line,
    )


def _choose_precision(cfg: Config, resumed: str | None, dev: torch.device) -> tuple[Config, str]:
    """``cfg`` with ``train.precision`` concrete, and a phrase saying why, for the start line.

    ``auto`` takes a resumed run's own precision (never a new probe: the run goes on exactly
    as it would have), else rank 0's probe of this model's product shapes, the same on
    every rank. An explicit precision is used as it is.
    """
    asked = cfg.train.precision
    if asked == "auto" and resumed not in (None, "auto"):
        chosen, why = resumed, "the precision this run started in"
    else:
        rows = shapes.round_up(max(1, cfg.train.batch_tokens // 32), cfg.train.batch_multiple)
        chosen, why = distributed.from_main(
            devices.resolve_precision(asked, dev, shapes.product_shapes(cfg.model, rows))
        )
    line = f"precision {chosen}" if asked != "auto" else f"precision auto -> {chosen} ({why})"
    if resumed not in (None, "auto", chosen):
        line += f" (the checkpoint trained in {resumed}: not an exact continuation)"
    return Config(cfg.data, cfg.model, replace(cfg.train, precision=chosen), cfg.decode), line


def _data_parallel(model: Seq2Seq, dev: torch.device) -> torch.nn.Module:
    """The model's loss (``rewrites.for_training``), in DDP when this process is a rank (a world of one too)."""
    net = rewrites.for_training(model)
    if not torch.distributed.is_initialized():
        return net
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)


def _resume_rng(state: dict, ranks: distributed.Ranks, dev: torch.device, path: Path, log) -> None:
    """Each rank takes back its own generator state; a run resumed on another number of
    ranks resumes its batches exactly, but not its dropout masks."""
    states = state.get("rng_ranks") or [state["rng"]]
    if len(states) != ranks.world:
        log.line(
            f"warning: {path} was written by a run of {len(states)} rank(s), this one has {ranks.world}: "
            "the batches resume exactly, the dropout masks do not"
        )
    if ranks.rank < len(states):
        _set_rng_state(states[ranks.rank], dev)


def _check_out(out: Path, resume: bool) -> Path | None:
    if out.exists() and not out.is_dir():
        raise NmtError(f"{out}: exists and is not a directory")
    newest = checkpoint.latest(out) if out.is_dir() else None
    if resume:
        if newest is None:
            raise NmtError(f"{out}: no checkpoint to resume from (ckpt-*.pt)")
        return newest
    if out.is_dir() and any(out.iterdir()):
        raise NmtError(f"{out}: not empty; add --resume to continue its training, or choose another --out")
    return None


def _resumed_config(cfg: Config, saved: Config, path: Path) -> Config:
    """The checkpoint's (``saved``) model; the given train section (so budgets can be extended)."""
    if saved.model != cfg.model:
        changed = [k for k in asdict(cfg.model) if getattr(cfg.model, k) != getattr(saved.model, k)]
        raise NmtError(f"{path}: was trained with other model settings ({', '.join('model.' + k for k in changed)})")
    return Config(saved.data, saved.model, cfg.train, cfg.decode)


def _train_changes(saved: TrainConfig, given: TrainConfig) -> list[str]:
    """One note per train setting a resumed run changes, so that a change is never silent."""
    lines = []
    for key, before in asdict(saved).items():
        if key == "precision":  # its own line: setup's _choose_precision
            continue
        if (after := getattr(given, key)) != before:
            lines.append(f"note: --resume: train.{key} {before} -> {after} (checkpoint's value -> this run's)")
    return lines


def _check_same_data(state: dict, data: prepared_data.Prepared, path: Path) -> None:
    if state["data"]["fingerprint"] != data.manifest["fingerprint"]:
        raise NmtError(f"{path}: was trained on other prepared data (manifest fingerprint differs)")


def _check_vocab(cfg: Config, data: prepared_data.Prepared) -> None:
    if data.vocab["special_ids"] != vocab.SPECIAL_IDS:
        raise NmtError(f"prep directory has special ids {data.vocab['special_ids']}, expected {vocab.SPECIAL_IDS}")
    if cfg.model.share_embeddings and not data.vocab["joint"]:
        raise NmtError("model.share_embeddings needs a joint vocabulary (nmt prep --joint)")


@contextlib.contextmanager
def _signals(flag: list):
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


class _Quiet:
    def line(self, text: str) -> None:
        pass

    def status(self, text: str) -> None:
        pass


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
