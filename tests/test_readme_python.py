"""The README's "Python API" examples run as written, in a folder laid out as ``make demo``
leaves it: Multi30k at ``MULTI30K_DIR``, the demo's test text (its first lines here) and
model (a fixture model here)."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import pytest
from conftest import TINY_RECIPE

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "fixtures" / "old_checkpoints" / "gru-bahdanau-target.pt"


def python_examples() -> list[str]:
    """The ```python blocks of the README's "Python API" section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```$", section, flags=re.S | re.M)


@pytest.mark.multi30k
def test_the_python_examples_run_as_written(tmp_path, monkeypatch, capsys, multi30k_dir):
    examples = python_examples()
    assert examples and sum(len(e.splitlines()) for e in examples) >= 10
    (tmp_path / "work" / "prep-de-en").mkdir(parents=True)
    for lang in ("de", "en"):  # the test split's text, as nmt prep writes it
        lines = gzip.open(multi30k_dir / f"test_2016_flickr.{lang}.gz", "rt", encoding="utf-8").readlines()[:50]
        (tmp_path / "work" / "prep-de-en" / f"test_2016_flickr.{lang}.txt").write_text("".join(lines), encoding="utf-8")
    (tmp_path / "work" / "demo-de-en").mkdir()
    shutil.copy(MODEL, tmp_path / "work" / "demo-de-en" / "best.pt")
    (tmp_path / "recipes").mkdir()
    shutil.copy(TINY_RECIPE, tmp_path / "recipes" / "tiny.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MULTI30K_DIR", str(multi30k_dir))

    for number, example in enumerate(examples, 1):
        exec(compile(example, f"README.md (Python API, example {number})", "exec"), {"__name__": "__readme__"})

    printed = capsys.readouterr().out
    assert "signatures" in printed and "bleu" in printed
    assert (tmp_path / "work" / "api-tiny" / "best.pt").is_file()
