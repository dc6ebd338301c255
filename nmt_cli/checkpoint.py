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
    ema           with ``train.ema``, the moving average of the weights (step checkpoints;
                  ``best.pt`` holds it as its ``model``)
    digest        sha256 of each of the entries above, checked when the file is loaded

Files are written under a temporary name and renamed, so a crash mid-write never leaves a
truncated checkpoint under a real name. Step checkpoints are ``ckpt-STEP.pt``; the best by
``train.valid_metric`` is also copied to ``best.pt``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from nmt_cli import io as nio
from nmt_cli.errors import NmtError, shown

FORMAT = "nmt-checkpoint-1"
FOR_INFERENCE = ("config", "model", "vocab")  # what translating needs
_STEP_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


def save(path: Path, payload: dict[str, Any], *copies: Path) -> None:
    """Write ``payload`` with its digest to ``path`` and to each of ``copies`` (digested once)."""
    payload = {"format": FORMAT, **{key: value for key, value in payload.items() if key != "digest"}}
    payload["digest"] = {"sha256": {key: digest(value) for key, value in payload.items()}}
    for target in (path, *copies):
        with nio.atomic_file(target, "wb") as f:
            torch.save(payload, f)


def digest(value: Any) -> str:
    """sha256 over an entry's tensors (dtype, shape, bytes) and plain data, in order: a
    changed byte anywhere changes it. Mapped tensors are hashed where they lie, uncopied."""
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()


def _feed(h, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, dict):
        h.update(b"D%d" % len(value))
        for key, item in value.items():
            _feed(h, key)
            _feed(h, item)
    elif isinstance(value, (list, tuple)) and not all(type(v) in (int, float, str, bool) for v in value):
        h.update(b"L%d" % len(value))
        for item in value:
            _feed(h, item)
    elif isinstance(value, (bytes, bytearray)):
        h.update(b"B%d:" % len(value))
        h.update(value)
    else:  # a scalar, or a list of them (tgt_words: thousands of ids) in one go
        h.update(f"{type(value).__name__}:{value!r};".encode())


def damaged(payload: dict[str, Any], path: Path | str, keys: tuple[str, ...] = ()) -> list[str] | None:
    """The entries among ``keys`` (all if none given) that do not match their digest;
    ``None`` for a checkpoint written before digests (nothing to check)."""
    sums = payload.get("digest")
    if sums is None:
        return None
    sums = sums.get("sha256") if isinstance(sums, dict) else None
    if not isinstance(sums, dict):
        raise NmtError(f"{path}: malformed nmt checkpoint (its digest is not a mapping of sha256 sums)")
    keys = keys or tuple(key for key in {**payload, **sums} if key != "digest")
    return [key for key in keys if key not in sums or key not in payload or digest(payload[key]) != sums[key]]


def load(
    path: Path | str,
    device: str | torch.device = "cpu",
    mmap: bool = False,
    require: tuple[str, ...] = (),
    check: bool = True,
) -> dict[str, Any]:
    """A checkpoint's dict; a one-line error for a missing, foreign, truncated or damaged
    file (``check``: the digests of the ``require``d entries, or of all, must hold), or
    one without the ``require``d entries.

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
    if check and (changed := damaged(payload, path, require)):
        raise NmtError(
            f"{path}: damaged checkpoint: {', '.join(changed)} changed since it was written (sha256 digest differs)"
        )
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


class _Shapes(TorchFunctionMode):
    """Builds modules on the meta device (shapes, no memory): what a config asks for can
    be compared with the weights a file holds before anything is allocated. Its own
    mode, not ``torch.device("meta")``, for the reason given at :class:`_SkipInit`.
    ``torch.tensor`` is left out: its data is in memory already, and the model reads it
    back (``output_vocab: target`` sorts the list of target words)."""

    FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.arange, torch.rand, torch.randn}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.FACTORIES:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


RESUME = ("optimizer", "schedule", "progress", "rng", "data")  # what resuming needs beyond FOR_INFERENCE
MAX_VOCAB = 1 << 24


def validate(payload: dict[str, Any], path: Path | str, resume: bool = False):
    """The checkpoint's Config, once its structure and sizes are checked: the config is
    one, the vocabulary's sizes and word ids agree, every weight has the shape the config
    asks for and is finite (and, to ``resume``, the training state is there). Nothing is
    built from the file before this holds; a one-line error names what does not."""
    from nmt_cli.config import Config, from_dict
    from nmt_cli.model.seq2seq import Seq2Seq

    def bad(what: str) -> NmtError:
        return NmtError(f"{path}: malformed nmt checkpoint ({what})")

    for key in FOR_INFERENCE + (RESUME if resume else ()):
        if key not in payload:
            if resume and "averaged" in payload:
                raise NmtError(
                    f"{path}: written by `nmt average`, for translating: it holds no training "
                    "state to resume from; resume from a step checkpoint (ckpt-*.pt)"
                )
            raise bad(f"no {key}")
        if not isinstance(payload[key], dict):
            raise bad(f"{key} is not a mapping")
    try:
        cfg = from_dict(Config, payload["config"])
        cfg.validate()
    except NmtError as e:
        raise bad(f"config: {e}") from None
    vocab, weights = payload["vocab"], payload["model"]
    for side in ("src", "tgt"):
        size = vocab.get(f"{side}_size")
        if type(size) is not int or not 4 < size <= MAX_VOCAB:
            raise bad(f"vocab.{side}_size is {shown(size)}, not a vocabulary size")
        if not isinstance(vocab.get(f"{side}_spm"), bytes):
            raise bad(f"vocab.{side}_spm is not a SentencePiece model")
    words = vocab.get("tgt_words")
    if words is not None and not (
        isinstance(words, list) and all(type(w) is int and 0 <= w < vocab["tgt_size"] for w in words)
    ):
        raise bad(f"vocab.tgt_words are not word ids below the target vocabulary's size {vocab['tgt_size']}")
    try:
        with _Shapes():
            expected = Seq2Seq(cfg.model, vocab["src_size"], vocab["tgt_size"], words).state_dict()
    except (ValueError, RuntimeError, TypeError) as e:
        raise bad(f"its config and vocabulary make no model: {shown(e)}") from None
    if set(weights) != set(expected):
        odd = sorted(set(weights) ^ set(expected))
        raise bad(f"weights {', '.join(map(str, odd[:3]))}{'...' if len(odd) > 3 else ''} are missing or foreign")
    for name, tensor in weights.items():
        if (
            not isinstance(tensor, torch.Tensor)
            or tensor.shape != expected[name].shape
            or not tensor.is_floating_point()
        ):
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else shown(tensor)
            raise bad(f"weight {name} is {shape}, the config makes it {tuple(expected[name].shape)}")
        if not torch.isfinite(tensor).all():
            raise bad(f"weight {name} holds NaN or infinite values")
    return cfg


def check_subwords(processor, size: int, path: Path | str, side: str) -> None:
    """A SentencePiece model that makes no id beyond the model's vocabulary."""
    if processor.get_piece_size() > size:
        raise NmtError(
            f"{path}: malformed nmt checkpoint (its {side} SentencePiece model has "
            f"{processor.get_piece_size()} pieces, the model's vocabulary {size})"
        )


def load_model(payload: dict[str, Any], device: str | torch.device = "cpu", path: Path | str = "checkpoint"):
    """The Seq2Seq model a checkpoint holds, in eval mode, with its config (checked first,
    :func:`validate`)."""
    from nmt_cli.model.seq2seq import Seq2Seq

    cfg = validate(payload, path)
    vocab = payload["vocab"]
    with _SkipInit():  # every weight is replaced below
        model = Seq2Seq(cfg.model, vocab["src_size"], vocab["tgt_size"], vocab.get("tgt_words"))
    model.load_state_dict(payload["model"], assign=True)  # take the (possibly mmapped) tensors, no copy
    if cfg.model.tie_output:  # assign=True set each name's tensor: tie the output layer again
        model.decoder.output.weight = model.decoder.embedding.weight
    return model.to(device).eval(), cfg
