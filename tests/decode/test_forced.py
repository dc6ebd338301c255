"""`nmt score --model`: forced decoding of references under the trained tiny model.

A line's log-probability is checked against an independent computation that steps the
decoder one reference token at a time (``decoder.step``/``embed``/``logits``, as greedy
search does) and sums log p of every reference subword and EOS. Also: the TSV and JSON
layouts, the perplexity summary on stderr, batch-size independence, empty lines, that the
model prefers the right references to shuffled ones, and one-line errors.
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from conftest import EOS_ID, SOS_ID, TRAIN_PAIRS, assert_ok, assert_one_line_error, make_pairs, write_lines
from typer.testing import CliRunner

from nmt_cli.cli import app

HEADER = "line\tlogprob\ttokens\tavg_logprob"
SUMMARY_PERPLEXITY = "perplexity "


def score(*args):
    return CliRunner().invoke(app, ["score", *map(str, args)])


class Independent:
    """The checkpoint's model and subword models, loaded here without nmt's Inference."""

    def __init__(self, path: Path):
        from nmt_cli import checkpoint
        from nmt_cli.model import saved

        payload = checkpoint.load(path)
        self.model, self.cfg = saved.load_model(payload)
        self.model.eval()
        self.src_sp = spm.SentencePieceProcessor(model_proto=payload["vocab"]["src_spm"])
        self.tgt_sp = spm.SentencePieceProcessor(model_proto=payload["vocab"]["tgt_spm"])

    @torch.no_grad()
    def logprob(self, source: str, reference: str) -> tuple[float, int]:
        """(Σ log p(y_t | y_<t, x) over the reference subwords and EOS, that count)."""
        model = self.model
        src_ids = self.src_sp.encode(source) if source else []
        tgt_ids = self.tgt_sp.encode(reference) if reference else []
        src = torch.tensor([src_ids + [EOS_ID]])
        memory, state, feed = model.encode(src, torch.tensor([len(src_ids) + 1]))
        prev = torch.tensor([SOS_ID])
        total = 0.0
        for target in tgt_ids + [EOS_ID]:
            att, state, _ = model.decoder.step(model.decoder.embed(prev), state, feed, memory)
            if feed is not None:
                feed = att
            logp = torch.log_softmax(model.decoder.logits(att).double(), dim=-1)
            total += float(logp[0, target])
            prev = torch.tensor([target])
        return total, len(tgt_ids) + 1


@pytest.fixture(scope="module")
def independent(ckpt) -> Independent:
    return Independent(ckpt)


# Held-out generated pairs, plus an empty reference, an empty source and both empty.
PAIRS = make_pairs(12, seed=21) + [("der Hund läuft", ""), ("", "the dog runs"), ("", "")]


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("forced")
    return write_lines(root / "test.de", [de for de, _ in PAIRS]), write_lines(
        root / "test.en", [en for _, en in PAIRS]
    )


def rows_of(result) -> list[list[str]]:
    lines = result.stdout.splitlines()
    assert lines[0] == HEADER, lines[:1]
    return [line.split("\t") for line in lines[1:]]


def summary_perplexity(stderr: str) -> float:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("nmt score: ") and SUMMARY_PERPLEXITY in lines[0], lines[0]
    return float(lines[0].split(SUMMARY_PERPLEXITY)[1].split()[0])


def test_tsv_has_a_row_per_line_and_a_perplexity_summary(ckpt, pair_files, independent):
    src, ref = pair_files
    result = score("--model", ckpt, "--src", src, "-r", ref, "--device", "cpu")
    assert_ok(result)
    rows = rows_of(result)
    assert len(rows) == len(PAIRS)
    total_lp, total_tokens = 0.0, 0
    for i, (row, (_, en)) in enumerate(zip(rows, PAIRS), 1):
        assert len(row) == 4
        line, lp, tokens, avg = int(row[0]), float(row[1]), int(row[2]), float(row[3])
        assert line == i
        assert lp < 0
        assert tokens == len(independent.tgt_sp.encode(en) if en else []) + 1
        assert avg == pytest.approx(lp / tokens, abs=2e-4)
        total_lp, total_tokens = total_lp + lp, total_tokens + tokens
    assert int(rows[len(PAIRS) - 3][2]) == 1 and int(rows[-1][2]) == 1  # empty references: EOS alone
    ppl = summary_perplexity(result.stderr)
    assert ppl == pytest.approx(math.exp(-total_lp / total_tokens), rel=1e-3)
    assert f"{len(PAIRS)} lines, {total_tokens} target tokens" in result.stderr


def test_json_lines(ckpt, pair_files):
    src, ref = pair_files
    tsv = rows_of(score("--model", ckpt, "--src", src, "-r", ref, "--device", "cpu"))
    result = score("--model", ckpt, "--src", src, "-r", ref, "--device", "cpu", "-f", "json")
    assert_ok(result)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == len(PAIRS)
    for row, line in zip(rows, tsv):
        assert set(row) == {"line", "logprob", "tokens", "avg_logprob"}
        assert [row["line"], row["logprob"], row["tokens"], row["avg_logprob"]] == [
            int(line[0]),
            float(line[1]),
            int(line[2]),
            float(line[3]),
        ]
    assert SUMMARY_PERPLEXITY in result.stderr and "perplexity" not in result.stdout


def test_cli_log_probability_is_the_sum_of_token_log_probabilities(ckpt, pair_files, independent):
    src, ref = pair_files
    result = score("--model", ckpt, "--src", src, "-r", ref, "--device", "cpu")
    assert_ok(result)
    for row, (de, en) in zip(rows_of(result), PAIRS):
        expected, tokens = independent.logprob(de, en)
        assert int(row[2]) == tokens
        assert float(row[1]) == pytest.approx(expected, abs=1e-3), (de, en)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_score_pairs_equals_the_step_by_step_sum(ckpt, independent, batch_size):
    """forced.score_pairs, batched and padded, against one sentence at a time."""
    from nmt_cli.decode import forced
    from nmt_cli.decode.inference import Inference

    inference = Inference.load(ckpt, {}, torch.device("cpu"), search=False)
    pairs = [chunk for chunk in forced.read_pairs(inference, iter(PAIRS), ("src", "ref"))]
    assert len(pairs) == 1
    pairs = pairs[0]
    forced.score_pairs(inference, pairs, batch_size)
    assert [p.index for p in pairs] == list(range(len(PAIRS)))
    for p, (de, en) in zip(pairs, PAIRS):
        expected, tokens = independent.logprob(de, en)
        assert p.tokens == tokens
        assert p.logprob == pytest.approx(expected, abs=1e-3), (de, en)


def test_batch_size_does_not_change_the_scores(ckpt, pair_files):
    src, ref = pair_files
    one = rows_of(score("--model", ckpt, "--src", src, "-r", ref, "--device", "cpu", "--batch-size", "1"))
    many = rows_of(score("--model", ckpt, "--src", src, "-r", ref, "--device", "cpu", "--batch-size", "5"))
    assert [r[0] for r in one] == [r[0] for r in many]
    for a, b in zip(one, many):
        assert a[2] == b[2]
        assert float(a[1]) == pytest.approx(float(b[1]), abs=2e-4)


def test_gzipped_inputs_score_like_plain_ones(ckpt, pair_files, tmp_path):
    src, ref = pair_files
    src_gz = write_lines(tmp_path / "test.de", [de for de, _ in PAIRS], gz=True)
    ref_gz = write_lines(tmp_path / "test.en", [en for _, en in PAIRS], gz=True)
    plain = score("--model", ckpt, "--src", src, "-r", ref, "--device", "cpu")
    gz = score("--model", ckpt, "--src", src_gz, "-r", ref_gz, "--device", "cpu")
    assert_ok(gz)
    assert gz.stdout == plain.stdout


def test_right_references_are_more_probable_than_shuffled_ones(ckpt, tmp_path):
    """The same references, each moved half the corpus away: the tokens scored are the
    same, so only what the model learned from the source can tell the two apart."""
    pairs = make_pairs(TRAIN_PAIRS, 1)  # the tiny model's training pairs
    n = len(pairs)
    src = write_lines(tmp_path / "src.de", [de for de, _ in pairs])
    right = write_lines(tmp_path / "right.en", [en for _, en in pairs])
    shuffled = write_lines(tmp_path / "shuffled.en", [pairs[(i + n // 2) % n][1] for i in range(n)])
    totals, perplexities = {}, {}
    for name, ref in [("right", right), ("shuffled", shuffled)]:
        result = score("--model", ckpt, "--src", src, "-r", ref, "--device", "cpu", "--batch-size", "100")
        assert_ok(result)
        rows = rows_of(result)
        assert len(rows) == n
        totals[name] = (sum(float(r[1]) for r in rows), sum(int(r[2]) for r in rows))
        perplexities[name] = summary_perplexity(result.stderr)
    assert totals["right"][1] == totals["shuffled"][1]  # same tokens
    assert totals["right"][0] > totals["shuffled"][0] + 0.1, totals
    assert perplexities["right"] <= perplexities["shuffled"], perplexities


# --------------------------------------------------------------------------- errors


def test_model_needs_src(ckpt, pair_files):
    _, ref = pair_files
    assert_one_line_error(score("--model", ckpt, "-r", ref, "--device", "cpu"), "--model", "--src")


def test_src_and_reference_line_count_mismatch(ckpt, pair_files, tmp_path):
    src, _ = pair_files
    short = write_lines(tmp_path / "short.en", [en for _, en in PAIRS[:-2]])
    result = score("--model", ckpt, "--src", src, "-r", short, "--device", "cpu")
    line = assert_one_line_error(result, str(src), str(short))
    assert f"has {len(PAIRS)} lines" in line and f"has {len(PAIRS) - 2}" in line
    assert result.stdout == ""  # reported before any row
    long = write_lines(tmp_path / "long.en", [en for _, en in PAIRS] + ["one more"])
    result = score("--model", ckpt, "--src", src, "-r", long, "--device", "cpu", "-f", "json")
    line = assert_one_line_error(result)
    assert f"has {len(PAIRS)} lines" in line and f"has {len(PAIRS) + 1}" in line
    assert result.stdout == ""


def test_a_piped_reference_of_another_length_prints_no_row_either(ckpt, pair_files, tmp_path):
    """A pipe (``<(zcat ref.gz)``) is read once: its rows wait until its end shows it matches."""
    src, _ = pair_files
    fifo = tmp_path / "ref.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("".join(en + "\n" for _, en in PAIRS[:-1])))
    writer.start()
    result = score("--model", ckpt, "--src", src, "-r", fifo, "--device", "cpu")
    if writer.is_alive():  # the command never opened the pipe: let the writer go
        with open(fifo, "rb") as f:
            f.read()
    writer.join()
    assert_one_line_error(result, f"has {len(PAIRS) - 1}")
    assert result.stdout == ""


def test_missing_checkpoint(pair_files, tmp_path):
    src, ref = pair_files
    assert_one_line_error(score("--model", tmp_path / "nope.pt", "--src", src, "-r", ref, "--device", "cpu"), "nope.pt")


def test_missing_source(ckpt, pair_files, tmp_path):
    _, ref = pair_files
    assert_one_line_error(
        score("--model", ckpt, "--src", tmp_path / "nope.de", "-r", ref, "--device", "cpu"), "nope.de"
    )


def test_invalid_utf8_in_the_reference_names_file_and_line(ckpt, pair_files, tmp_path):
    src, _ = pair_files
    lines = [en.encode() for _, en in PAIRS]
    lines[3] = b"the \xfe dog"
    bad = write_lines(tmp_path / "bad.en", lines)
    assert_one_line_error(score("--model", ckpt, "--src", src, "-r", bad, "--device", "cpu"), f"{bad}:4:", "UTF-8")


def test_model_scores_one_reference_file(ckpt, pair_files):
    src, ref = pair_files
    assert_one_line_error(
        score("--model", ckpt, "--src", src, "-r", ref, "-r", ref, "--device", "cpu"), "one reference"
    )
