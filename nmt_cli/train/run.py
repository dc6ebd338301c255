"""A training run: everything the loop touches (:class:`Run`), and :func:`setup`, which
builds it: the config it trains with, its precision, the model, optimizer and schedule,
from the newest checkpoint on resume."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from nmt_cli import device as devices
from nmt_cli import vocab
from nmt_cli.config import Config, DataConfig, from_dict, to_dict
from nmt_cli.errors import NmtError
from nmt_cli.model import rewrites, shapes
from nmt_cli.model.seq2seq import Seq2Seq
from nmt_cli.train import data as prepared_data
from nmt_cli.train import distributed, metrics
from nmt_cli.train.ema import Ema
from nmt_cli.train.optim import Schedule, make_optimizer
from nmt_cli.train.resume import Progress, restore, resumed_from, warm_start


@dataclass
class Run:
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
    precision_line: str  # which precision runs and why, for the start line
    scaler: torch.amp.GradScaler  # enabled under fp16 alone
    log: Any  # the display: line(text), status(text)
    stop_signal: list = field(default_factory=list)  # the signals that asked to stop
    ema: Ema | None = None  # the moving average of the weights (train.ema)

    @property
    def effective_batch(self) -> int:
        """Padded tokens an optimizer step (and so a learning-rate schedule step) covers at most."""
        return self.ranks.world * self.cfg.train.batch_tokens * self.cfg.train.accumulate


def setup(
    cfg: Config,
    data_dir: Path,
    out: Path,
    resume: bool,
    dev: torch.device,
    ranks: distributed.Ranks,
    log,
    init: Path | None = None,
) -> Run:
    """The run ``train`` starts; with ``resume``, from the newest checkpoint of ``out``;
    with ``init``, a new run from that checkpoint's weights."""
    data = prepared_data.load(data_dir)
    # The data section that counts is the one the prep directory was made with: it is what
    # a checkpoint must carry (text normalization at translation time, languages).
    cfg = Config(from_dict(DataConfig, data.manifest["options"]), cfg.model, cfg.train, cfg.decode)
    cfg, resumed = resumed_from(cfg, data, out, resume, init, log)
    weights = warm_start(cfg, data, data_dir, init, log) if init else None
    _check_vocab(cfg, data)
    cfg, precision_line = _choose_precision(cfg, resumed.precision if resumed else None, dev)
    autocast = devices.autocast(dev, cfg.train.precision, "train.precision")  # refuses fp16 on CPU before any write
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
    model = Seq2Seq(cfg.model, data.vocab["src_size"], data.vocab["tgt_size"], data.vocab["tgt_words"]).to(dev)
    if weights:
        model.load_state_dict(weights)
    if ranks.rank:
        torch.manual_seed(cfg.train.seed + ranks.rank)  # but each rank its own dropout
    optimizer = make_optimizer(cfg.train, model.parameters())
    schedule, progress = Schedule(cfg.train), Progress(run=uuid.uuid4().hex, init=str(init or ""))
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.train.precision == "fp16")
    run = Run(
        cfg, out, data, model, model, ranks, optimizer, schedule, progress, dev, autocast, precision_line, scaler, log
    )
    run.ema = Ema(model, cfg.train.ema) if cfg.train.ema else None
    if resumed:
        restore(run, resumed)
    distributed.barrier()  # every rank has checked the output directory before rank 0 writes in it
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)
        if resumed:  # what a killed run logged after its last checkpoint comes again
            metrics.cut_back(out / "metrics.jsonl", run.progress.step)
        else:  # a run that stopped before its first checkpoint logged what starts again now
            (out / "metrics.jsonl").unlink(missing_ok=True)
        init_line = f"# the weights this run started from: nmt train --init {run.progress.init}\n"
        text = (init_line if run.progress.init else "") + yaml.safe_dump(to_dict(cfg), sort_keys=False)
        (out / "config.yaml").write_text(text, encoding="utf-8")
    run.net = _data_parallel(model, dev)
    return run


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


def _check_vocab(cfg: Config, data: prepared_data.Prepared) -> None:
    if data.vocab["special_ids"] != vocab.SPECIAL_IDS:
        raise NmtError(f"prep directory has special ids {data.vocab['special_ids']}, expected {vocab.SPECIAL_IDS}")
    if cfg.model.share_embeddings and not data.vocab["joint"]:
        raise NmtError("model.share_embeddings needs a joint vocabulary (nmt prep --joint)")
