"""A run's checkpoints: what one holds (:func:`save`), and resuming from one: the checks,
the config a resumed run goes on with, the states taken back (:func:`restore`); or
starting a new run from another's weights (``--init``, :func:`warm_start`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nmt_cli import checkpoint
from nmt_cli.config import Config, to_dict
from nmt_cli.errors import NmtError
from nmt_cli.model import saved as stored
from nmt_cli.train import distributed

if TYPE_CHECKING:
    from nmt_cli.train.data import Prepared
    from nmt_cli.train.run import Run


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0  # batches of the current epoch already trained on
    elapsed: float = 0.0  # training seconds, over all runs of this model
    best_score: float | None = None  # the best validation's train.valid_metric
    best_step: int = 0
    validated_step: int = -1
    stop_reason: str = ""
    run: str = ""  # set when training starts, kept by every resume: tells one run's checkpoints from another's
    init: str = ""  # the checkpoint whose weights the run started from (--init)


@dataclass
class Resumed:
    """The checkpoint a run resumes from."""

    path: Path
    state: dict[str, Any]  # the checkpoint's payload
    precision: str  # the precision it trained in


def resumed_from(
    cfg: Config, data: Prepared, out: Path, resume: bool, init: Path | None, log
) -> tuple[Config, Resumed | None]:
    """With ``resume``, the newest checkpoint of ``out`` and the config the run goes on
    with: the checkpoint's model, the given train section (so budgets can be extended), a
    note for each train setting that changes. Without, ``out`` must be new or empty."""
    if init and resume:
        raise NmtError(
            "--init starts a new run from a checkpoint's weights, --resume goes on with the run in --out: "
            "give one or the other"
        )
    if out.exists() and not out.is_dir():
        raise NmtError(f"{out}: exists and is not a directory")
    path = checkpoint.latest(out) if out.is_dir() else None
    if not resume:
        if out.is_dir() and any(out.iterdir()):
            hint = "--init starts a new run:" if init else "add --resume to continue its training, or"
            raise NmtError(f"{out}: not empty; {hint} choose another --out")
        return cfg, None
    if path is None:
        if not _started_only(out):
            raise NmtError(f"{out}: no checkpoint to resume from (ckpt-*.pt)")
        log.line(f"note: {out}: its run stopped before its first checkpoint; this one starts afresh")
        return cfg, None
    state = checkpoint.load(path)
    saved = stored.validate(state, path, resume=True)  # the checkpoint's Config
    if saved.model != cfg.model:
        changed = [k for k in asdict(cfg.model) if getattr(cfg.model, k) != getattr(saved.model, k)]
        raise NmtError(f"{path}: was trained with other model settings ({', '.join('model.' + k for k in changed)})")
    if state["data"]["fingerprint"] != data.manifest["fingerprint"]:
        raise NmtError(f"{path}: was trained on other prepared data (manifest fingerprint differs)")
    for line in _changes(saved.train, cfg.train, "--resume: train"):
        log.line(line)
    return Config(saved.data, saved.model, cfg.train, cfg.decode), Resumed(path, state, saved.train.precision)


# What a run writes before its first checkpoint (besides its hidden lock and temporary files).
STARTED = {"config.yaml", "metrics.jsonl"}


def _started_only(out: Path) -> bool:
    """Whether ``out`` holds a run that stopped before its first checkpoint, and nothing else."""
    names = {p.name for p in out.iterdir() if not p.name.startswith(".")} if out.is_dir() else set()
    return "config.yaml" in names and names <= STARTED


# The model settings a run started with --init may change: the weights do not depend on them.
TUNABLE = ("dropout", "emb_dropout", "word_dropout", "init_uniform")


def warm_start(cfg: Config, data: Prepared, data_dir: Path, path: Path, log) -> dict[str, Any]:
    """With ``--init``: the weights of the checkpoint at ``path``, once its network is the
    recipe's (a TUNABLE setting may differ: a note each) and its vocabulary the prep
    directory's; else a one-line error naming what differs. The new run's data and train
    sections are its own: its optimizer, schedule, steps and best score start fresh."""
    state = checkpoint.load(path, mmap=True, require=checkpoint.FOR_INFERENCE)  # the optimizer's state unread
    saved = stored.validate(state, path).model
    if fixed := [k for k in asdict(saved) if k not in TUNABLE and getattr(saved, k) != getattr(cfg.model, k)]:
        differ = ", ".join(
            f"model.{k} {getattr(cfg.model, k)} (recipe) vs {getattr(saved, k)} (checkpoint)" for k in fixed
        )
        raise NmtError(
            f"{path}: --init takes the network from this checkpoint, and the recipe's differs: {differ}; "
            f"make the recipe's model section match (only {', '.join(TUNABLE)} may differ)"
        )
    ours, theirs = data.vocab, state["vocab"]
    for side, name in (("src", "source"), ("tgt", "target")):
        if ours[f"{side}_spm"] != theirs[f"{side}_spm"]:
            sizes = (ours[f"{side}_size"], theirs[f"{side}_size"])
            how = f"{sizes[0]} pieces, the checkpoint's {sizes[1]}" if sizes[0] != sizes[1] else "other pieces"
            flags = f"--spm-model {path}" if theirs["joint"] else f"--src-spm-model {path} --tgt-spm-model {path}"
            raise NmtError(
                f"{data_dir}: its {name} vocabulary is not the one {path} was trained with ({how}); "
                f"prepare the data with `nmt prep {flags} ...`"
            )
    for line in _changes(saved, cfg.model, "--init: model"):
        log.line(line)
    return state["model"]


def _changes(saved: Any, given: Any, where: str) -> list[str]:
    """One note per setting of a config section that a run changes (``where``: the flag
    and section), so that a change is never silent."""
    lines = []
    for key, before in asdict(saved).items():
        if key == "precision":  # its own line: run._choose_precision
            continue
        if (after := getattr(given, key)) != before:
            lines.append(f"note: {where}.{key} {before} -> {after} (checkpoint's value -> this run's)")
            if key == "valid_metric":
                lines[-1] += "; the best score and the validations without improvement count again from here"
    return lines


def restore(run: Run, resumed: Resumed) -> None:
    """The checkpoint's model, optimizer, schedule, scaler and progress. Each rank takes
    back its own generator state; a run resumed on another number of ranks resumes its
    batches exactly, but not its dropout masks."""
    state, ranks = resumed.state, run.ranks
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.schedule.load_state_dict(state["schedule"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])  # a disabled scaler ignores it
    if run.ema and state.get("ema"):  # else train.ema is new: its average starts from these weights
        run.ema.load_state_dict(state["ema"], resumed.path)
    progress = {**state["progress"], "stop_reason": ""}
    if "best_bleu" in progress:  # written before train.valid_metric: the best was BLEU's
        progress["best_score"] = progress.pop("best_bleu") if progress["best_step"] else None
    run.progress = Progress(**progress)
    if state["config"]["train"].get("valid_metric", "bleu") != run.cfg.train.valid_metric:
        run.progress.best_score = None  # another metric's best: the new one's starts at the next validation
        run.schedule.best, run.schedule.bad = -math.inf, 0
    states = state.get("rng_ranks") or [state["rng"]]
    if len(states) != ranks.world:
        run.log.line(
            f"warning: {resumed.path} was written by a run of {len(states)} rank(s), this one has {ranks.world}: "
            "the batches resume exactly, the dropout masks do not"
        )
    if ranks.rank < len(states):
        torch.set_rng_state(states[ranks.rank]["torch"].cpu())
        if run.device.type == "cuda" and states[ranks.rank]["cuda"]:
            torch.cuda.set_rng_state(states[ranks.rank]["cuda"][0].cpu(), run.device)


def save(run: Run, best: bool) -> None:
    """Write a step checkpoint (and best.pt): rank 0 writes, every rank gives its RNG state."""
    cuda = [torch.cuda.get_rng_state(run.device)] if run.device.type == "cuda" else []
    rng = distributed.gather({"torch": torch.get_rng_state(), "cuda": cuda})
    if not run.ranks.main:
        return
    payload = {
        "config": to_dict(run.cfg),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "scaler": run.scaler.state_dict() or None,  # a disabled scaler's is empty
        "rng": rng[0],
        "rng_ranks": rng,  # one state per rank: each resumes its own dropout stream
        "progress": asdict(run.progress),
        "vocab": run.data.vocab,
        "data": {"fingerprint": run.data.manifest["fingerprint"]},
    }
    path = checkpoint.step_path(run.out, run.progress.step)
    if run.ema:  # the step checkpoint goes on from the model's weights; best.pt holds the average
        checkpoint.save(path, {**payload, "ema": run.ema.state_dict()})
        if best:
            checkpoint.save(run.out / "best.pt", {**payload, "model": run.ema.weights(run.model)})
    else:
        checkpoint.save(path, payload, *([run.out / "best.pt"] if best else []))
    checkpoint.prune(run.out, run.cfg.train.keep_last)
