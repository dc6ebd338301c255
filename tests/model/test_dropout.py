"""Dropout: identity in evaluation; in training, units are zeroed at rate p, the rest
scaled by 1/(1-p); the gradient goes through the kept units alone."""

from __future__ import annotations

import pytest
import torch

from nmt_cli.model.dropout import Dropout


def test_evaluation_and_zero_rate_are_the_identity():
    x = torch.randn(5, 7)
    assert Dropout(0.3).eval()(x) is x
    assert Dropout(0.0).train()(x) is x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_training_zeroes_at_rate_p_and_scales_the_rest(dtype):
    torch.manual_seed(0)
    x = torch.ones(200, 500, dtype=dtype)
    y = Dropout(0.2).train()(x)
    assert y.dtype == dtype and y.shape == x.shape
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.8) < 0.01
    assert torch.allclose(y[kept].float(), torch.full((int(kept.sum()),), 1.25))


def test_the_gradient_flows_through_the_kept_units_alone():
    torch.manual_seed(1)
    x = torch.randn(30, 40, requires_grad=True)
    y = Dropout(0.5).train()(x)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.equal(x.grad, kept.float() * 2.0)


def test_the_mask_follows_the_seed():
    x = torch.randn(10, 10)
    torch.manual_seed(3)
    a = Dropout(0.4).train()(x)
    torch.manual_seed(3)
    assert torch.equal(a, Dropout(0.4).train()(x))


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_a_rate_outside_0_1_is_refused(p):
    with pytest.raises(ValueError):
        Dropout(p)


def test_whole_vectors_are_dropped_together_at_rate_p():
    torch.manual_seed(2)
    x = torch.ones(100, 40, 16)  # (batch, len, emb)
    y = Dropout(0.25, whole=True).train()(x)
    kept = y[..., 0] != 0  # (batch, len)
    assert torch.equal(y, kept.unsqueeze(-1).float().expand_as(y) / 0.75)  # a word is all kept or all zero
    assert abs(kept.float().mean().item() - 0.75) < 0.02
    assert Dropout(0.25, whole=True).eval()(x) is x
