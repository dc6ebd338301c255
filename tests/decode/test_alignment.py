"""Word alignments from attention: word indices of subwords, hard Pharaoh links, the
most attended source subword, the terminal grid and the matplotlib check."""

from __future__ import annotations

import io
import re
import sys

import pytest
import torch

from nmt_cli.decode.alignment import (
    attention_table,
    check_matplotlib,
    hard_alignment,
    most_attended,
    word_indices,
)
from nmt_cli.errors import NmtError

PHARAOH = re.compile(r"^(\d+-\d+)( \d+-\d+)*$")


@pytest.mark.parametrize(
    "pieces, want",
    [
        ([], []),
        (["▁ein", "▁Mann", "es"], [0, 1, 1]),
        (["▁", "M", "a", "n", "n", "▁", "H", "u", "n", "d"], [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]),
        (["a", "b", "▁c"], [0, 0, 1]),  # a first piece without the word mark still is word 0
        (["▁x"], [0]),
    ],
)
def test_word_indices(pieces, want):
    assert word_indices(pieces) == want


def weights(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_hard_alignment_links_each_target_word_to_its_most_attended_source_word():
    src = ["▁ein", "▁Mann", "es"]  # words 0, 1, 1
    tgt = ["▁a", "▁man"]  # words 0, 1
    w = weights(
        [
            [0.7, 0.1, 0.1, 0.1],  # ▁a -> ▁ein
            [0.1, 0.2, 0.3, 0.4],  # ▁man -> es (word 1); the source EOS column (0.4) is ignored
            [0.0, 0.0, 0.0, 1.0],  # the EOS row is ignored
        ]
    )
    assert hard_alignment(w, src, tgt) == "0-0 1-1"


def test_hard_alignment_is_sorted_by_source_then_target_and_has_no_repeats():
    src = ["▁a", "▁b", "▁c"]
    tgt = ["▁x", "y", "▁z", "▁w"]  # words 0, 0, 1, 2
    w = weights(
        [
            [0.0, 0.0, 0.9, 0.1],  # x -> c (2-0)
            [0.0, 0.0, 0.8, 0.2],  # y (word 0) -> c again: no repeat
            [0.9, 0.1, 0.0, 0.0],  # z -> a (0-1)
            [0.1, 0.8, 0.1, 0.0],  # w -> b (1-2)
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    line = hard_alignment(w, src, tgt)
    assert line == "0-1 1-2 2-0"
    assert PHARAOH.match(line)


def test_hard_alignment_of_an_empty_side_is_empty():
    w = torch.full((3, 3), 1 / 3)
    assert hard_alignment(w, [], ["▁x"]) == ""
    assert hard_alignment(w, ["▁x"], []) == ""


def test_hard_alignment_ignores_rows_and_columns_beyond_the_pieces():
    """Padding columns of a batch and steps after the last subword never produce links."""
    src, tgt = ["▁a", "▁b"], ["▁x", "▁y"]
    w = torch.zeros(6, 7)
    w[0, 1] = w[1, 0] = 0.6
    w[:, 4:] = 5.0  # padding columns and later rows: huge, but out of range
    w[3:, :] = 9.0
    assert hard_alignment(w, src, tgt) == "0-1 1-0"


def test_hard_alignment_indices_stay_within_the_word_counts():
    gen = torch.Generator().manual_seed(0)
    src = ["▁a", "b", "▁c", "▁d", "e", "f"]  # 3 words
    tgt = ["▁x", "▁y", "z", "▁w"]  # 3 words
    for _ in range(50):
        w = torch.rand(len(tgt) + 1, len(src) + 1, generator=gen).softmax(-1)
        line = hard_alignment(w, src, tgt)
        assert PHARAOH.match(line)
        for link in line.split():
            i, j = map(int, link.split("-"))
            assert 0 <= i < 3 and 0 <= j < 3
        # every target word is linked (each of its subwords attends somewhere)
        assert {int(link.split("-")[1]) for link in line.split()} == {0, 1, 2}


def test_most_attended_excludes_the_source_eos():
    w = weights([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]])
    assert most_attended(w, 0, 2) == 1
    assert most_attended(w, 1, 2) == 0


def test_attention_table_has_a_row_per_target_piece_and_a_column_per_source_piece():
    from rich.console import Console

    src, tgt = ["▁ein", "▁Hund"], ["▁a", "▁dog"]
    w = weights([[0.9, 0.1, 0.0], [0.02, 0.68, 0.3], [0.0, 0.0, 1.0]])
    table = attention_table(w, src, tgt, "line 1: ein Hund")
    assert table.row_count == len(tgt) + 1  # EOS row
    assert len(table.columns) == len(src) + 2  # the label column and the EOS column
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(table)
    text = buffer.getvalue()
    assert "line 1: ein Hund" in text
    for piece in (*src, *tgt, "</s>"):
        assert piece in text
    assert "9" in text and "7" in text and "·" in text  # 0.9 -> 9, 0.68 -> 7, below 0.05 -> ·


def test_attention_table_of_a_hypothesis_without_eos():
    from rich.console import Console

    src, tgt = ["▁ein", "▁Hund"], ["▁a", "▁dog"]
    w = weights([[0.9, 0.1, 0.0], [0.02, 0.68, 0.3]])  # two steps, no EOS: what greedy and beam return at the limit
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(attention_table(w, src, tgt, "line 1"))
    assert "▁dog" in buffer.getvalue()


def test_check_matplotlib_is_a_one_line_error_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(NmtError, match="matplotlib") as info:
        check_matplotlib()
    assert "\n" not in str(info.value)
