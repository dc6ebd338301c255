"""Reading ``metrics.jsonl``: the best validation of a training run; cutting it back on resume.

A validation event names the metric that decides the run's best (``"metric"``:
``train.valid_metric``); BLEU and chrF are better higher, loss and perplexity lower.

``python -m nmt_cli.train.metrics MODEL_DIR`` prints it on stderr (used by ``make demo``).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from nmt_cli import writing
from nmt_cli.errors import NmtError, warn


def read(run: Path | str) -> list[dict[str, Any]]:
    """Every event of a model directory's ``metrics.jsonl`` (or of that file itself; of a
    checkpoint's directory), in order; a one-line error for a missing file or a line that
    is not a JSON object."""
    run = Path(run)
    run = run.parent if run.suffix == ".pt" else run  # a checkpoint: the run it belongs to
    path = run / "metrics.jsonl" if run.is_dir() or not run.suffix else run
    try:
        data = path.read_bytes()
    except OSError:
        raise NmtError(f"{run}: no training metrics (no metrics.jsonl: has `nmt train` run here?)") from None
    return [record for _, record in _records(data, path)]


def _records(data: bytes, path: Path) -> list[tuple[bytes, dict[str, Any]]]:
    """(line, record) for each line of ``data``. A last line that does not parse was cut
    short (a killed writer, a hand edit): skipped with a warning; any other bad line is a
    one-line error naming it."""
    lines = [(number, line) for number, line in enumerate(data.split(b"\n"), 1) if line.strip()]
    records = []
    for number, line in lines:
        last = number == lines[-1][0]
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            problem = "invalid UTF-8" if isinstance(e, UnicodeDecodeError) else "not a JSON line"
            if not last:
                raise NmtError(f"{path}:{number}: {problem}") from None
            warn(f"{path}:{number}: {problem} (cut short?); skipped")
            continue
        if not isinstance(record, dict):
            raise NmtError(f"{path}:{number}: not a JSON object")
        records.append((line, record))
    return records


def cut_back(path: Path, step: int) -> None:
    """Keep the records of ``path`` up to ``step``, the checkpoint a run resumes from: what
    a killed run logged after it is logged again by the resumed run (written atomically)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    kept = b"".join(
        line + b"\n"
        for line, record in _records(data, path)
        if not isinstance(record.get("step"), int) or record["step"] <= step
    )
    if kept != data:
        with writing.atomic_file(path, "wb") as f:
            f.write(kept)


LOWER_IS_BETTER = ("loss", "ppl")
METRIC_NAMES = {"bleu": "BLEU", "chrf": "chrF", "loss": "loss", "ppl": "ppl"}


def signed(metric: str, value: float) -> float:
    """A validation score of ``metric`` turned higher-is-better: the value, or its negation."""
    return -value if metric in LOWER_IS_BETTER else value


def events(run: Path | str, kind: str) -> list[dict[str, Any]]:
    """The ``kind`` events ("train" or "valid") of :func:`read`."""
    return [e for e in read(run) if e.get("event") == kind]


def best_validation(model_dir: Path | str) -> dict[str, Any]:
    valid = events(model_dir, "valid")
    if not valid:
        raise NmtError(f"{model_dir}: no validation yet")
    return best_of(valid)


def best_of(valid: list[dict[str, Any]]) -> dict[str, Any]:
    """The validation of ``best.pt`` among ``valid`` events: the best by the metric each
    names (BLEU in files written before events named one)."""
    return max(valid, key=lambda e: signed(metric_of(e), e[metric_of(e)]) if metric_of(e) in e else -math.inf)


def metric_of(event: dict[str, Any]) -> str:
    return event.get("metric", "bleu")


def main(argv: list[str]) -> int:
    try:
        best = best_validation(argv[0])
    except (NmtError, IndexError) as e:
        print(f"nmt: error: {e or 'usage: python -m nmt_cli.train.metrics MODEL_DIR'}", file=sys.stderr)
        return 2
    by = "" if metric_of(best) == "bleu" else f" (by {METRIC_NAMES[metric_of(best)]})"
    print(
        f"best validation{by} BLEU {best['bleu']:.2f} chrF {best['chrf']:.2f} at step {best['step']} "
        f"({best['elapsed'] / 60:.1f} min of training){_how(argv[0])}",
        file=sys.stderr,
    )
    return 0


def _how(run: str) -> str:
    """``; trained in fp32 (auto), 3,950 target tokens/s``: the precision the run used and its
    median speed, for the summary of ``make demo``."""
    records = read(run)
    start = [e for e in records if e.get("event") == "start"]
    # a hand-made file may lack the speeds
    speeds = sorted(e["tokens_per_s"] for e in records if e.get("event") == "train" and "tokens_per_s" in e)
    if not start or not speeds:
        return ""
    asked = " (auto)" if start[-1].get("precision_asked") == "auto" else ""
    return f"; trained in {start[-1]['precision']}{asked}, median {speeds[len(speeds) // 2]:,.0f} target tokens/s"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
