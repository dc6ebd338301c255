"""Checkpoints written by older code load and translate as they did then
(``tests/fixtures/old_checkpoints/README.md``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nmt_cli.cli import app

FIXTURES = Path(__file__).parent / "fixtures" / "old_checkpoints"
MODELS = ["gru-bahdanau-target", "lstm-luong"]
RUNS = {
    "greedy.txt": ["translate", "{src}", "-m", "{model}", "--beam", "1", "--scores"],
    "beam5.tsv": ["translate", "{src}", "-m", "{model}", "--beam", "5", "--nbest", "2"],
    "forced.tsv": ["score", "--model", "{model}", "--src", "{src}", "-r", "{ref}"],
}


def _split(line: str) -> tuple[list[str], list[float]]:
    """A line's text fields, and its numbers (compared with a tolerance: another CPU's
    kernels may round the last digits differently)."""
    texts, numbers = [], []
    for field in line.split("\t"):
        try:
            numbers.append(float(field))
        except ValueError:
            texts.append(field)
    return texts, numbers


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("run", sorted(RUNS))
def test_old_checkpoint_gives_its_old_output(model, run):
    paths = {"src": FIXTURES / "test.de", "ref": FIXTURES / "test.en", "model": FIXTURES / f"{model}.pt"}
    argv = [word.format(**paths) for word in RUNS[run]]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    got = result.stdout.splitlines()
    expected = (FIXTURES / f"{model}.{run}").read_text(encoding="utf-8").splitlines()
    assert len(got) == len(expected)
    for new, old in zip(got, expected):
        (new_text, new_numbers), (old_text, old_numbers) = _split(new), _split(old)
        assert new_text == old_text
        assert new_numbers == pytest.approx(old_numbers, abs=2e-3)
