"""The README's "Python API" examples run as written, in a folder laid out as ``make demo``
leaves it: the demo's model and test text (a fixture model and generated text here), and
Multi30k's training and validation text at ``MULTI30K_DIR`` (generated text here)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from conftest import TINY_RECIPE, make_pairs, write_split

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "fixtures" / "old_checkpoints" / "gru-bahdanau-target.pt"


def python_examples() -> list[str]:
    """The ```python blocks of the README's "Python API" section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```$", section, flags=re.S | re.M)


def test_the_python_examples_run_as_written(tmp_path, monkeypatch, capsys):
    examples = python_examples()
    assert examples and sum(len(e.splitlines()) for e in examples) >= 10
    data = tmp_path / "multi30k"
    write_split(data, "train", make_pairs(1500, 1))  # enough text for the tiny recipe's 200 subwords
    write_split(data, "val", make_pairs(40, 2))
    test = Path(write_split(tmp_path / "work" / "prep-de-en", "test_2016_flickr", make_pairs(20, 3)))
    for lang in ("de", "en"):
        Path(f"{test}.{lang}").rename(f"{test}.{lang}.txt")  # as nmt prep writes a test split's text
    (tmp_path / "work" / "demo-de-en").mkdir()
    shutil.copy(MODEL, tmp_path / "work" / "demo-de-en" / "best.pt")
    (tmp_path / "recipes").mkdir()
    shutil.copy(TINY_RECIPE, tmp_path / "recipes" / "tiny.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MULTI30K_DIR", str(data))

    for number, example in enumerate(examples, 1):
        exec(compile(example, f"README.md (Python API, example {number})", "exec"), {"__name__": "__readme__"})

    printed = capsys.readouterr().out
    assert "signatures" in printed and "bleu" in printed
    assert (tmp_path / "work" / "api-tiny" / "best.pt").is_file()
