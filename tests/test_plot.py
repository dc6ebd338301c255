"""`nmt plot`: training curves from metrics.jsonl."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from nmt_cli.cli import app


def plot(*args):
    return CliRunner().invoke(app, ["plot", *map(str, args)])


def test_plots_one_or_several_runs_into_a_png(tmp_path, trained):
    pytest.importorskip("matplotlib")
    out = tmp_path / "curves.png"
    result = plot(trained, trained, "-o", out)
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
