"""Rounded row counts: few product shapes, the same results."""

import pytest
import torch
from torch import nn

from nmt_cli.model.encoder import Packing
from nmt_cli.model.shapes import STEP_ROWS, TOKEN_ROWS, over_rounded_rows, padded_rows, rounded_rows, token_rows


@pytest.mark.parametrize("n, rows", [(1, 8), (8, 8), (9, 16), (256, 256), (257, 512), (3001, 3072), (4096, 4096)])
def test_token_rows_round_up_to_step_rows_then_token_rows(n, rows):
    assert token_rows(n) == rows
    assert token_rows(n) % (STEP_ROWS if n <= TOKEN_ROWS else TOKEN_ROWS) == 0


def test_rounded_rows_never_exceed_the_limit():
    assert rounded_rows(3, 100) == 8
    assert rounded_rows(97, 100) == 100


def test_padded_rows_adds_rows_of_the_value_below():
    x = torch.arange(6).view(3, 2)
    padded = padded_rows(x, 5, value=-1)
    assert padded.shape == (5, 2)
    assert torch.equal(padded[:3], x) and (padded[3:] == -1).all()
    assert padded_rows(x, 2) is x


def test_a_product_over_rounded_rows_equals_the_plain_product_and_its_gradient():
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    x = torch.randn(7, 43, 5, requires_grad=True)  # 301 rows: run over 512
    seen = []

    def product(rows):
        seen.append(rows.size(0))
        return layer(rows)

    out = over_rounded_rows(product, x)
    assert seen == [512] and out.shape == (7, 43, 3)
    torch.testing.assert_close(out, layer(x))
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    (expected,) = torch.autograd.grad(layer(x).square().sum(), x)
    torch.testing.assert_close(grad, expected)


def test_the_packed_input_product_reads_a_multiple_of_token_rows():
    lens = torch.tensor([40, 31, 30, 7])  # 108 tokens, sorted
    packing = Packing.of(lens, 40, dirs=2)
    assert packing.index.shape == (2, 108)
    assert packing.gather.shape == (2, token_rows(108))
    assert torch.equal(packing.gather[:, :108], packing.index)
