"""`make demo`'s stages (prep -> train -> translate -> score -> report) on a generated
slice with the tiny recipe, so a broken link between stages fails CI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import make_pairs, write_split

ROOT = Path(__file__).resolve().parent.parent


needs_make = pytest.mark.skipif(
    shutil.which("make") is None or not (ROOT / ".venv" / ".installed").exists(),
    reason="needs make and the environment `make test` installs (.venv)",
)


def write_slice(tmp_path: Path) -> Path:
    """A generated stand-in for Multi30k: train/val/test_2016_flickr.{de,en}."""
    data = tmp_path / "slice"
    for name, n, seed in (("train", 300, 1), ("val", 30, 2), ("test_2016_flickr", 20, 3)):
        write_split(data, name, make_pairs(n, seed))
    return data


@needs_make
def test_make_demo_runs_every_stage_then_skips_what_is_done(tmp_path):
    data = write_slice(tmp_path)
    args = [
        "make",
        "-C",
        str(ROOT),
        "demo",
        f"WORK={tmp_path / 'work'}",
        f"DATA_DIR={data}",
        "PREP_RECIPE=recipes/tiny.yaml",
        "DEMO_RECIPE=recipes/tiny.yaml",
        "DEMO_TIME=60s",
    ]
    first = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    model = tmp_path / "work" / "demo-de-en"
    hyps = (model / "test.hyp.en").read_text(encoding="utf-8").splitlines()
    assert len(hyps) == 20
    assert "BLEU signature" in (model / "test.score.txt").read_text(encoding="utf-8")
    assert "five examples" in first.stderr and "best validation BLEU" in first.stderr
    second = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0
    assert "nmt train" not in second.stdout and "nmt translate" not in second.stdout  # nothing redone


@needs_make
def test_make_multi30k_trains_translates_greedy_and_beam_and_scores_both(tmp_path):
    """The full-run target's stages for en-de (the pair's languages reach prep and
    translate), with the tiny recipe in place of the pair's."""
    data = write_slice(tmp_path)
    args = [
        "make",
        "-C",
        str(ROOT),
        "multi30k",
        "PAIR=en-de",
        f"WORK={tmp_path / 'work'}",
        f"DATA_DIR={data}",
        "PREP_RECIPE=recipes/tiny.yaml",
        "RECIPE=recipes/tiny.yaml",
        "TRAIN_ARGS=--set train.max_steps=30",
    ]
    first = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "work" / "multi30k-en-de"
    manifest = (tmp_path / "work" / "prep-en-de" / "manifest.json").read_text(encoding="utf-8")
    assert '"src_lang": "en"' in manifest and '"tgt_lang": "de"' in manifest
    for beam in (1, 5):
        assert len((run / f"test.beam{beam}.txt").read_text(encoding="utf-8").splitlines()) == 20
    scores = (run / "test.scores.txt").read_text(encoding="utf-8")
    assert "test.beam1.txt" in scores and "test.beam5.txt" in scores and "BLEU signature" in scores
    assert "multi30k-en-de: validation:" in first.stderr
    second = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0
    assert "nmt train" not in second.stdout and "nmt translate" not in second.stdout  # nothing redone
