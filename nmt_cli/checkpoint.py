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

from nmt_cli import writing
from nmt_cli.errors import NmtError

FORMAT = "nmt-checkpoint-1"
FOR_INFERENCE = ("config", "model", "vocab")  # what translating needs
RESUME = ("optimizer", "schedule", "progress", "rng", "data")  # what resuming needs beyond FOR_INFERENCE
_STEP_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


def save(path: Path, payload: dict[str, Any], *copies: Path) -> None:
    """Write ``payload`` with its digest to ``path`` and to each of ``copies`` (digested once)."""
    payload = {"format": FORMAT, **{key: value for key, value in payload.items() if key != "digest"}}
    payload["digest"] = {"sha256": {key: digest(value) for key, value in payload.items()}}
    for target in (path, *copies):
        with writing.atomic_file(target, "wb") as f:
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


def subword_model(path: Path | str, side: str) -> bytes:
    """The SentencePiece model a checkpoint holds for ``side`` (``src``, ``tgt``, or
    ``joint``: one model for both), so that new data can be prepared with the vocabulary
    of a model that will go on training on it (``nmt train --init``)."""
    vocab = load(path, mmap=True, require=("vocab",))["vocab"]
    models = {key: vocab.get(f"{key}_spm") for key in ("src", "tgt")} if isinstance(vocab, dict) else {}
    if not all(isinstance(model, bytes) for model in models.values()) or not models:
        raise NmtError(f"{path}: malformed nmt checkpoint (its vocabulary holds no SentencePiece models)")
    if side == "joint" and models["src"] != models["tgt"]:
        raise NmtError(
            f"{path}: holds separate source and target SentencePiece models, not a joint one; "
            f"give --src-spm-model {path} --tgt-spm-model {path}"
        )
    return models["src" if side == "joint" else side]


def check_subwords(processor, size: int, path: Path | str, side: str) -> None:
    """A SentencePiece model that makes no id beyond the model's vocabulary."""
    if processor.get_piece_size() > size:
        raise NmtError(
            f"{path}: malformed nmt checkpoint (its {side} SentencePiece model has "
            f"{processor.get_piece_size()} pieces, the model's vocabulary {size})"
        )
