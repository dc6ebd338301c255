"""metrics.jsonl reading: the best validation of a run."""

from __future__ import annotations

import json

import pytest

from nmt_cli.errors import NmtError
from nmt_cli.train import metrics


def test_best_validation_is_the_highest_bleu(tmp_path, capsys):
    rows = [
        {"event": "train", "step": 5, "loss": 3.0},
        {"event": "valid", "step": 10, "bleu": 4.0, "chrf": 20.0, "elapsed": 60},
        {"event": "valid", "step": 20, "bleu": 7.5, "chrf": 30.0, "elapsed": 120},
        {"event": "valid", "step": 30, "bleu": 6.0, "chrf": 31.0, "elapsed": 180},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert metrics.best_validation(tmp_path)["step"] == 20
    assert metrics.main([str(tmp_path)]) == 0
    assert "BLEU 7.50 chrF 30.00 at step 20 (2.0 min" in capsys.readouterr().err


def test_missing_metrics_is_a_one_line_error(tmp_path):
    with pytest.raises(NmtError, match="no training metrics"):
        metrics.best_validation(tmp_path)
    assert metrics.main([str(tmp_path)]) == 2


ROWS = [
    {"event": "train", "step": 5, "loss": 3.0},
    {"event": "valid", "step": 10, "bleu": 4.0, "chrf": 20.0, "elapsed": 60},
    {"event": "train", "step": 15, "loss": 2.0},
]


def write(tmp_path, tail: bytes = b"", rows=ROWS):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in rows) + tail)
    return path


def test_a_last_line_cut_short_is_skipped_with_a_warning(tmp_path, capsys):
    write(tmp_path, b'{"event": "valid", "step": 20, "bl')
    assert metrics.read(tmp_path) == ROWS
    assert f"{tmp_path / 'metrics.jsonl'}:4: not a JSON line (cut short?); skipped" in capsys.readouterr().err
    write(tmp_path, '{"event": "valid", "step": 20, "note": "é'.encode()[:-1])  # cut inside a character
    assert metrics.read(tmp_path) == ROWS


@pytest.mark.parametrize(
    "bad, problem",
    [(b"\xff\xfe{}", "invalid UTF-8"), (b"[1, 2]", "not a JSON object"), (b'{"event": "tr', "not a JSON line")],
)
def test_a_bad_line_before_the_last_is_a_one_line_error_naming_it(tmp_path, bad, problem):
    write(tmp_path, bad + b"\n" + json.dumps(ROWS[0]).encode() + b"\n")
    with pytest.raises(NmtError, match=rf"metrics.jsonl:4: {problem}$"):
        metrics.read(tmp_path)


def test_a_last_line_that_is_json_but_no_object_is_an_error(tmp_path):
    write(tmp_path, b"[1, 2]\n")
    with pytest.raises(NmtError, match="metrics.jsonl:4: not a JSON object"):
        metrics.read(tmp_path)


def test_cut_back_keeps_the_records_up_to_a_step(tmp_path):
    path = write(tmp_path, b'{"event": "train", "st')
    before = path.read_bytes()
    metrics.cut_back(path, 10)
    assert metrics.read(tmp_path) == ROWS[:2]
    assert path.read_bytes() == before[: before.index(b'{"event": "train", "step": 15')]  # the kept lines as they were
    assert not [p for p in tmp_path.iterdir() if p.name != "metrics.jsonl"]
    metrics.cut_back(tmp_path / "none.jsonl", 10)  # no metrics yet: nothing to do
