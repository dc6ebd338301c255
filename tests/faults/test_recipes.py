"""Hostile recipes, as a user meets them: a YAML alias bomb ("billion laughs") and values
megabytes long. Each is a short one-line error, exit code 2, at once."""

from __future__ import annotations

import resource
import time

from conftest import TINY_RECIPE, assert_one_line_error, run_train
from typer.testing import CliRunner

from nmt_cli.cli import app
from nmt_cli.config import load_recipe

# 335 bytes of YAML that stand for 9^9 (387 million) strings once expanded
BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
model: {emb_size: *h}
"""


def test_an_alias_bomb_is_refused_at_once(tmp_path, prepped):
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(BOMB)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = run_train(prepped, tmp_path / "m", recipe=recipe)
    line = assert_one_line_error(result, f"{recipe}: its YAML aliases (*name) expand it past 10,000 values")
    assert time.perf_counter() - start < 5 and len(line) < 300
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: under 100 MB more
    assert not (tmp_path / "m").exists()


def test_an_alias_bomb_in_a_set_value_is_refused(tmp_path, prepped):
    result = run_train(prepped, tmp_path / "m", "--set", "model.emb_size=" + _flow_bomb())
    assert_one_line_error(result, "--set emb_size: its YAML aliases")


def _flow_bomb() -> str:
    """The bomb as one flow sequence, as a --set value can carry it."""
    levels = ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for name, prev in zip("bcdefgh", "abcdefg"):
        levels.append(f"&{name} [{','.join(['*' + prev] * 9)}]")
    return "[" + ", ".join(levels) + "]"


def test_aliases_within_bounds_still_work(tmp_path):
    recipe = tmp_path / "aliases.yaml"
    recipe.write_text(f"base: {TINY_RECIPE}\nmodel: {{emb_size: &size 48, output_size: *size}}\n")
    cfg = load_recipe(recipe)
    assert cfg.model.emb_size == cfg.model.output_size == 48


def test_a_huge_value_is_shown_cut_short(tmp_path):
    recipe = tmp_path / "long.yaml"
    recipe.write_text(f'base: {TINY_RECIPE}\nmodel: {{emb_size: "{"x" * 1_000_000}"}}\n')
    result = CliRunner().invoke(app, ["train", str(recipe), "--data", str(tmp_path), "--out", str(tmp_path / "m")])
    line = assert_one_line_error(result, "model.emb_size must be an integer", "1,000,002 characters")
    assert len(line) < 400
