"""The `nmt` command line: help, version, error mapping, exit codes, flag layering."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import assert_ok, assert_one_line_error, leftovers, manifest, run_prep, write_corpus
from typer.testing import CliRunner

import nmt_cli
from nmt_cli.cli import EXAMPLES, app
from nmt_cli.errors import NmtError

COMMANDS = ["prep", "train", "translate", "score"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def nmt(*args, cwd=None):
    """The real thing: ``python -m nmt_cli ARGS`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "nmt_cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def flat(text: str) -> str:
    return " ".join(text.split())


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"nmt {nmt_cli.__version__}\n"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_four_commands_with_an_example_each(flag):
    result = invoke(flag)
    assert result.exit_code == 0
    text = flat(result.stdout)
    assert "Usage: nmt" in text
    assert list(EXAMPLES) == COMMANDS
    for name in COMMANDS:
        assert f"nmt {name}" in EXAMPLES[name]
        assert flat(f"{name}: {EXAMPLES[name]}") in text
        assert re.search(rf"^\W*{name}\s+\S", result.stdout, re.M), name  # listed under Commands


def test_no_arguments_shows_help():
    result = invoke()
    assert all(name in result.output for name in COMMANDS)
    assert "Usage: nmt" in result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_command_help_has_its_example(name):
    result = invoke(name, "--help")
    assert result.exit_code == 0
    assert flat(f"Example: {EXAMPLES[name]}") in flat(result.stdout)


@pytest.mark.parametrize(
    "args, fragment",
    [
        pytest.param(["prep", "--out", "out"], "missing --src-lang", id="prep"),
        pytest.param(["train", "recipe.yaml", "--data", "prep", "--out", "model"], "recipe.yaml", id="train"),
        pytest.param(["translate", "-m", "nope.pt"], "nope.pt", id="translate"),
        pytest.param(["score", "-r", "nope.ref", "nope.hyp"], "nope.", id="score"),
    ],
)
def test_every_stage_answers_with_its_own_checks(tmp_path, monkeypatch, args, fragment):
    """No command is a stub: a bad input reaches the stage itself, whose one-line error
    names what is wrong with it."""
    monkeypatch.chdir(tmp_path)
    line = assert_one_line_error(invoke(*args), fragment)
    assert "not implemented" not in line


def test_prep_summary_line(tmp_path, corpus):
    result = run_prep(tmp_path, "--test", corpus / "test")
    assert_ok(result)
    assert result.stdout == ""
    assert re.fullmatch(
        rf"nmt prep: train 300 -> \d+ pairs( \(dropped: [a-z_ 0-9,]+\))?; valid 40 pairs; test 20 pairs; "
        rf"vocab 100 \(joint unigram\); wrote {re.escape(str(tmp_path / 'out'))} in \d+\.\ds\n",
        result.stderr,
    ), result.stderr


def test_prep_needs_languages_and_inputs(tmp_path):
    assert_one_line_error(invoke("prep", "--out", tmp_path / "out"), "missing --src-lang (data.src_lang)")
    result = invoke("prep", "--out", tmp_path / "out", "-s", "de", "-t", "en", "--train", "x")
    assert_one_line_error(result, "missing --valid (data.valid)")


def test_interrupt_is_exit_130(tmp_path, corpus, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("nmt_cli.prep.prepare.prepare", interrupted)
    result = run_prep(tmp_path)
    assert result.exit_code == 130
    assert result.stderr == "nmt: interrupted\n"


def test_debug_shows_the_exception(tmp_path, corpus):
    result = invoke(
        "--debug",
        "prep",
        "-s",
        "de",
        "-t",
        "en",
        "--train",
        tmp_path / "nope",
        "--valid",
        corpus / "valid",
        "--out",
        tmp_path / "out",
    )
    assert isinstance(result.exception, NmtError)
    assert result.exit_code == 1
    # and the flag does not stick to the next command
    assert_one_line_error(
        invoke("prep", "-s", "de", "-t", "en", "--train", tmp_path / "nope", "--valid", "v", "--out", tmp_path / "out")
    )


def test_recipe_then_set_then_flags(tmp_path, corpus):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"data:\n  src_lang: de\n  tgt_lang: en\n  train: {corpus / 'train'}\n  valid: {corpus / 'valid'}\n"
        "  vocab_size: 90\n  dedup: true\n  max_len: 100\n  spm_type: bpe\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    result = invoke(
        "prep",
        "--recipe",
        recipe,
        "--out",
        out,
        "--set",
        "data.max_len=50",
        "--set",
        "data.spm_type=unigram",
        "--spm-type",
        "bpe",
    )
    assert_ok(result)
    opts = manifest(out)["options"]
    assert opts["vocab_size"] == 90 and opts["dedup"] is True  # from the recipe
    assert opts["max_len"] == 50  # --set beats the recipe
    assert opts["spm_type"] == "bpe"  # a flag beats --set
    assert opts["src_lang"] == "de" and opts["train"] == str(corpus / "train")


@pytest.mark.parametrize(
    "args",
    [
        ["translate", "--threads", "-1", "-m", "nope.pt"],
        ["train", "--threads", "-1", "r.yaml", "--data", "d", "--out", "o"],
    ],
    ids=["translate", "train"],
)
def test_negative_threads_is_a_one_line_error(tmp_path, monkeypatch, args):
    """torch refuses a negative thread count with a RuntimeError: the flag's own error comes first."""
    import torch

    monkeypatch.chdir(tmp_path)
    before = torch.get_num_threads()
    assert_one_line_error(invoke(*args), "--threads -1: must be >= 0")
    assert torch.get_num_threads() == before


def test_bad_flag_value_is_a_usage_error(tmp_path):
    result = invoke("prep", "--out", tmp_path / "out", "--spm-type", "bep")
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "bep" in result.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- real processes


def test_python_m_nmt_cli_help():
    proc = nmt("--help")
    assert proc.returncode == 0, proc.stderr
    assert all(name in proc.stdout for name in COMMANDS)
    assert proc.stderr == ""


def test_subprocess_version():
    proc = nmt("--version")
    assert (proc.returncode, proc.stdout) == (0, f"nmt {nmt_cli.__version__}\n")


def test_importing_the_cli_loads_no_stage_and_changes_no_setting():
    """The settings torch must see (its backend autoload, ideep's cache) are made when a
    command runs, not at import: ``import nmt_cli.cli`` leaves the process as it was."""
    code = (
        "import os, sys; before = dict(os.environ); import nmt_cli.cli; "
        "print(dict(os.environ) == before, sorted(m for m in sys.modules if m in ('torch', 'sacrebleu')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout) == (0, "True []\n"), proc.stderr


def test_profiler_still_writes_its_report(tmp_path):
    """The process ends without the interpreter's teardown, except under a profiler."""
    report = tmp_path / "nmt.prof"
    proc = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(report), "-m", "nmt_cli", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (proc.returncode, proc.stdout) == (0, f"nmt {nmt_cli.__version__}\n")
    assert report.stat().st_size > 0


def test_subprocess_prep_success_and_noop(tmp_path):
    data = write_corpus(tmp_path)
    args = [
        "prep",
        "-s",
        "de",
        "-t",
        "en",
        "--train",
        data / "train",
        "--valid",
        data / "valid",
        "--out",
        tmp_path / "out",
        "--vocab-size",
        "100",
    ]
    proc = nmt(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr.startswith("nmt prep: train 300 -> ")
    assert manifest(tmp_path / "out")["splits"]["train"]["lines_read"] == 300
    again = nmt(*args, cwd=tmp_path)
    assert again.returncode == 0 and "up to date" in again.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (
            ["prep", "-s", "de", "-t", "en", "--train", "nope", "--valid", "nope", "--out", "out"],
            "nope.de: no such file",
        ),
        (["prep", "--recipe", "nope.yaml", "--out", "out"], "nope.yaml: no such recipe file"),
        (["prep", "--spm-type", "bep", "--out", "out"], "'bep' is not one of 'unigram', 'bpe'"),  # a usage error
    ],
    ids=["prep-missing-file", "prep-missing-recipe", "prep-bad-choice"],
)
def test_subprocess_errors_are_one_line_exit_2(tmp_path, args, fragment):
    proc = nmt(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nmt: error: ") and fragment in proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists() and leftovers(tmp_path / "out") == []


def test_subprocess_debug_shows_traceback(tmp_path):
    proc = nmt(
        "--debug", "prep", "-s", "de", "-t", "en", "--train", "nope", "--valid", "nope", "--out", "out", cwd=tmp_path
    )
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "NmtError" in proc.stderr


@pytest.mark.parametrize(
    "value, on",
    [("true", True), ("True", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("", False)],
)
def test_ci_is_told_however_it_is_spelled(value, on):
    """With MULTI30K_DIR unset, CI=1 or CI=True fails the Multi30k tests as CI=true does."""
    from conftest import on_ci

    assert on_ci({"CI": value}) is on and on_ci({}) is False


def test_sigterm_ends_translate_as_ctrl_c_does_without_leftovers(tmp_path, trained):
    """SIGTERM (a service manager, `timeout`, `kill`) ends a command with exit 130 and one
    line; the output's temporary file goes and no output appears."""
    out, errors = tmp_path / "out.en", tmp_path / "stderr.txt"
    with errors.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nmt_cli", "translate", "-m", str(trained / "best.pt"), "-o", str(out)],
            stdin=subprocess.PIPE,  # left open: the command waits for more lines
            stderr=err,
        )
        try:
            deadline = time.monotonic() + 60
            while not list(tmp_path.glob(".out.en.*")) and time.monotonic() < deadline:  # writing has begun
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert errors.read_text(encoding="utf-8").strip().splitlines()[-1] == "nmt: interrupted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stderr.txt"]
