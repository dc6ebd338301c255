"""`nmt translate` end to end on the trained tiny model: one output line per input line
in input order (empty, over-long and invalid-UTF-8 lines included), streaming from stdin,
n-best TSV, scores, alignments, attention grid, output files, gzip input, int8, and
one-line errors for every bad input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from conftest import (
    EOS_ID,
    PAD_ID,
    SOS_ID,
    assert_error_ends,
    assert_ok,
    assert_one_line_error,
    make_pairs,
    run_train,
    sets,
    write_lines,
)
from typer.testing import CliRunner

from nmt_cli import device as devices
from nmt_cli.cli import app
from nmt_cli.config import DecodeConfig, ModelConfig
from nmt_cli.decode.inference import choose_precision
from nmt_cli.decode.translate import Search

PHARAOH = re.compile(r"^(\d+-\d+)( \d+-\d+)*$")
SCORED = re.compile(r"^(.*)\t(-?\d+\.\d{4})$")


def translate(*args):
    """``nmt translate ARGS`` in this process (torch keeps the one thread conftest set)."""
    return CliRunner().invoke(app, ["translate", *map(str, args)])


def out_lines(text: str) -> list[str]:
    assert text == "" or text.endswith("\n"), repr(text[-50:])
    return text.split("\n")[:-1]


def warnings_of(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("nmt: warning:")]


def sentences(n: int, seed: int = 5) -> list[str]:
    return [de for de, _ in make_pairs(n, seed)]


def scored(line: str) -> tuple[str, float]:
    match = SCORED.match(line)
    assert match, repr(line)
    return match[1], float(match[2])


@pytest.fixture(scope="module")
def payload(ckpt) -> dict:
    return torch.load(ckpt, weights_only=True)


@pytest.fixture(scope="module")
def max_len(payload) -> int:
    """The model's length limit in source subwords (its data.max_len)."""
    value = payload["config"]["data"]["max_len"]
    assert value > 0
    return value


@pytest.fixture(scope="module")
def output_limit(payload):
    """The most subwords a translation of a line can have (decode.max_len_a/b)."""
    from nmt_cli.prep.subwords import from_bytes

    sp = from_bytes(payload["vocab"]["src_spm"], "source")
    decode = payload["config"]["decode"]
    return lambda line: int((len(sp.encode(line)) + 1) * decode["max_len_a"] + decode["max_len_b"])


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """Twenty generated German sentences, one a line."""
    return write_lines(tmp_path_factory.mktemp("source") / "test.de", sentences(20, seed=3))


# --------------------------------------------------------------------------- lines in, lines out


def test_one_line_out_per_line_in_and_in_input_order(tmp_path, ckpt, max_len):
    """Empty and blank lines give empty translations, a line over the model's limit is
    truncated with a warning naming it, an invalid-UTF-8 line is translated with a
    warning naming it; every line is what it is when translated alone."""
    s = sentences(6, seed=11)
    long_line = " ".join(sentences(8, seed=12))
    lines = [s[0], "", s[1], "   ", long_line, s[2], b"Hund \xff\xfe Katze", f"{s[3]} {s[4]}", "", s[5]]
    src = write_lines(tmp_path / "in.de", lines)
    result = translate(src, "-m", ckpt, "--scores", "--batch-size", "2")
    assert_ok(result)
    out = out_lines(result.stdout)
    assert len(out) == len(lines)

    warned = warnings_of(result)
    assert len(warned) == 2, result.stderr
    truncated = next(w for w in warned if "truncat" in w)
    assert f"{src}:5:" in truncated and str(max_len) in truncated
    invalid = next(w for w in warned if "UTF-8" in w)
    assert f"{src}:7:" in invalid

    for number, (line, got) in enumerate(zip(lines, out), 1):
        text, score = scored(got)
        if isinstance(line, str) and not line.strip():
            assert (text, score) == ("", 0.0)
            continue
        alone = translate(write_lines(tmp_path / f"line{number}.de", [line]), "-m", ckpt, "--scores")
        assert_ok(alone)
        (want,) = out_lines(alone.stdout)
        want_text, want_score = scored(want)
        assert text == want_text, number
        assert score == pytest.approx(want_score, abs=2e-3), number
        assert score <= 0


def test_batching_does_not_change_the_output(source, ckpt):
    default = translate(source, "-m", ckpt, "--scores", "-q")
    assert_ok(default)
    for flags in (["--batch-size", "1"], ["--batch-tokens", "7"], ["--batch-size", "3", "--batch-tokens", "90"]):
        other = translate(source, "-m", ckpt, "--scores", "-q", *flags)
        assert_ok(other)
        for a, b in zip(out_lines(default.stdout), out_lines(other.stdout), strict=True):
            (ta, sa), (tb, sb) = scored(a), scored(b)
            assert ta == tb and sa == pytest.approx(sb, abs=2e-3), flags


def test_scores_are_a_tab_and_a_float(source, ckpt):
    result = translate(source, "-m", ckpt, "--scores", "--beam", "1", "-q")
    assert_ok(result)
    plain = translate(source, "-m", ckpt, "--beam", "1", "-q")
    assert_ok(plain)
    for line, text in zip(out_lines(result.stdout), out_lines(plain.stdout), strict=True):
        got, score = scored(line)
        assert got == text and score < 0


def test_no_special_symbols_in_the_output(source, ckpt, monkeypatch):
    """SentencePiece decodes PAD, SOS and EOS to nothing, so the text cannot show them: the
    ids each hypothesis is detokenized from must not hold them."""
    detokenized = []
    original = Search.detokenize

    def detokenize(self, line, hyp):
        detokenized.append(list(hyp.tokens))
        return original(self, line, hyp)

    monkeypatch.setattr(Search, "detokenize", detokenize)
    for flags in ([], ["--beam", "1"], ["--beam", "4", "--nbest", "4"]):
        detokenized.clear()
        result = translate(source, "-m", ckpt, "-q", *flags)
        assert_ok(result)
        assert len(detokenized) == len(result.stdout.splitlines())  # every output line was checked
        assert not {PAD_ID, SOS_ID, EOS_ID} & {token for tokens in detokenized for token in tokens}, flags
        assert "<unk>" not in result.stdout  # UNK decodes to " ⁇ ", never to its piece


def test_line_endings_bom_and_a_missing_final_newline(tmp_path, ckpt):
    lf = tmp_path / "lf.de"
    lf.write_bytes(b"Hund Katze\nein Mann\n\nBaum\n")
    other = tmp_path / "crlf.de"
    other.write_bytes("\ufeffHund Katze\r\nein Mann\r\n\r\nBaum".encode())
    a, b = translate(lf, "-m", ckpt, "-q", "--scores"), translate(other, "-m", ckpt, "-q", "--scores")
    assert_ok(a)
    assert_ok(b)
    assert len(out_lines(a.stdout)) == 4
    assert a.stdout == b.stdout


def test_empty_input_gives_empty_output(tmp_path, ckpt):
    empty = tmp_path / "empty.de"
    empty.write_bytes(b"")
    result = translate(empty, "-m", ckpt)
    assert_ok(result)
    assert result.stdout == ""


def test_gzip_input_is_read_like_plain_text(tmp_path, ckpt):
    lines = sentences(7, seed=13) + ["", "Hund"]
    plain = write_lines(tmp_path / "plain.de", lines)
    packed = write_lines(tmp_path / "packed.de", lines, gz=True)
    assert packed.suffix == ".gz"
    a, b = translate(plain, "-m", ckpt, "-q", "--scores"), translate(packed, "-m", ckpt, "-q", "--scores")
    assert_ok(a)
    assert_ok(b)
    assert len(out_lines(a.stdout)) == len(lines)
    assert a.stdout == b.stdout


def test_output_file_is_written_whole_and_leaves_no_temporary_files(tmp_path, source, ckpt):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = translate(source, "-m", ckpt, "-q", "-o", out_dir / "hyp.en", "--alignments", out_dir / "hyp.align")
    assert_ok(result)
    assert result.stdout == ""
    to_stdout = translate(source, "-m", ckpt, "-q")
    assert_ok(to_stdout)
    assert (out_dir / "hyp.en").read_text(encoding="utf-8") == to_stdout.stdout
    assert len(out_lines((out_dir / "hyp.align").read_text(encoding="utf-8"))) == 20
    assert sorted(os.listdir(out_dir)) == ["hyp.align", "hyp.en"]


def test_output_and_alignments_in_one_file_is_a_one_line_error(tmp_path, source, ckpt):
    same = tmp_path / "same.txt"
    other = tmp_path / "sub" / ".." / "same.txt"  # one file by another name
    (tmp_path / "sub").mkdir()
    result = translate(source, "-m", ckpt, "-o", same, "--alignments", other)
    assert_one_line_error(result, f"-o {same}", f"--alignments {other}", "the same file")
    assert os.listdir(tmp_path) == ["sub"]


def test_a_symlinked_output_keeps_its_link_and_a_device_stays_a_device(tmp_path, source, ckpt):
    """The translations replace the link's target, not the link; /dev/null is written
    into, not replaced by a regular file, and may take both outputs."""
    expected = translate(source, "-m", ckpt, "-q")
    assert_ok(expected)
    (tmp_path / "real.en").write_text("old\n", encoding="utf-8")
    link = tmp_path / "hyp.en"
    link.symlink_to("real.en")
    assert_ok(translate(source, "-m", ckpt, "-q", "-o", link))
    assert link.is_symlink() and (tmp_path / "real.en").read_text(encoding="utf-8") == expected.stdout
    assert sorted(os.listdir(tmp_path)) == ["hyp.en", "real.en"]
    assert_ok(translate(source, "-m", ckpt, "-q", "-o", os.devnull, "--alignments", os.devnull))
    assert Path(os.devnull).is_char_device()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
@pytest.mark.parametrize("option", ["-o", "--alignments"])
def test_a_full_device_as_output_is_a_one_line_error_and_stays_a_device(source, ckpt, option):
    assert_error_ends(translate(source, "-m", ckpt, "-q", option, "/dev/full"), 1, "/dev/full: no space left on device")
    assert Path("/dev/full").is_char_device()


def test_replace_unk_runs(source, ckpt):
    result = translate(source, "-m", ckpt, "-q", "--replace-unk", "--scores")
    assert_ok(result)
    assert len(out_lines(result.stdout)) == 20


def test_bf16_runs_on_cpu(source, ckpt):
    result = translate(source, "-m", ckpt, "-q", "--precision", "bf16", "--device", "cpu", "--beam", "2")
    assert_ok(result)
    assert len(out_lines(result.stdout)) == 20


@pytest.mark.parametrize(
    "int8, chosen, flags", [(False, "fp32", ["--precision", "fp32"]), (True, "int8", ["--quantize", "int8"])]
)
def test_auto_precision_translates_as_what_it_resolves_to(monkeypatch, source, ckpt, int8, chosen, flags):
    monkeypatch.setattr(devices, "bf16_speedup", lambda shapes: 0.05)
    monkeypatch.setattr(devices, "int8_products", lambda: int8)
    auto = translate(source, "-m", ckpt, "--device", "cpu", "--beam", "3")
    asked = translate(source, "-m", ckpt, "--device", "cpu", "--beam", "3", *flags)
    assert_ok(auto) and assert_ok(asked)
    assert auto.stdout == asked.stdout
    assert f"beam 3, auto -> {chosen} (bf16 0.05x fp32 on this CPU))" in auto.stderr


@pytest.mark.parametrize("speedup, int8, chosen", [(0.05, False, "fp32"), (0.05, True, "int8"), (3.0, True, "bf16")])
def test_auto_precision_follows_the_probe_on_a_cpu_and_is_fp32_on_cuda(monkeypatch, speedup, int8, chosen):
    monkeypatch.setattr(devices, "bf16_speedup", lambda shapes: speedup)
    monkeypatch.setattr(devices, "int8_products", lambda: int8)
    decode, line = choose_precision(DecodeConfig(), ModelConfig(), torch.device("cpu"))
    assert (decode.precision, decode.quantize) == (
        "bf16" if chosen == "bf16" else "fp32",
        "int8" if chosen == "int8" else "none",
    )
    assert line == f"auto -> {chosen} (bf16 {speedup:.2f}x fp32 on this CPU)"
    decode, line = choose_precision(DecodeConfig(quantize="int8"), ModelConfig(), torch.device("cpu"))
    assert decode.precision == "fp32" and line == "auto -> fp32, int8"
    decode, line = choose_precision(DecodeConfig(), ModelConfig(), torch.device("cuda"))
    assert decode == DecodeConfig(precision="fp32") and line.startswith("auto -> fp32 (fp32 on cuda")


@pytest.mark.parametrize("ratio, noted", [(0.5, True), (2.0, False)])
def test_bf16_note_where_bf16_is_slow(monkeypatch, source, ckpt, ratio, noted):
    monkeypatch.setattr(devices, "bf16_speedup", lambda: ratio)
    result = translate(source, "-m", ckpt, "--precision", "bf16", "--device", "cpu")
    assert_ok(result)
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: bf16")]
    assert len(notes) == noted and all("--precision=auto or fp32" in n for n in notes)
    quiet = translate(source, "-m", ckpt, "--precision", "bf16", "--device", "cpu", "-q")
    assert quiet.stderr == ""


def test_summary_line_on_stderr_unless_quiet(source, ckpt):
    result = translate(source, "-m", ckpt, "--beam", "1")
    assert_ok(result)
    (summary,) = [line for line in result.stderr.splitlines() if line.startswith("nmt translate:")]
    assert "20 lines" in summary and "greedy" in summary
    quiet = translate(source, "-m", ckpt, "--beam", "1", "-q")
    assert_ok(quiet)
    assert quiet.stderr == ""
    assert quiet.stdout == result.stdout


# --------------------------------------------------------------------------- int8


@pytest.fixture(scope="module")
def fluent(tmp_path_factory, prepped) -> Path:
    """The tiny model trained long enough that its greedy output varies from line to line
    (the 30-step model's is a few repeated words). It does not translate the generated
    sentences well (BLEU about 1 against their English): what matters here is output
    that depends on the input."""
    out = tmp_path_factory.mktemp("fluent") / "model"
    assert_ok(run_train(prepped, out, *sets("train.max_steps=600", "train.valid_every=600")))
    return out / "best.pt"


@pytest.mark.parametrize(
    "flags, bound", [(["--quantize", "int8"], 50), (["--precision", "bf16"], 70)], ids=["int8", "bf16"]
)
def test_reduced_precision_translates_like_fp32(tmp_path, fluent, flags, bound):
    """int8 and bf16 change the model's arithmetic, not its translations: against fp32's
    output as the reference, their BLEU stays high on output that varies from line to line.
    Greedy search, so that the comparison is of the arithmetic alone. A weak model has
    near-ties that the rounding flips (measured on one CPU: int8 68-78, bf16 88-90, with
    47-68% of lines identical); the output of the same run 200 steps on scores 0.3."""
    from sacrebleu.metrics import BLEU

    source = write_lines(tmp_path / "src.de", [de for de, _ in make_pairs(100, seed=11)])
    fp32 = translate(source, "-m", fluent, "-q", "--device", "cpu", "--beam", "1", "--precision", "fp32")
    reduced = translate(source, "-m", fluent, "-q", "--device", "cpu", "--beam", "1", *flags)
    assert_ok(fp32)
    assert_ok(reduced)
    reference, hypothesis = out_lines(fp32.stdout), out_lines(reduced.stdout)
    assert len(set(reference)) >= 80  # varied output: agreement cannot come from a constant line
    assert BLEU().corpus_score(hypothesis, [reference]).score >= bound, flags


# --------------------------------------------------------------------------- n-best


def nbest_rows(text: str, columns: int) -> list[list[str]]:
    rows = [line.split("\t") for line in out_lines(text)]
    assert all(len(row) == columns for row in rows), rows
    return rows


@pytest.mark.parametrize("scores", [False, True], ids=["plain", "scores"])
def test_nbest_tsv_has_k_ranked_rows_per_line(tmp_path, ckpt, scores):
    lines = sentences(19, seed=4)
    lines.insert(5, "")
    src = write_lines(tmp_path / "in.de", lines)  # over two chunks of 16 lines (batch size 2)
    flags = ["--scores"] if scores else []
    result = translate(src, "-m", ckpt, "-q", "--beam", "3", "--nbest", "3", "--batch-size", "2", *flags)
    assert_ok(result)
    rows = nbest_rows(result.stdout, 5 if scores else 4)
    indices = [int(row[0]) for row in rows]
    assert indices == sorted(indices)
    assert sorted(set(indices)) == list(range(len(lines)))
    best = translate(src, "-m", ckpt, "-q", "--beam", "3", "--nbest", "1", "--batch-size", "2")
    assert_ok(best)
    best_lines = out_lines(best.stdout)
    for index, line in enumerate(lines):
        mine = [row for row in rows if int(row[0]) == index]
        if not line:
            assert all(row[-1] == "" for row in mine)
            continue
        assert [int(row[1]) for row in mine] == [1, 2, 3]
        values = [float(row[2]) for row in mine]
        assert values == sorted(values, reverse=True)
        if scores:
            assert all(float(row[3]) <= 0 for row in mine)
        assert mine[0][-1] == best_lines[index]  # rank 1 is the 1-best output


# --------------------------------------------------------------------------- attention


def test_alignments_file_has_one_pharaoh_line_per_input_line(tmp_path, ckpt, output_limit):
    s = sentences(5, seed=14)
    lines = [s[0], "", s[1], "  ", s[2], s[3], s[4]]
    src = write_lines(tmp_path / "in.de", lines)
    align = tmp_path / "out.align"
    result = translate(src, "-m", ckpt, "-q", "--alignments", align, "--batch-size", "2", "--beam", "3")
    assert_ok(result)
    out = out_lines(result.stdout)
    links = out_lines(align.read_text(encoding="utf-8"))
    assert len(out) == len(links) == len(lines)
    for line, text, row in zip(lines, out, links):
        if not line.strip() or not text.split():  # no words on a side: no links
            assert row == ""
            continue
        assert PHARAOH.match(row), row
        for link in row.split():
            i, j = map(int, link.split("-"))
            assert 0 <= i < len(line.split()), (line, row)
            assert 0 <= j < output_limit(line), (line, row)  # at most one word per output subword


def test_alignments_with_nbest_still_one_line_per_input_line(tmp_path, source, ckpt):
    align = tmp_path / "nbest.align"
    result = translate(source, "-m", ckpt, "-q", "--beam", "2", "--nbest", "2", "--alignments", align)
    assert_ok(result)
    rows = out_lines(align.read_text(encoding="utf-8"))
    assert len(rows) == 20 and all(row == "" or PHARAOH.match(row) for row in rows)


def test_alignment_target_indices_are_words_of_the_output_line(tmp_path, source, ckpt):
    align = tmp_path / "out.align"
    result = translate(source, "-m", ckpt, "-q", "--alignments", align, "--beam", "1")
    assert_ok(result)
    for text, row in zip(out_lines(result.stdout), out_lines(align.read_text(encoding="utf-8")), strict=True):
        for link in row.split():
            assert int(link.split("-")[1]) < len(text.split()), (repr(text), row[:80])


def test_show_attention_prints_a_grid_per_sentence_on_stderr(tmp_path, ckpt):
    s = sentences(3, seed=15)
    src = write_lines(tmp_path / "in.de", [s[0], "", s[1], s[2]])
    result = translate(src, "-m", ckpt, "-q", "--beam", "1", "--show-attention", "--plot-max", "2")
    assert_ok(result)
    assert len(out_lines(result.stdout)) == 4
    assert "</s>" not in result.stdout
    assert "line 1:" in result.stderr and "line 3:" in result.stderr
    assert "line 2:" not in result.stderr  # an empty line has nothing to show
    assert "line 4:" not in result.stderr  # --plot-max 2
    assert "</s>" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- stdin


def readline_within(stream, seconds: float) -> bytes | None:
    """One line from ``stream``, or None when none comes within ``seconds``."""
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(seconds)
    return box[0] if box else None


def test_stdin_is_answered_line_by_line_while_it_stays_open(tmp_path, ckpt):
    """A caller that writes a line and waits for its translation before writing the next
    one gets each answer at once, not when stdin closes."""
    errors = (tmp_path / "stderr.txt").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nmt_cli", "translate", "-m", str(ckpt), "--threads", "1", "-q", "--scores"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errors,
    )
    try:
        for sentence in [*sentences(2, seed=16), ""]:
            proc.stdin.write(sentence.encode() + b"\n")
            proc.stdin.flush()
            line = readline_within(proc.stdout, 60)
            assert line is not None, f"no translation of {sentence!r} within 60 s while stdin stays open"
            text, score = scored(line.decode("utf-8").rstrip("\n"))
            assert (score < 0) if sentence else (text, score) == ("", 0.0)
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
        assert proc.stdout.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        errors.close()
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- bad input


def test_missing_model(tmp_path, source):
    assert_one_line_error(translate(source, "-m", tmp_path / "nope.pt"), "nope.pt")


def test_truncated_model(tmp_path, source, ckpt):
    data = ckpt.read_bytes()
    half = tmp_path / "half.pt"
    half.write_bytes(data[: len(data) // 2])
    assert_one_line_error(translate(source, "-m", half), "half.pt")


def test_text_file_as_model(tmp_path, source):
    text = tmp_path / "model.txt"
    text.write_text("not a checkpoint\n", encoding="utf-8")
    assert_one_line_error(translate(source, "-m", text), "model.txt")


def test_plain_dict_as_model(tmp_path, source):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3), "step": 7}, foreign)
    assert_one_line_error(translate(source, "-m", foreign), "foreign.pt", "not an nmt checkpoint")


def test_directory_as_model(source, trained):
    assert_one_line_error(translate(source, "-m", trained), "directory")


def test_checkpoint_marker_without_contents(tmp_path, source):
    broken = tmp_path / "broken.pt"
    torch.save({"format": "nmt-checkpoint-1"}, broken)
    assert_one_line_error(translate(source, "-m", broken), "broken.pt")


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--beam", "0"], "--beam"),
        (["--beam", "3", "--nbest", "4"], "--nbest"),
        (["--nbest", "0"], "--nbest"),
        (["--batch-size", "-1"], "--batch-size"),
        (["--alpha", "-1"], "--alpha"),
        (["--max-len-a", "0", "--max-len-b", "0"], "--max-len"),
        (["--device", "cpu", "--precision", "fp16"], "fp16"),
        (["--device", "cpu", "--quantize", "int8", "--precision", "fp16"], "fp16"),
    ],
)
def test_bad_decode_options(source, ckpt, flags, fragment):
    assert_one_line_error(translate(source, "-m", ckpt, *flags), fragment)


def test_missing_input(tmp_path, ckpt):
    assert_one_line_error(translate(tmp_path / "missing.de", "-m", ckpt), "missing.de")


def test_directory_as_input(tmp_path, ckpt):
    assert_one_line_error(translate(tmp_path, "-m", ckpt), "directory")


def test_a_failed_run_leaves_no_output_file(tmp_path, ckpt):
    out = tmp_path / "out"
    out.mkdir()
    result = translate(tmp_path / "missing.de", "-m", ckpt, "-o", out / "hyp.en", "--alignments", out / "hyp.align")
    assert_one_line_error(result, "missing.de")
    assert os.listdir(out) == []


def test_attention_plot_needs_matplotlib(tmp_path, source, ckpt, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: importing it fails
    plots = tmp_path / "plots"
    assert_one_line_error(translate(source, "-m", ckpt, "--attention-plot", plots), "matplotlib")
    assert not plots.exists()


def test_attention_plot_writes_a_png_per_sentence_up_to_plot_max(tmp_path, source, ckpt):
    pytest.importorskip("matplotlib")
    plots = tmp_path / "plots"
    assert_ok(translate(source, "-m", ckpt, "-q", "--beam", "1", "--attention-plot", plots, "--plot-max", "3"))
    names = sorted(os.listdir(plots))
    assert names == ["line-000001.png", "line-000002.png", "line-000003.png"]
    assert all((plots / name).read_bytes().startswith(b"\x89PNG") for name in names)


def test_truncated_gzip_input(tmp_path, source, ckpt):
    packed = write_lines(tmp_path / "in.de", sentences(40, seed=17), gz=True)
    data = packed.read_bytes()
    packed.write_bytes(data[: len(data) // 2])
    assert_one_line_error(translate(packed, "-m", ckpt), "in.de.gz")


def test_output_in_a_missing_directory(tmp_path, source, ckpt):
    assert_one_line_error(translate(source, "-m", ckpt, "-o", tmp_path / "no" / "hyp.en"), "hyp.en")


def test_alignments_in_a_missing_directory(tmp_path, source, ckpt):
    assert_one_line_error(translate(source, "-m", ckpt, "--alignments", tmp_path / "no" / "a.align"), "a.align")


def test_a_real_process_reports_a_bad_model_in_one_line(tmp_path, source, ckpt):
    """The console entry point, not CliRunner: exit 2, one line, no traceback."""
    data = ckpt.read_bytes()
    half = tmp_path / "half.pt"
    half.write_bytes(data[: len(data) // 3])
    result = subprocess.run(
        [sys.executable, "-m", "nmt_cli", "translate", str(source), "-m", str(half), "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nmt: error: ") and "half.pt" in lines[0], result.stderr
