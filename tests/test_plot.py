"""`nmt plot`: training curves from metrics.jsonl."""

from __future__ import annotations

import json
import os
import sys
import warnings

import pytest
from typer.testing import CliRunner

from nmt_cli.cli import app


def plot(*args):
    return CliRunner().invoke(app, ["plot", *map(str, args)])


def test_plots_one_or_several_runs_into_a_png(tmp_path, trained):
    pytest.importorskip("matplotlib")
    out = tmp_path / "curves.png"
    result = plot(trained, trained / "best.pt", "-o", out)  # a checkpoint stands for its run
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG") and os.listdir(tmp_path) == ["curves.png"]


def test_a_directory_without_metrics_and_a_broken_line_are_one_line_errors(tmp_path):
    pytest.importorskip("matplotlib")
    result = plot(tmp_path, "-o", tmp_path / "c.png")
    assert result.exit_code == 2 and "no metrics.jsonl" in result.stderr
    (tmp_path / "metrics.jsonl").write_text(
        '{"event": "train", "step": 1, "loss": 2.0}\n{oops\n{"event": "train", "step": 2}\n'
    )
    result = plot(tmp_path, "-o", tmp_path / "c.png")
    assert result.exit_code == 2 and "metrics.jsonl:2: not a JSON line" in result.stderr
    assert not (tmp_path / "c.png").exists()


def test_a_last_line_cut_short_is_skipped_with_a_warning(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "metrics.jsonl").write_text('{"event": "train", "step": 1, "loss": 2.0}\n{"event": "train", "st')
    result = plot(tmp_path, "-o", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    assert "metrics.jsonl:2: not a JSON line (cut short?); skipped" in result.stderr
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")


def test_runs_deciding_by_loss_plot_it_with_their_best_marked(tmp_path):
    pytest.importorskip("matplotlib")
    lines = [{"event": "train", "step": s, "loss": 3.0 / s, "elapsed": s} for s in (1, 2, 3)] + [
        {
            "event": "valid",
            "step": s,
            "loss": loss,
            "ppl": 2.0,
            "bleu": 1.0,
            "chrf": 2.0,
            "metric": "loss",
            "elapsed": s,
        }
        for s, loss in ((2, 2.0), (3, 2.5))
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = plot(tmp_path, "-o", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")


def test_a_run_with_validations_alone_plots_without_a_warning(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "metrics.jsonl").write_text('{"event": "valid", "step": 1, "elapsed": 6.0, "ppl": 9.0, "bleu": 1.0}\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's legend without lines warned
        result = plot(tmp_path, "-o", tmp_path / "c.png")
    assert result.exit_code == 0, result.output


def test_without_matplotlib_it_is_a_one_line_error_naming_the_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: importing it fails
    result = plot(tmp_path, "-o", tmp_path / "c.png")
    assert result.exit_code == 2 and "nmt plot needs matplotlib" in result.stderr
