"""Checkpoints: one file that holds everything to resume training or to translate.

A checkpoint is a dict of tensors and plain data only (loaded with
``torch.load(weights_only=True)``, so loading never runs pickled code)::

    format        "nmt-checkpoint-1"
    config        the full resolved Config as plain data
    model         model.state_dict()
    optimizer     optimizer.state_dict()
    schedule      the learning-rate schedule's state (plain data)
    rng           torch's CPU (and CUDA) generator states (rank 0's)
    rng_ranks     every rank's generator states, for a run started by torchrun
    progress      step, epoch, batches done in the epoch, elapsed seconds, best score...
    vocab         languages, sizes, SentencePiece model bytes per side, special ids, the
                  target words of the training data (`tgt_words`, what search scores)
    data          the prep manifest's fingerprint

Files are written under a temporary name and renamed, so a crash mid-write never leaves a
truncated checkpoint under a real name. Step checkpoints are ``ckpt-STEP.pt``; the best by
validation BLEU is also copied to ``best.pt``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from nmt_cli import io as nio
from nmt_cli.errors import NmtError

FORMAT = "nmt-checkpoint-1"
FOR_INFERENCE = ("config", "model", "vocab")  # what translating needs
_STEP_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


def save(path: Path, payload: dict[str, Any]) -> None:
    with nio.atomic_file(path, "wb") as f:
        torch.save({"format": FORMAT, **payload}, f)


def load(path: Path | str, device: str | torch.device = "cpu", mmap: bool = False,
         require: tuple[str, ...] = ()) -> dict[str, Any]:
    """A checkpoint's dict; a one-line error for a missing, foreign or truncated file,
    or one without the ``require``d entries.

    With ``mmap`` the tensors are mapped from the file rather than read: a translator
    touches only the model's weights, never the optimizer's state (CPU only).
    """
    path = Path(path)
    if path.is_dir():
        raise NmtError(f"{path}: is a directory; give a checkpoint file such as {path}/best.pt")
    if not path.is_file():
        raise NmtError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - any unreadable file: torch raises many kinds
        reason = str(e).splitlines()[0][:120] if str(e) else e.__class__.__name__
        raise NmtError(f"{path}: not a readable nmt checkpoint (truncated or foreign file: {reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise NmtError(f"{path}: not an nmt checkpoint (no {FORMAT!r} marker)")
    missing = [key for key in require if key not in payload]
    if missing:
        raise NmtError(f"{path}: incomplete nmt checkpoint (no {', '.join(missing)})")
    return payload


def step_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of every step checkpoint in ``directory``, oldest first."""
    found = [(int(m[1]), p) for p in directory.glob("ckpt-*.pt") if (m := _STEP_NAME.match(p.name))]
    return sorted(found)


def latest(directory: Path) -> Path | None:
    found = step_checkpoints(directory)
    return found[-1][1] if found else None


def step_path(directory: Path, step: int) -> Path:
    return directory / f"ckpt-{step:07d}.pt"


def prune(directory: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` step checkpoints (at least one is kept)."""
    for _, path in step_checkpoints(directory)[: -max(1, keep_last)]:
        path.unlink(missing_ok=True)


class _SkipInit(TorchFunctionMode):
    """Builds modules without drawing their random initial weights, which the checkpoint's
    replace anyway: drawing them is a visible part of a short ``nmt translate``
    (docs/performance.md). Not the meta device: its context imports ``torch._dynamo``,
    which costs more start-up than it saves."""

    SKIP = {torch.Tensor.uniform_, torch.Tensor.normal_, nn.init.uniform_, nn.init.normal_, nn.init.kaiming_uniform_}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SKIP:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def load_model(payload: dict[str, Any], device: str | torch.device = "cpu"):
    """The Seq2Seq model a checkpoint holds, in eval mode, with its config."""
    from nmt_cli.config import Config, from_dict
    from nmt_cli.model.seq2seq import Seq2Seq

    cfg = from_dict(Config, payload["config"])
    vocab = payload["vocab"]
    with _SkipInit():  # every weight is replaced below
        model = Seq2Seq(cfg.model, vocab["src_size"], vocab["tgt_size"], vocab.get("tgt_words"))
    model.load_state_dict(payload["model"], assign=True)  # take the (possibly mmapped) tensors, no copy
    if cfg.model.tie_output:  # assign=True set each name's tensor: tie the output layer again
        model.decoder.output.weight = model.decoder.embedding.weight
    return model.to(device).eval(), cfg
