"""Checkpoint averaging: one model whose weights are the mean of several checkpoints'.

Late in training the optimizer's steps scatter the weights around a region of low loss;
the mean of the last few checkpoints θ̄ = (1/k) Σ_i θ_i lies nearer its centre than any
one of them and usually translates better (Vaswani et al. 2017 averaged their last 5 or
20 checkpoints; fairseq and OpenNMT-py ship the same tool). The checkpoints must come
from one model (same config and vocabulary) and, unless forced, from one run: those
written since one ``nmt train`` started (with its resumes), as the run id each one
carries says (checkpoints from before run ids: the same data and ``train.seed``).

The averaged checkpoint is for translation: it keeps the newest checkpoint's config,
vocabulary, data fingerprint and progress, adds the list of the files it averages, and
drops the optimizer, schedule and RNG states (there is no trajectory to resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nmt_cli import checkpoint
from nmt_cli.errors import NmtError

KEPT = ("config", "vocab", "data", "progress")  # what the averaged checkpoint takes from the newest


def write(inputs: list[Path], out: Path, last: int | None = None, force: bool = False) -> str:
    """Write the average of ``inputs`` (checkpoints oldest first, or one model directory,
    whose newest ``last`` step checkpoints are taken, all it holds unless given) to ``out``;
    returns the summary line."""
    if len(inputs) == 1 and inputs[0].is_dir():
        inputs = last_checkpoints(inputs[0], last)
    elif last is not None:
        raise NmtError("--last picks from a model directory; with checkpoint files, list the ones to average")
    check_output(out, inputs)
    checkpoint.save(out, average(inputs, force))
    return f"nmt average: wrote {out}, the mean of {', '.join(p.name for p in inputs)}"


def check_output(out: Path, inputs: list[Path]) -> None:
    """Refuse an ``out`` that would destroy what it is made from or what a run resumes from."""
    if str(out) == "-":  # Path("-") is a file named "-" in the working directory
        raise NmtError("-o -: a checkpoint is a file, not stdout")
    resolved = out.resolve()  # through symlinks and "..": the file that would be replaced
    if any(resolved == path.resolve() for path in inputs):
        raise NmtError(f"-o {out}: one of the checkpoints being averaged")
    # replacing one with weights alone would leave --resume of that run nothing to resume from
    if any(resolved == path.resolve() for _, path in checkpoint.step_checkpoints(resolved.parent)):
        raise NmtError(f"-o {out}: a step checkpoint of a run; write the average elsewhere")


def last_checkpoints(directory: Path, count: int | None) -> list[Path]:
    """The newest ``count`` step checkpoints of a model directory (all: None), oldest first."""
    found = [path for _, path in checkpoint.step_checkpoints(directory)]
    if count is None:
        if not found:
            raise NmtError(f"{directory}: no step checkpoints (ckpt-*.pt) to average")
        return found
    if count < 1:
        raise NmtError(f"--last must be at least 1, got {count}")
    if len(found) < count:
        raise NmtError(
            f"{directory}: {len(found)} step checkpoint{'s' if len(found) != 1 else ''}, --last {count} asks "
            f"for more (train with --set train.keep_last={count} to keep them)"
        )
    return found[-count:]


def average(paths: list[Path], force: bool = False) -> dict[str, Any]:
    """The averaged checkpoint's payload; ``paths`` oldest first (the last one's config is kept).
    ``force`` lets checkpoints of different runs (of one model) be averaged."""
    if not paths:
        raise NmtError("no checkpoints to average")
    sums: dict[str, torch.Tensor] = {}
    newest: dict[str, Any] = {}
    for path in paths:
        payload = checkpoint.load(path, mmap=True, require=checkpoint.FOR_INFERENCE)
        if newest:
            _check_same_model(newest, payload, path, paths[0])
            if not force:
                _check_same_run(newest, payload, path, paths[0])
        for name, tensor in payload["model"].items():
            total = sums.get(name)
            sums[name] = tensor.double() if total is None else total.add_(tensor.double())  # fp64: no rounding drift
        newest = payload
    weights = _shared_like(newest["model"], {name: total / len(paths) for name, total in sums.items()})
    return {
        **{key: newest[key] for key in KEPT if key in newest},
        "model": weights,
        "averaged": [str(path) for path in paths],
    }


def _check_same_model(previous: dict[str, Any], payload: dict[str, Any], path: Path, first: Path) -> None:
    if (
        payload["config"]["model"] != previous["config"]["model"]
        or payload["vocab"]["tgt_size"] != previous["vocab"]["tgt_size"]
    ):
        raise NmtError(
            f"{path}: another model than {first} (model settings or vocabulary differ); average checkpoints of one run"
        )
    if {k: v.shape for k, v in payload["model"].items()} != {k: v.shape for k, v in previous["model"].items()}:
        raise NmtError(f"{path}: its weights have other names or shapes than {first}'s")


def _check_same_run(previous: dict[str, Any], payload: dict[str, Any], path: Path, first: Path) -> None:
    runs = [(p.get("progress") or {}).get("run") for p in (previous, payload)]
    if all(runs):
        differ = "run ids differ" if runs[0] != runs[1] else ""
    else:
        keys = [
            ((p.get("data") or {}).get("fingerprint"), p["config"].get("train", {}).get("seed"))
            for p in (previous, payload)
        ]
        differ = "prepared data or train.seed differ" if keys[0] != keys[1] else ""
    if differ:
        raise NmtError(
            f"{path}: from another training run than {first} ({differ}); averaging unrelated runs is "
            "meaningless: average checkpoints of one run, or add --force"
        )


def _shared_like(model: dict[str, torch.Tensor], means: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The means in each weight's own dtype, one tensor for names that share one in
    ``model`` (tied embeddings and output layer), so the file stores it once."""
    by_storage: dict[tuple, torch.Tensor] = {}
    out = {}
    for name, tensor in model.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tensor.shape)
        if key not in by_storage:
            by_storage[key] = means[name].to(tensor.dtype)
        out[name] = by_storage[key]
    return out
