"""`nmt info`: what a checkpoint, a model directory or a prep directory holds.

Everything is read from what the stages wrote (checkpoint dicts, ``metrics.jsonl``,
``manifest.json``); nothing is recomputed. :func:`describe` returns plain data, which
:func:`show` prints as a rich table or as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from nmt_cli.errors import NmtError


def show(path: Path | str, as_json: bool = False, out: TextIO | None = None) -> None:
    """Write what ``path`` holds to ``out`` (stdout): a table, or JSON."""
    described = describe(path)
    if as_json:
        (out or sys.stdout).write(json.dumps(described, indent=2, ensure_ascii=False) + "\n")
    else:
        from rich.console import Console

        Console(file=out).print(table(described))


def describe(path: Path | str) -> dict[str, Any]:
    """What a checkpoint, a model directory or a prep directory holds, as plain data."""
    path = Path(path)
    if not path.exists():
        raise NmtError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "manifest.json").is_file():
            return _prep(path)
        from nmt_cli import checkpoint

        best = path / "best.pt"
        newest = best if best.is_file() else checkpoint.latest(path)
        if newest is None:
            raise NmtError(
                f"{path}: neither a prep directory (manifest.json) nor a model directory (best.pt, ckpt-*.pt)"
            )
        return {**_checkpoint(newest), "directory": _model_dir(path)}
    return _checkpoint(path)


def _checkpoint(path: Path) -> dict[str, Any]:
    from nmt_cli import checkpoint

    payload = checkpoint.load(path, mmap=True, require=checkpoint.FOR_INFERENCE, check=False)  # shown below
    progress, vocab, config = payload.get("progress") or {}, payload["vocab"], payload["config"]
    metric = config.get("train", {}).get("valid_metric", "bleu")
    best = progress.get("best_score", progress.get("best_bleu"))  # best_bleu: before train.valid_metric
    unique = {t.untyped_storage().data_ptr(): t.numel() for t in payload["model"].values()}  # tied weights once
    return {
        "kind": "checkpoint",
        "path": str(path),
        "size_mb": round(path.stat().st_size / 2**20, 1),
        "languages": f"{vocab['src_lang']} -> {vocab['tgt_lang']}",
        "parameters": sum(unique.values()),
        "step": progress.get("step"),
        "epoch": progress.get("epoch"),
        "minutes_trained": round(progress.get("elapsed", 0.0) / 60, 1),
        f"best_valid_{metric}": None if best is None else round(best, 2),
        "best_step": progress.get("best_step"),
        "init": progress.get("init") or None,  # the checkpoint whose weights the run started from
        "vocab": {
            "joint": vocab["joint"],
            "src_size": vocab["src_size"],
            "tgt_size": vocab["tgt_size"],
            "target_words": len(vocab["tgt_words"]) if "tgt_words" in vocab else None,
        },  # what search scores
        "special_ids": vocab["special_ids"],
        "data_fingerprint": (payload.get("data") or {}).get("fingerprint"),
        "resumable": all(key in payload for key in ("optimizer", "schedule", "rng")),
        "digest": _digest(payload, path),
        "config": config,
    }


def _digest(payload: dict[str, Any], path: Path) -> dict[str, Any] | str:
    """The model's sha256 and whether every entry still matches its digest."""
    from nmt_cli import checkpoint

    changed = checkpoint.damaged(payload, path)
    if changed is None:
        return "none: written before nmt checkpoints carried digests (nothing to check)"
    return {
        "model_sha256": str(payload["digest"]["sha256"].get("model")),
        "holds": not changed,
        **({"damaged": changed} if changed else {}),
    }


def _model_dir(path: Path) -> dict[str, Any]:
    from nmt_cli import checkpoint
    from nmt_cli.train import metrics

    out: dict[str, Any] = {
        "path": str(path),
        "step_checkpoints": [p.name for _, p in checkpoint.step_checkpoints(path)],
    }
    if (path / "metrics.jsonl").is_file():
        valid = metrics.events(path, "valid")
        out["validations"] = len(valid)
        if valid:
            best = metrics.best_validation(path)
            keys = ("step", "metric", "bleu", "chrf", "loss", "ppl", "elapsed")
            out["best_validation"] = {k: best[k] for k in keys if k in best}
    return out


def _prep(path: Path) -> dict[str, Any]:
    from nmt_cli.prep import manifest

    m = manifest.load(path)
    return {
        "kind": "prep",
        "path": str(path),
        "languages": f"{m['src_lang']} -> {m['tgt_lang']}",
        "created": m.get("created"),
        "tool": f"{m.get('tool')} {m.get('version')}",
        "fingerprint": m["fingerprint"],
        "splits": {
            name: {
                "role": s.get("role"),
                "pairs": s.get("pairs_kept"),
                "drops": {k: v for k, v in s.get("drops", {}).items() if v},
            }
            for name, s in m["splits"].items()
        },
        "vocab": {"joint": m["vocab"]["joint"], "reused": m["vocab"]["reused"], "size": m["vocab"]["size"]},
        "special_ids": m["special_ids"],
        "options": m["options"],
        "inputs": [{"path": i["path"], "lines": i["lines"], "sha256": i["sha256"][:16]} for i in m["inputs"]],
    }


def table(info: dict[str, Any]):
    """A two-column rich Table; nested sections are flattened to dotted keys."""
    from rich.table import Table

    out = Table(title=f"{info['kind']}: {info['path']}", show_header=False, title_justify="left")
    out.add_column("key", style="bold", no_wrap=True)
    out.add_column("value", overflow="fold")
    for key, value in _flatten(info):
        if key not in ("kind", "path"):
            out.add_row(key, value)
    return out


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict) and value:
        return [row for k, v in value.items() for row in _flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [row for i, v in enumerate(value) for row in _flatten(v, f"{prefix}[{i}]")]
    return [(prefix, json.dumps(value) if isinstance(value, (list, dict)) else str(value))]
