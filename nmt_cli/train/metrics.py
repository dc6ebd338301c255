"""Reading ``metrics.jsonl``: the best validation of a training run.

``python -m nmt_cli.train.metrics MODEL_DIR`` prints it on stderr (used by ``make demo``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from nmt_cli.errors import NmtError


def read(run: Path | str) -> list[dict[str, Any]]:
    """Every event of a model directory's ``metrics.jsonl`` (or of that file itself), in
    order; a one-line error for a missing file or a line that is not JSON."""
    run = Path(run)
    path = run / "metrics.jsonl" if run.is_dir() or not run.suffix else run
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        raise NmtError(f"{run}: no training metrics (no metrics.jsonl: has `nmt train` run here?)") from None
    records = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise NmtError(f"{path}:{number}: not a JSON line") from None
    return records


def events(run: Path | str, kind: str) -> list[dict[str, Any]]:
    """The ``kind`` events ("train" or "valid") of :func:`read`."""
    return [e for e in read(run) if e.get("event") == kind]


def best_validation(model_dir: Path | str) -> dict[str, Any]:
    valid = events(model_dir, "valid")
    if not valid:
        raise NmtError(f"{model_dir}: no validation yet")
    return max(valid, key=lambda e: e["bleu"])


def main(argv: list[str]) -> int:
    try:
        best = best_validation(argv[0])
    except (NmtError, IndexError) as e:
        print(f"nmt: error: {e or 'usage: python -m nmt_cli.train.metrics MODEL_DIR'}", file=sys.stderr)
        return 2
    print(f"best validation BLEU {best['bleu']:.2f} chrF {best['chrf']:.2f} at step {best['step']} "
          f"({best['elapsed'] / 60:.1f} min of training)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
