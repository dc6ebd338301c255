"""metrics.jsonl reading: the best validation of a run."""

from __future__ import annotations

import json

import pytest

from nmt_cli.errors import NmtError
from nmt_cli.train import metrics


def test_best_validation_is_the_highest_bleu(tmp_path, capsys):
    rows = [{"event": "train", "step": 5, "loss": 3.0}, {"event": "valid", "step": 10, "bleu": 4.0, "chrf": 20.0, "elapsed": 60},
            {"event": "valid", "step": 20, "bleu": 7.5, "chrf": 30.0, "elapsed": 120},
            {"event": "valid", "step": 30, "bleu": 6.0, "chrf": 31.0, "elapsed": 180}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert metrics.best_validation(tmp_path)["step"] == 20
    assert metrics.main([str(tmp_path)]) == 0
    assert "BLEU 7.50 chrF 30.00 at step 20 (2.0 min" in capsys.readouterr().err


def test_missing_metrics_is_a_one_line_error(tmp_path):
    with pytest.raises(NmtError, match="no training metrics"):
        metrics.best_validation(tmp_path)
    assert metrics.main([str(tmp_path)]) == 2
