"""``train.valid_metric``: the metric that decides best.pt, patience and the plateau
schedule, on scripted validation scores (the loop's validation replaced)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from conftest import TINY_RECIPE

from nmt_cli import checkpoint
from nmt_cli.config import apply_overrides, load_recipe
from nmt_cli.train import loop, metrics
from nmt_cli.train.loop import train

# validations at steps 2, 4, 6, 8; each metric has its best at another step
SCRIPT = {
    "bleu": [5.0, 9.0, 7.0, 6.0],
    "chrf": [30.0, 31.0, 40.0, 35.0],
    "loss": [3.0, 2.9, 2.95, 2.5],
    "ppl": [20.0, 30.0, 25.0, 28.0],
}
# metric: (the step of its best, the plateau schedule's lr factor after its bad validations)
EXPECTED = {"bleu": (4, 0.25), "chrf": (6, 0.5), "loss": (8, 0.5), "ppl": (2, 0.125)}


def lines_display() -> SimpleNamespace:
    """A display for train() that keeps its lines (``.lines``)."""
    display = SimpleNamespace(lines=[], status=lambda text: None)
    display.line = display.lines.append
    return display


def scripted(monkeypatch, start: int = 0) -> None:
    """The loop's validations return the SCRIPT's scores, one validation after another."""
    calls = iter(range(start, len(SCRIPT["bleu"])))

    def validate(run):
        i = next(calls)
        return {**{name: values[i] for name, values in SCRIPT.items()}, "hypotheses": ["x"]}

    monkeypatch.setattr(loop, "validate", validate)


def run(prepped, out, *assignments, resume=False, display=None):
    cfg = apply_overrides(
        load_recipe(TINY_RECIPE),
        ["train.valid_every=2", "train.max_steps=8", "train.plateau_patience=1", "train.patience=0", *assignments],
    )
    return train(cfg, prepped, out, resume=resume, device="cpu", display=display)


@pytest.mark.parametrize("metric", sorted(SCRIPT))
def test_each_metric_picks_its_best_checkpoint_and_drives_the_plateau_schedule(monkeypatch, tmp_path, prepped, metric):
    scripted(monkeypatch)
    progress = run(prepped, tmp_path / "m", f"train.valid_metric={metric}")
    best_step, scale = EXPECTED[metric]
    best = checkpoint.load(tmp_path / "m" / "best.pt")
    assert best["progress"]["step"] == progress.best_step == best_step
    assert progress.best_score == SCRIPT[metric][best_step // 2 - 1]
    assert checkpoint.load(tmp_path / "m" / "ckpt-0000008.pt")["schedule"]["scale"] == scale
    valid = metrics.events(tmp_path / "m", "valid")
    assert {e["metric"] for e in valid} == {metric}
    assert metrics.best_validation(tmp_path / "m")["step"] == best_step


def test_patience_counts_validations_without_improvement_of_the_metric(monkeypatch, tmp_path, prepped):
    scripted(monkeypatch)
    display = lines_display()
    progress = run(prepped, tmp_path / "m", "train.valid_metric=ppl", "train.patience=2", display=display)
    assert progress.step == 6 and progress.stop_reason == "patience 2: no ppl improvement in 2 validations"
    assert "best ppl 20.00 at step 2" in display.lines[-1]


def test_resuming_with_another_metric_says_so_and_starts_its_best_again(monkeypatch, tmp_path, prepped):
    scripted(monkeypatch)
    run(prepped, tmp_path / "m", "train.max_steps=4")  # bleu: the best is step 4's 9.0
    scripted(monkeypatch, start=2)
    display = lines_display()
    progress = run(prepped, tmp_path / "m", "train.valid_metric=loss", resume=True, display=display)
    assert any("train.valid_metric bleu -> loss" in line for line in display.lines), display.lines
    assert (progress.best_step, progress.best_score) == (8, 2.5)  # step 6 was the first best of the loss
    records = [json.loads(line) for line in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()]
    assert [(e["step"], e["metric"], e["best"]) for e in records if e["event"] == "valid"] == [
        (2, "bleu", 5.0),
        (4, "bleu", 9.0),
        (6, "loss", 2.95),
        (8, "loss", 2.5),
    ]
