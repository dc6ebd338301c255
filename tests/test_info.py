"""`nmt info`: what checkpoints, model directories and prep directories hold."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from nmt_cli.cli import app
from nmt_cli.info import describe


def info(*args):
    return CliRunner().invoke(app, ["info", *map(str, args)])


def test_a_checkpoint_shows_its_step_vocabulary_config_and_data(trained, prepped):
    d = describe(trained / "best.pt")
    manifest = json.loads((prepped / "manifest.json").read_text())
    assert d["kind"] == "checkpoint" and d["resumable"] is True
    assert d["special_ids"] == {"pad": 0, "unk": 1, "sos": 2, "eos": 3}
    assert d["data_fingerprint"] == manifest["fingerprint"]
    assert d["config"]["data"] == manifest["options"]
    assert d["step"] >= 1 and d["parameters"] > 0 and d["vocab"]["src_size"] > 4
    assert 4 < d["vocab"]["target_words"] < d["vocab"]["tgt_size"]  # the joint vocabulary's target side


def test_a_model_directory_adds_its_checkpoints_and_best_validation(trained):
    d = describe(trained)
    assert d["directory"]["step_checkpoints"] and d["directory"]["validations"] >= 1
    best = d["directory"]["best_validation"]
    assert round(best["bleu"], 2) == d["best_valid_bleu"]


def test_a_prep_directory_shows_splits_vocabulary_and_options(prepped):
    d = describe(prepped)
    manifest = json.loads((prepped / "manifest.json").read_text())
    assert d["kind"] == "prep" and d["fingerprint"] == manifest["fingerprint"]
    assert set(d["splits"]) == set(manifest["splits"]) and d["options"] == manifest["options"]


def test_json_and_table_output(trained):
    result = info(trained / "best.pt", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["kind"] == "checkpoint"
    result = info(trained / "best.pt")
    assert result.exit_code == 0 and "special_ids.eos" in result.stdout and "config.model.cell" in result.stdout


def test_errors_are_one_line(tmp_path):
    (tmp_path / "note.txt").write_text("hello\n")
    for target, fragment in [
        (tmp_path / "missing.pt", "no such file"),
        (tmp_path, "neither a prep directory"),
        (tmp_path / "note.txt", "not a readable nmt checkpoint"),
    ]:
        result = info(target)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nmt: error:") and fragment in lines[0]


def test_a_model_directorys_metrics_cut_short_or_broken(trained, tmp_path):
    """A last line cut short (a killed run, a hand edit) is skipped with a warning; a bad
    line before it is a one-line error naming file and line."""
    model = tmp_path / "model"
    shutil.copytree(trained, model)
    path = model / "metrics.jsonl"
    good = path.read_bytes()
    path.write_bytes(good + b'{"event": "valid", "step": 40, "bl')
    result = info(model, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["directory"] == {**describe(trained)["directory"], "path": str(model)}
    last = len(good.splitlines()) + 1
    assert f"{path}:{last}: not a JSON line (cut short?); skipped" in result.stderr
    for bad, problem in [(b"\xff\n", "invalid UTF-8"), (b"[1]\n", "not a JSON object")]:
        path.write_bytes(bad + good)
        result = info(model)
        assert result.exit_code == 2 and result.stderr == f"nmt: error: {path}:1: {problem}\n"
