"""`nmt score` with metrics: BLEU, chrF and TER equal to sacrebleu's own command line,
signatures, JSON/TSV/text layouts, confidence intervals, paired significance tests,
sentence scores and worst lines, stdin and gzip input, and one-line errors for bad input.

All text is generated from conftest's word list with fixed seeds (a few dozen lines), so
every run scores the same bytes; sacrebleu's command line runs in a subprocess.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LEXICON, assert_ok, assert_one_line_error, write_lines
from sacrebleu.metrics import BLEU, CHRF
from typer.testing import CliRunner

from nmt_cli.cli import app

METRICS = ("bleu", "chrf", "ter")
LINES = 24
EMPTY_BOTH, EMPTY_HYP = 4, 9  # 0-based: an empty line in every file; an empty hypothesis only

# Punctuation that the tokenizers treat differently: 13a splits ASCII punctuation, intl
# also Unicode punctuation and symbols, none nothing.
DECORATIONS = [
    lambda w: w + ",",
    lambda w: f"«{w}»",
    lambda w: w + "…",
    lambda w: w + "'s",
    lambda w: f"({w})",
    lambda w: w + " – 3,5 €",
    lambda w: w + "!",
]


def _reference_lines(rng: random.Random) -> tuple[list[str], list[str]]:
    """(German source, English reference): cased, punctuated sentences of 4 to 12 words."""
    sources, references = [], []
    for i in range(LINES):
        if i == EMPTY_BOTH:
            sources.append("")
            references.append("")
            continue
        entries = rng.choices(LEXICON, k=rng.randint(4, 12))
        de = [d for d, _ in entries]
        en = [e for _, e in entries]
        for _ in range(2):
            k = rng.randrange(len(en))
            en[k] = rng.choice(DECORATIONS)(en[k])
        en[0] = en[0].capitalize()
        sources.append(" ".join(de) + ".")
        references.append(" ".join(en) + ".")
    return sources, references


def _perturbed(lines: list[str], rng: random.Random, rate: float) -> list[str]:
    """Each non-empty line with words dropped, replaced, re-cased or swapped at ``rate``."""
    out = []
    for line in lines:
        words = line.split()
        if not words:
            out.append(line)
            continue
        new = []
        for w in words:
            r = rng.random()
            if r < rate / 3:
                continue  # dropped
            if r < 2 * rate / 3:
                w = rng.choice(LEXICON)[1]  # replaced
            elif r < rate:
                w = w.upper() if rng.random() < 0.3 else w.swapcase()  # re-cased
            new.append(w)
        if len(new) > 2 and rng.random() < rate:
            k = rng.randrange(len(new) - 1)
            new[k], new[k + 1] = new[k + 1], new[k]
        out.append(" ".join(new))
    return out


class Files:
    def __init__(self, root: Path):
        rng = random.Random(11)
        src, ref = _reference_lines(rng)
        ref2 = _perturbed(ref, rng, 0.15)
        hyp = _perturbed(ref, rng, 0.5)
        better = _perturbed(ref, rng, 0.12)
        hyp[EMPTY_HYP] = ""
        self.src_lines, self.ref_lines, self.hyp_lines = src, ref, hyp
        self.src = write_lines(root / "src.de", src)
        self.ref = write_lines(root / "ref.en", ref)
        self.ref2 = write_lines(root / "ref2.en", ref2)
        self.hyp = write_lines(root / "hyp.en", hyp)
        self.better = write_lines(root / "better.en", better)
        self.hyp_gz = write_lines(root / "hyp.en", hyp, gz=True)
        self.ref_gz = write_lines(root / "ref.en", ref, gz=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    return Files(tmp_path_factory.mktemp("score"))


def score(*args, input: bytes | str | None = None):
    """``nmt score ARGS`` in this process."""
    return CliRunner().invoke(app, ["score", *map(str, args)], input=input)


def refs_args(*refs) -> list[str]:
    return [x for r in refs for x in ("-r", str(r))]


def nmt_json(refs, hyp, *flags) -> dict:
    result = score(*refs_args(*refs), hyp, "--metrics", ",".join(METRICS), "-f", "json", *flags)
    assert_ok(result)
    return json.loads(result.stdout)


def sacrebleu(refs, hyp, *flags, score_only: bool = False):
    """sacrebleu's own command line on the same files, 4 decimals: a list per metric
    (bleu, chrf, ter) of dicts (``-f json``) or of plain scores (``-b``)."""
    argv = [sys.executable, "-m", "sacrebleu", *map(str, refs), "-i", str(hyp), "-m", *METRICS, "-w", "4"]
    argv += ["-b"] if score_only else ["-f", "json"]
    done = subprocess.run([*argv, *flags], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def same(a: float, b: float) -> bool:
    """Equal at the 4 decimals both print."""
    return f"{a:.4f}" == f"{b:.4f}"


# --------------------------------------------------------------------------- sacrebleu


def test_default_bleu_and_chrf_equal_sacrebleus_command_line(files):
    """`sacrebleu REF -i HYP -m bleu chrf ter -b` against `nmt score ... -f json`."""
    ours = nmt_json([files.ref], files.hyp)
    theirs = sacrebleu([files.ref], files.hyp, score_only=True)
    for key, value in zip(METRICS[:2], theirs[:2]):
        assert same(ours[key]["score"], value), (key, ours[key]["score"], value)


def test_default_ter_equals_sacrebleus_command_line(files):
    ours = nmt_json([files.ref], files.hyp)
    theirs = sacrebleu([files.ref], files.hyp)
    assert same(ours["ter"]["score"], theirs[2]["score"]), (ours["ter"], theirs[2])
    assert ours["ter"]["signature"] == theirs[2]["signature"]


# nmt flags -> the sacrebleu flags that mean the same. nmt's --lowercase covers every
# metric; sacrebleu's --lowercase is BLEU's only (chrF has --chrf-lowercase, TER is
# case-insensitive by default). TER is compared where nmt lowercases; its default case
# handling is test_default_ter_equals_sacrebleus_command_line's.
VARIANTS = {
    "default": ([], []),
    "lowercase": (["--lowercase"], ["--lowercase", "--chrf-lowercase"]),
    "tokenize-none": (["--tokenize", "none"], ["--tokenize", "none"]),
    "tokenize-intl": (["--tokenize", "intl"], ["--tokenize", "intl"]),
    "chrf++": (["--chrf-word-order", "2"], ["--chrf-word-order", "2"]),
    "two-references": ([], []),
    "two-references-lowercase-intl": (
        ["-lc", "--tokenize", "intl"],
        ["--lowercase", "--chrf-lowercase", "--tokenize", "intl"],
    ),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_scores_and_signatures_equal_sacrebleus_command_line(files, variant):
    ours_flags, their_flags = VARIANTS[variant]
    refs = [files.ref, files.ref2] if variant.startswith("two-references") else [files.ref]
    ours = nmt_json(refs, files.hyp, *ours_flags)
    theirs = sacrebleu(refs, files.hyp, *their_flags)
    compared = METRICS if any(f in ("--lowercase", "-lc") for f in ours_flags) else METRICS[:2]
    for key, entry in zip(METRICS, theirs):
        if key not in compared:
            continue
        assert same(ours[key]["score"], entry["score"]), (variant, key, ours[key], entry)
        assert ours[key]["signature"] == entry["signature"], (variant, key)
    if len(refs) == 2:
        assert all(ours[key]["signature"].startswith("nrefs:2|") for key in METRICS)


def test_the_variants_change_the_scores(files):
    """The data is such that every flag compared above matters (so each comparison tests it)."""
    base = nmt_json([files.ref], files.hyp)
    for flags, key in [
        (["--lowercase"], "bleu"),
        (["--lowercase"], "chrf"),
        (["--tokenize", "none"], "bleu"),
        (["--tokenize", "intl"], "bleu"),
        (["--chrf-word-order", "2"], "chrf"),
        (["-r", files.ref2], "bleu"),
    ]:
        other = nmt_json([files.ref], files.hyp, *flags)
        assert other[key]["score"] != base[key]["score"], (flags, key)


# --------------------------------------------------------------------------- layouts


def test_json_for_one_system_is_metric_to_score_and_signature(files):
    data = nmt_json([files.ref], files.hyp)
    assert list(data) == list(METRICS)
    for key in METRICS:
        assert set(data[key]) == {"score", "signature"}
        assert isinstance(data[key]["score"], float) and 0 <= data[key]["score"] <= 100
        assert data[key]["signature"] and "version:" in data[key]["signature"]


def test_json_for_several_systems_is_keyed_by_path(files):
    result = score("-r", files.ref, files.hyp, files.better, "-f", "json")
    assert_ok(result)
    data = json.loads(result.stdout)
    assert list(data) == [str(files.hyp), str(files.better)]
    for path, hyp in [(files.hyp, files.hyp), (files.better, files.better)]:
        alone = nmt_json([files.ref], hyp)
        assert set(data[str(path)]) == {"bleu", "chrf"}
        for key in ("bleu", "chrf"):
            assert data[str(path)][key]["score"] == alone[key]["score"]
            assert "version:" in data[str(path)][key]["signature"]
    assert data[str(files.better)]["bleu"]["score"] > data[str(files.hyp)]["bleu"]["score"]


def test_confidence_adds_ci95(files):
    data = nmt_json([files.ref], files.hyp, "--confidence", "--samples", "100")
    plain = nmt_json([files.ref], files.hyp)
    for key in METRICS:
        assert set(data[key]) == {"score", "signature", "ci95"}
        assert 0 < data[key]["ci95"] < 100
        assert data[key]["score"] == plain[key]["score"]
        assert "bs:100" in data[key]["signature"] and "version:" in data[key]["signature"]


def test_text_format_prints_a_table_and_signature_lines(files):
    result = score("-r", files.ref, files.hyp, "--metrics", "bleu,chrf,ter")
    assert_ok(result)
    data = nmt_json([files.ref], files.hyp)
    lines = result.stdout.splitlines()
    for name, key in [("BLEU", "bleu"), ("chrF", "chrf"), ("TER", "ter")]:
        assert f"{name} signature: {data[key]['signature']}" in lines
        assert f"{data[key]['score']:.2f}" in result.stdout
    assert result.stderr == ""


def test_tsv_has_a_signature_column(files):
    result = score("-r", files.ref, files.hyp, "--metrics", "bleu,chrf,ter", "-f", "tsv")
    assert_ok(result)
    data = nmt_json([files.ref], files.hyp)
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    header = rows[0]
    assert header[0] == "system" and "signature" in header and "score" in header and "metric" in header
    assert len(rows) == 1 + len(METRICS)
    col = {name: header.index(name) for name in ("metric", "score", "signature")}
    for row in rows[1:]:
        assert len(row) == len(header)
        key = row[col["metric"]]
        assert row[col["signature"]] == data[key]["signature"]
        assert float(row[col["score"]]) == pytest.approx(data[key]["score"], abs=1e-4)


# --------------------------------------------------------------------------- significance


@pytest.mark.parametrize("test", ["--paired-bs", "--paired-ar"])
def test_paired_test_gives_the_second_system_a_p_value(files, test):
    result = score(
        "-r", files.ref, files.hyp, files.better, test, "--samples", "200", "--metrics", "bleu,chrf,ter", "-f", "json"
    )
    assert_ok(result)
    data = json.loads(result.stdout)
    assert list(data) == [str(files.hyp), str(files.better)]
    baseline, system = data[str(files.hyp)], data[str(files.better)]
    alone = nmt_json([files.ref], files.better)
    for key in METRICS:
        assert "p_value" not in baseline[key]
        assert 0 <= system[key]["p_value"] <= 1
        assert system[key]["p_value"] < 0.05  # a much better system
        assert system[key]["score"] == alone[key]["score"]
        assert "version:" in system[key]["signature"]
    assert f"{test[-2:]}:200" in system["bleu"]["signature"]  # bs:200 or ar:200


def test_paired_ar_p_values_equal_sacrebleus_command_line(files):
    """Same seed, same trials: the p-values sacrebleu's --paired-ar prints (-f json)."""
    result = score(
        "-r",
        files.ref,
        files.hyp,
        files.better,
        "--paired-ar",
        "--samples",
        "200",
        "--lowercase",
        "--metrics",
        ",".join(METRICS),
        "-f",
        "json",
    )
    assert_ok(result)
    ours = json.loads(result.stdout)[str(files.better)]
    argv = [
        sys.executable,
        "-m",
        "sacrebleu",
        str(files.ref),
        "-i",
        str(files.hyp),
        str(files.better),
        "-m",
        *METRICS,
        "--paired-ar",
        "--paired-ar-n",
        "200",
        "--lowercase",
        "--chrf-lowercase",
        "-f",
        "json",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    baseline, system = json.loads(done.stdout)
    for key, name in zip(METRICS, ("BLEU", "chrF2", "TER")):
        assert baseline[name]["p_value"] is None
        assert same(ours[key]["p_value"], system[name]["p_value"]), (key, ours[key], system[name])
        assert same(ours[key]["score"], system[name]["score"])


def test_paired_test_in_the_text_table(files):
    result = score("-r", files.ref, files.hyp, files.better, "--paired-bs", "--samples", "200")
    assert_ok(result)
    assert "(baseline)" in result.stdout and "p = " in result.stdout
    assert "BLEU signature: " in result.stdout


def test_paired_test_needs_two_systems(files):
    assert_one_line_error(score("-r", files.ref, files.hyp, "--paired-bs"), "at least two")
    assert_one_line_error(score("-r", files.ref, files.hyp, "--paired-ar", "--samples", "10"), "at least two")


def test_paired_bs_and_paired_ar_exclude_each_other(files):
    assert_one_line_error(
        score("-r", files.ref, files.hyp, files.better, "--paired-bs", "--paired-ar"), "--paired-bs", "--paired-ar"
    )


# --------------------------------------------------------------------------- sentences


def _sentence_expected(files: Files) -> list[tuple[float, float]]:
    bleu, chrf = BLEU(effective_order=True), CHRF()
    return [
        (bleu.sentence_score(h, [r]).score, chrf.sentence_score(h, [r]).score)
        for h, r in zip(files.hyp_lines, files.ref_lines)
    ]


def test_sentence_gives_one_tsv_line_per_hypothesis(files):
    result = score("-r", files.ref, files.hyp, "--sentence")
    assert_ok(result)
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(rows) == LINES  # empty lines included
    for i, (row, (bleu, chrf)) in enumerate(zip(rows, _sentence_expected(files)), 1):
        assert len(row) == 3
        assert int(row[0]) == i
        assert float(row[1]) == pytest.approx(bleu, abs=0.005)
        assert float(row[2]) == pytest.approx(chrf, abs=0.005)
    assert float(rows[EMPTY_HYP][1]) == 0.0


def test_sentence_json_lines(files):
    result = score("-r", files.ref, files.hyp, "--sentence", "-f", "json")
    assert_ok(result)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["line"] for r in rows] == list(range(1, LINES + 1))
    for row, (bleu, chrf) in zip(rows, _sentence_expected(files)):
        assert row["bleu"] == pytest.approx(bleu) and row["chrf"] == pytest.approx(chrf)


@pytest.mark.parametrize("k", [1, 5, LINES + 3])
def test_worst_lists_k_lines_lowest_bleu_first_with_source(files, k):
    result = score("-r", files.ref, files.hyp, "--worst", k, "--src", files.src, "-f", "json")
    assert_ok(result)
    picked = json.loads(result.stdout)
    assert len(picked) == min(k, LINES)
    expected = _sentence_expected(files)
    bleus = [row["bleu"] for row in picked]
    assert bleus == sorted(bleus)
    assert bleus[0] == pytest.approx(min(b for b, _ in expected))
    if k < LINES:  # nothing left out scores lower than what was listed
        listed = {row["line"] for row in picked}
        assert all(expected[i][0] >= bleus[-1] - 1e-9 for i in range(LINES) if i + 1 not in listed)
    for row in picked:
        i = row["line"] - 1
        assert row["source"] == files.src_lines[i]
        assert row["hypothesis"] == files.hyp_lines[i]
        assert row["reference"] == files.ref_lines[i]
        assert row["bleu"] == pytest.approx(expected[i][0])


def test_worst_tsv_without_and_with_source(files):
    result = score("-r", files.ref, files.hyp, "--worst", "3", "-f", "tsv")
    assert_ok(result)
    lines = result.stdout.splitlines()
    assert lines[0].split("\t") == ["line", "bleu", "chrf", "hypothesis", "reference"]
    assert len(lines) == 4
    result = score("-r", files.ref, files.hyp, "--worst", "3", "--src", files.src, "-f", "tsv")
    assert_ok(result)
    lines = result.stdout.splitlines()
    assert lines[0].split("\t") == ["line", "bleu", "chrf", "source", "hypothesis", "reference"]
    first = lines[1].split("\t")
    assert first[3] == files.src_lines[int(first[0]) - 1]


def test_worst_text_table(files):
    result = score("-r", files.ref, files.hyp, "--worst", "2", "--src", files.src)
    assert_ok(result)
    assert "lowest sentence-BLEU" in result.stdout and "source" in result.stdout


def test_worst_src_with_other_line_count_is_an_error(files, tmp_path):
    src = write_lines(tmp_path / "short.de", files.src_lines[:-1])
    assert_one_line_error(score("-r", files.ref, files.hyp, "--worst", "2", "--src", src), str(LINES - 1), str(LINES))


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("how", ["dash", "no-positional"])
def test_hypotheses_from_stdin_score_like_the_file(files, how):
    expected = nmt_json([files.ref], files.hyp)
    args = ["-r", files.ref, *(["-"] if how == "dash" else []), "--metrics", ",".join(METRICS), "-f", "json"]
    result = score(*args, input=files.hyp.read_bytes())
    assert_ok(result)
    assert json.loads(result.stdout) == expected


def test_stdin_sentence_scores_like_the_file(files):
    expected = score("-r", files.ref, files.hyp, "--sentence")
    result = score("-r", files.ref, "--sentence", input=files.hyp.read_bytes())
    assert_ok(result)
    assert result.stdout == expected.stdout


def test_gzipped_hypothesis_and_reference_score_like_plain_files(files):
    expected = nmt_json([files.ref], files.hyp)
    assert nmt_json([files.ref], files.hyp_gz) == expected
    assert nmt_json([files.ref_gz], files.hyp_gz) == expected


def test_empty_lines_are_scored(tmp_path):
    """Empty lines anywhere, even a file of empty lines, are lines like any other."""
    ref = write_lines(tmp_path / "ref", ["a dog runs on the green meadow", "", "the cat sits under the big tree", ""])
    hyp = write_lines(tmp_path / "hyp", ["a dog runs on the green meadow", "", "", "the cat sits"])
    data = nmt_json([ref], hyp)
    theirs = sacrebleu([ref], hyp, "--lowercase", "--chrf-lowercase")
    ours_lc = nmt_json([ref], hyp, "--lowercase")
    for key, entry in zip(METRICS, theirs):
        assert same(ours_lc[key]["score"], entry["score"]), key
    assert 0 < data["bleu"]["score"] < 100
    result = score("-r", ref, hyp, "--sentence")
    assert_ok(result)
    assert len(result.stdout.splitlines()) == 4
    blank = write_lines(tmp_path / "blank", ["", "", "", ""])
    assert_ok(score("-r", ref, blank))


def test_crlf_lines_score_like_lf_lines(files, tmp_path):
    crlf = write_lines(tmp_path / "hyp.crlf", files.hyp_lines, newline="\r\n")
    assert nmt_json([files.ref], crlf) == nmt_json([files.ref], files.hyp)


# --------------------------------------------------------------------------- errors


def test_line_count_mismatch_gives_both_counts(files, tmp_path):
    short = write_lines(tmp_path / "short.en", files.hyp_lines[:-3])
    line = assert_one_line_error(score("-r", files.ref, short), str(short), str(files.ref))
    assert f"has {LINES - 3} lines" in line and f"has {LINES}" in line


def test_line_count_mismatch_on_stdin(files):
    line = assert_one_line_error(score("-r", files.ref, "-", input="one\ntwo\n"), "<stdin>")
    assert "has 2 lines" in line and f"has {LINES}" in line


def test_references_of_different_lengths(files, tmp_path):
    short = write_lines(tmp_path / "short.en", files.ref_lines[:-1])
    assert_one_line_error(score("-r", files.ref, "-r", short, files.hyp), str(LINES), str(LINES - 1))


def test_empty_hypothesis_file(files, tmp_path):
    empty = tmp_path / "empty.en"
    empty.write_bytes(b"")
    assert_one_line_error(score("-r", files.ref, empty), str(empty), "empty")


def test_empty_stdin(files):
    assert_one_line_error(score("-r", files.ref, input=b""), "<stdin>", "empty")


def test_missing_hypothesis_file(files, tmp_path):
    missing = tmp_path / "nope.en"
    assert_one_line_error(score("-r", files.ref, missing), str(missing), "no such file")


def test_missing_reference_file(files, tmp_path):
    missing = tmp_path / "nope.en"
    assert_one_line_error(score("-r", missing, files.hyp), str(missing), "no such file")


def test_hypothesis_directory(files, tmp_path):
    assert_one_line_error(score("-r", files.ref, tmp_path), str(tmp_path), "directory")


def test_invalid_utf8_in_a_hypothesis_names_file_and_line(files, tmp_path):
    lines = [line.encode() for line in files.hyp_lines]
    lines[6] = b"a dog \xff runs"
    bad = write_lines(tmp_path / "bad.en", lines)
    assert_one_line_error(score("-r", files.ref, bad), f"{bad}:7:", "UTF-8")
    assert_one_line_error(score("-r", files.ref, input=b"\n".join(lines) + b"\n"), "<stdin>:7:", "UTF-8")
    bad_gz = write_lines(tmp_path / "bad.en", lines, gz=True)
    assert_one_line_error(score("-r", files.ref, bad_gz), f"{bad_gz}:7:", "UTF-8")


def test_invalid_utf8_in_a_reference_names_file_and_line(files, tmp_path):
    lines = [line.encode() for line in files.ref_lines]
    lines[2] = b"\xc3("
    bad = write_lines(tmp_path / "bad.en", lines)
    assert_one_line_error(score("-r", bad, files.hyp), f"{bad}:3:", "UTF-8")


@pytest.mark.parametrize("metrics", ["meteor", "bleu,rouge", ",", ""])
def test_unknown_metric(files, metrics):
    assert_one_line_error(score("-r", files.ref, files.hyp, "--metrics", metrics), "--metrics")


def test_unknown_tokenizer(files):
    assert_one_line_error(score("-r", files.ref, files.hyp, "--tokenize", "moses"), "--tokenize", "moses", "13a")


def test_sentence_scores_one_system_at_a_time(files):
    assert_one_line_error(score("-r", files.ref, files.hyp, files.better, "--sentence"), "one hypothesis file")


def test_truncated_gzip_hypothesis(files, tmp_path):
    truncated = tmp_path / "cut.en.gz"
    truncated.write_bytes(files.hyp_gz.read_bytes()[:40])
    assert_one_line_error(score("-r", files.ref, truncated), str(truncated), "cannot read")


@pytest.mark.parametrize(
    "args, fragment",
    [
        ([], "--reference"),  # no -r at all
        (["-r", "REF", "-f", "xml"], "--format"),
        (["-r", "REF", "--worst", "-1"], "--worst"),
    ],
)
def test_usage_errors_of_the_real_command_are_one_line(files, args, fragment):
    """``python -m nmt_cli score``: the parser's own errors are one line and exit 2 too."""
    argv = [str(files.ref) if a == "REF" else a for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "nmt_cli", "score", *argv, str(files.hyp)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nmt: error: ") and fragment in lines[0], done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
