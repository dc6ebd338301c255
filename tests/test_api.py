"""The Python API (``nmt_cli/api.py``): ``Translator.translate`` gives what ``nmt translate``
writes for the same lines and options; the stages run quietly and return what they made;
mistakes raise ``NmtError``; importing changes nothing in the process."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import TINY_RECIPE, VOCAB, make_pairs, write_lines
from typer.testing import CliRunner

from nmt_cli import NmtError, Translator, api
from nmt_cli.cli import app
from nmt_cli.config import load_recipe
from nmt_cli.errors import NmtWarning
from nmt_cli.score import Options

OLD = Path(__file__).resolve().parent / "fixtures" / "old_checkpoints"
MODELS = sorted(OLD.glob("*.pt"))


@pytest.fixture(scope="module")
def lines() -> list[str]:
    """The fixtures' test lines, an empty one among them."""
    text = (OLD / "test.de").read_text(encoding="utf-8").splitlines()
    return text[:6] + [""] + text[6:]


def cli(source: Path, model: Path, *flags: str) -> list[str]:
    result = CliRunner().invoke(app, ["translate", str(source), "-m", str(model), "-q", *flags])
    assert result.exit_code == 0, result.output
    return result.stdout.split("\n")[:-1]


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
@pytest.mark.parametrize("beam", [1, 5])
def test_translate_equals_the_command(tmp_path, model, beam, lines):
    source = write_lines(tmp_path / "in.de", lines)
    tr = Translator.load(model, beam=beam, device="cpu")
    assert tr.translate(lines) == cli(source, model, "--beam", str(beam))

    rows = cli(source, model, "--beam", str(beam), "--scores", "--alignments", str(tmp_path / "a.txt"))
    got = tr.translate(lines, scores=True, alignments=True)
    assert [f"{t.text}\t{t.logprob:.4f}" for t in got] == rows
    pharaoh = [" ".join(f"{i}-{j}" for i, j in t.alignment) for t in got]
    assert pharaoh == (tmp_path / "a.txt").read_text(encoding="utf-8").split("\n")[:-1]
    if beam > 1:
        tsv = cli(source, model, "--beam", str(beam), "--nbest", "3", "--scores")
        got = tr.translate(lines, nbest=3, scores=True)
        mine = [
            f"{index}\t{rank}\t{h.score:.4f}\t{h.logprob:.4f}\t{h.text}"
            for index, t in enumerate(got)
            for rank, h in enumerate(t.nbest, 1)
        ]
        assert mine == tsv
        assert all(t.text == t.nbest[0].text and t.nbest[0].nbest == [] for t in got)


def test_options_batches_and_chunks_as_the_command(tmp_path, lines):
    """Decode options given to load() act as the flags; more lines than a chunk keep their order."""
    model, many = MODELS[0], lines * 9
    source = write_lines(tmp_path / "in.de", many)
    tr = Translator.load(model, beam=2, batch_size=3, max_len_b=4, alpha=0.0)
    assert tr.decode.beam == 2 and 3 * 8 < len(many)
    assert tr.translate(many) == cli(
        source, model, "--beam", "2", "--batch-size", "3", "--max-len-b", "4", "--alpha", "0"
    )


def test_nothing_is_printed_and_warnings_are_python_warnings(capfd, lines):
    tr = Translator.load(MODELS[0], beam=1, device="cpu")
    long_line = " ".join(lines) * 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = tr.translate([lines[0], long_line])
    assert len(out) == 2
    assert [w.category for w in caught] == [NmtWarning] and "line:2:" in str(caught[0].message)
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("beam", [1, 5])
def test_ensembles_and_prefixes_equal_the_command(tmp_path, beam, lines):
    """Several checkpoints (an ensemble, weighted) and target prefixes, as the flags give them."""
    source = write_lines(tmp_path / "in.de", lines)
    prefixes = ["the", "", "a man"] + [""] * (len(lines) - 3)
    prefix_file = write_lines(tmp_path / "prefix.en", prefixes)
    tr = Translator.load(MODELS, beam=beam, device="cpu", weights=[2, 1])
    flags = ["-m", str(MODELS[1]), "--weights", "2,1", "--beam", str(beam), "--prefix", str(prefix_file)]
    got = tr.translate(lines, prefixes=prefixes)
    assert got == cli(source, MODELS[0], *flags)
    assert got[0].startswith("the") and got[2].startswith("a man")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: Translator.load(OLD / "missing.pt"), "missing.pt"),
        (lambda: Translator.load(MODELS[0], beam=0), "beam"),
        (lambda: Translator.load(MODELS[0], bem=3), "did you mean"),
        (lambda: Translator.load(MODELS, weights=[1.0]), "weights"),
        (lambda: Translator.load(MODELS[0], beam=2).translate(["a"], nbest=3), "nbest"),
        (lambda: Translator.load(MODELS[0]).translate("Ein Hund."), "list of lines"),
        (lambda: Translator.load(MODELS[0]).translate(["a", "b"], prefixes=["x"]), "prefixes"),
        (lambda: api.score(["a"], ["a", "b"]), "references"),
    ],
)
def test_mistakes_raise_nmt_error(call, message, capfd):
    with pytest.raises(NmtError, match=message):
        call()
    assert capfd.readouterr().out == ""


def test_stages_run_quietly_and_return_what_they_made(tmp_path, corpus, capfd):
    cfg = load_recipe(TINY_RECIPE)
    cfg.data.src_lang, cfg.data.tgt_lang = "de", "en"
    cfg.data.train, cfg.data.valid = str(corpus / "train"), str(corpus / "valid")
    cfg.data.vocab_size, cfg.train.max_steps = int(VOCAB), 4
    outcome = api.prep(cfg, tmp_path / "prep")
    assert not outcome.noop and outcome.manifest["splits"]["train"]["pairs_kept"] > 0
    assert api.prep(cfg.data, tmp_path / "prep").noop
    progress = api.train(cfg, tmp_path / "prep", tmp_path / "model", device="cpu")
    assert progress.step == 4 and (tmp_path / "model" / "best.pt").is_file()
    hyps = Translator.load(tmp_path / "model" / "best.pt", beam=1).translate([de for de, _ in make_pairs(3, 9)])
    refs = [en for _, en in make_pairs(3, 9)]
    scores = api.score(hyps, refs, Options(("bleu", "chrf", "ter")))
    assert set(scores.scores) == {"bleu", "chrf", "ter"} and "nrefs:1" in scores.signatures["bleu"]
    assert api.score(refs, [refs, refs]).scores["bleu"] == pytest.approx(100.0)
    assert capfd.readouterr() == ("", "")
    cfg.data.vocab_size = 7
    with pytest.raises(NmtError, match="vocab_size"):
        api.prep(cfg, tmp_path / "other")


def test_importing_loads_no_stage_and_changes_no_setting():
    code = (
        "import os, sys; before = dict(os.environ); import nmt_cli; "
        "from nmt_cli import Translator, NmtError, api; "
        "print(dict(os.environ) == before, sorted(m for m in sys.modules if m in ('torch', 'sacrebleu')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout) == (0, "True []\n"), proc.stderr
