"""The text steps and pair filters of prep/filters.py, one by one."""

from __future__ import annotations

import pytest

from nmt_cli.config import DataConfig
from nmt_cli.prep.filters import TEXT_STEPS, PairFilter, normalize, text_steps


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("ﬁsh ﬂat", "fish flat"),  # ligatures
        ("ＡＢＣ１２３！", "ABC123!"),  # full-width forms
        ("x\u00a0y", "x y"),  # no-break space
        ("Ǆ ①", "DŽ 1"),  # compatibility characters
        ("schön", "schön"),  # already NFKC (also from decomposed input below)
        ("scho\u0308n", "schön"),
    ],
)
def test_nfkc(raw, expected):
    assert TEXT_STEPS["nfkc"](raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [("  a  b\t\tc \n", "a b c"), ("a\u3000b", "a b"), ("   ", ""), ("a b", "a b"), ("", "")],
)
def test_whitespace(raw, expected):
    assert TEXT_STEPS["whitespace"](raw) == expected


@pytest.mark.parametrize(
    "nfkc, whitespace, expected",
    [(True, True, "fi A b"), (True, False, " fi A  b"), (False, True, "ﬁ Ａ b"), (False, False, " ﬁ Ａ  b")],
)
def test_normalize_applies_only_switched_on_steps(nfkc, whitespace, expected):
    cfg = DataConfig(nfkc=nfkc, whitespace=whitespace)
    assert normalize(" ﬁ Ａ  b", cfg) == expected
    assert [name for name, _ in text_steps(cfg)] == [n for n, on in (("nfkc", nfkc), ("whitespace", whitespace)) if on]


def test_clean_counts_lines_each_step_changed():
    f = PairFilter(DataConfig())
    assert f.clean("ﬁsh") == "fish"
    assert f.clean(" a  b ") == "a b"
    assert f.clean("ﬁ  x") == "fi x"
    assert f.clean("plain") == "plain"
    assert f.changed == {"nfkc": 2, "whitespace": 2}


def test_clean_with_steps_off_changes_and_counts_nothing():
    f = PairFilter(DataConfig(nfkc=False, whitespace=False))
    assert f.clean(" ﬁ  x ") == " ﬁ  x "
    assert sum(f.changed.values()) == 0


@pytest.mark.parametrize("pair", [("", "b"), ("a", ""), ("", "")])
def test_empty_side_dropped_and_counted(pair):
    f = PairFilter(DataConfig())
    assert f.keep_text(*pair) is False
    assert f.dropped == {"empty": 1, "duplicate": 0, "too_long": 0, "ratio": 0}


@pytest.mark.parametrize("pair", [("", "b"), ("", "")])
def test_keep_empty(pair):
    f = PairFilter(DataConfig(drop_empty=False))
    assert f.keep_text(*pair) is True
    assert f.dropped["empty"] == 0


def test_dedup_keeps_first_and_counts_repeats():
    f = PairFilter(DataConfig(dedup=True))
    kept = [f.keep_text(s, t) for s, t in [("a", "x"), ("a", "y"), ("a", "x"), ("b", "x"), ("a", "x"), ("a", "y")]]
    assert kept == [True, True, False, True, False, False]
    assert f.dropped["duplicate"] == 3


def test_no_dedup_keeps_repeats():
    f = PairFilter(DataConfig())
    assert all(f.keep_text("a", "x") for _ in range(3))
    assert f.dropped["duplicate"] == 0


def test_dedup_tells_pairs_apart_that_join_to_the_same_text():
    f = PairFilter(DataConfig(dedup=True, whitespace=False))
    assert f.keep_text("a\tb", "c") is True
    assert f.keep_text("a", "b\tc") is True


@pytest.mark.parametrize(
    "lengths, kept, counter",
    [
        ((10, 10), True, None),
        ((10, 11), False, "too_long"),  # max_len 10, either side
        ((11, 10), False, "too_long"),
        ((3, 9), True, None),  # ratio exactly 3 is kept
        ((3, 10), False, "ratio"),
        ((10, 3), False, "ratio"),
        ((0, 3), True, None),  # an empty side (kept by --keep-empty) is not ratio-filtered
        ((0, 9), True, None),
        ((0, 0), True, None),
    ],
)
def test_length_and_ratio_filters(lengths, kept, counter):
    f = PairFilter(DataConfig(max_len=10, max_ratio=3.0))
    assert f.keep_lengths(*lengths) is kept
    assert {k: v for k, v in f.dropped.items() if v} == ({counter: 1} if counter else {})


def test_too_long_is_counted_before_ratio():
    f = PairFilter(DataConfig(max_len=10, max_ratio=3.0))
    assert f.keep_lengths(1, 50) is False
    assert f.dropped["too_long"] == 1 and f.dropped["ratio"] == 0


@pytest.mark.parametrize("lengths", [(500, 1), (1, 500), (200, 200)])
def test_length_filters_off(lengths):
    f = PairFilter(DataConfig(max_len=0, max_ratio=0))
    assert f.keep_lengths(*lengths) is True
    assert sum(f.dropped.values()) == 0
