"""The loss: label-smoothed cross-entropy, by row blocks, from a logits table
(token_losses) or fused with the output layer (projected_losses)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import PAD_ID

from nmt_cli.model import loss as loss_module
from nmt_cli.model.loss import Workspace, projected_losses, token_losses


def random_logits_and_targets(seed: int = 0, vocab: int = 11):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 7, vocab, generator=g) * 3
    target = torch.randint(1, vocab, (4, 7), generator=g)
    for row, n in enumerate([7, 3, 5, 1]):  # PAD after each row's real tokens
        target[row, n:] = PAD_ID
    return logits, target


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_token_losses_is_cross_entropy(eps):
    logits, target = random_logits_and_targets()
    loss, nll = token_losses(logits, target, eps)
    flat_logits, flat_target = logits.reshape(-1, logits.size(-1)), target.reshape(-1)
    want = F.cross_entropy(flat_logits, flat_target, ignore_index=PAD_ID, label_smoothing=eps, reduction="sum")
    want_nll = F.cross_entropy(flat_logits, flat_target, ignore_index=PAD_ID, reduction="sum")
    assert torch.allclose(loss, want, rtol=1e-5), (loss, want)
    assert torch.allclose(nll, want_nll, rtol=1e-5), (nll, want_nll)
    # and its gradient is cross-entropy's
    a = logits.clone().requires_grad_()
    token_losses(a, target, eps)[0].backward()
    b = logits.clone().requires_grad_()
    F.cross_entropy(
        b.reshape(-1, b.size(-1)), flat_target, ignore_index=PAD_ID, label_smoothing=eps, reduction="sum"
    ).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


@pytest.mark.parametrize("rows", [1, 5, 28, 100])
def test_the_loss_is_the_same_whatever_the_block_of_rows(monkeypatch, rows):
    """28 target positions in blocks of 1, 5 (a short last block), 28 and 100 rows."""
    logits, target = random_logits_and_targets()
    flat_logits, flat_target = logits.reshape(-1, logits.size(-1)), target.reshape(-1)
    monkeypatch.setattr(loss_module, "CHUNK_ROWS", rows)
    a = logits.clone().requires_grad_()
    loss, nll = token_losses(a, target, 0.1)
    loss.backward()
    b = flat_logits.clone().requires_grad_()
    want = F.cross_entropy(b, flat_target, ignore_index=PAD_ID, label_smoothing=0.1, reduction="sum")
    want.backward()
    want_nll = F.cross_entropy(flat_logits, flat_target, ignore_index=PAD_ID, reduction="sum")
    assert torch.allclose(loss, want, rtol=1e-5) and torch.allclose(nll, want_nll, rtol=1e-5)
    assert torch.allclose(a.grad.reshape(b.shape), b.grad, atol=1e-6)


def test_the_nll_sum_is_a_measurement_without_a_gradient():
    """The unsmoothed sum (the log-perplexity) is marked non-differentiable: it is measured,
    never trained on, so no gradient can flow through it, wrong or right."""
    logits, target = random_logits_and_targets()
    a = logits.clone().requires_grad_()
    loss, nll = token_losses(a, target, 0.1)
    assert loss.requires_grad and not nll.requires_grad
    want = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=PAD_ID, reduction="sum"
    )
    assert torch.allclose(nll, want, rtol=1e-5)
    with pytest.raises(RuntimeError, match="does not require grad"):
        nll.backward()


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_padding_positions_contribute_nothing(eps):
    logits, target = random_logits_and_targets()
    pad = target == PAD_ID
    garbage = logits.clone()
    garbage[pad] = torch.randn(int(pad.sum()), logits.size(-1)) * 1e4
    loss, nll = token_losses(logits, target, eps)
    loss2, nll2 = token_losses(garbage.requires_grad_(), target, eps)
    assert torch.allclose(loss, loss2) and torch.allclose(nll, nll2)
    loss2.backward()
    assert bool((garbage.grad[pad] == 0).all())
    assert bool((garbage.grad[~pad].abs().sum(-1) > 0).all())
    # all-PAD targets: zero loss
    zero, zero_nll = token_losses(logits, torch.full_like(target, PAD_ID), eps)
    assert zero.item() == 0 and zero_nll.item() == 0


def test_half_precision_logits_are_scored_in_fp32():
    logits, target = random_logits_and_targets()
    loss, nll = token_losses(logits.to(torch.bfloat16), target, 0.1)
    assert loss.dtype == torch.float32 and nll.dtype == torch.float32
    want = token_losses(logits.to(torch.bfloat16).float(), target, 0.1)[0]
    assert torch.allclose(loss, want)


def test_half_precision_logits_get_cross_entropys_gradient_in_their_dtype():
    logits, target = random_logits_and_targets()
    a = logits.to(torch.bfloat16).requires_grad_()
    token_losses(a, target, 0.1)[0].backward()
    b = logits.to(torch.bfloat16).float().requires_grad_()
    F.cross_entropy(
        b.reshape(-1, b.size(-1)), target.reshape(-1), ignore_index=PAD_ID, label_smoothing=0.1, reduction="sum"
    ).backward()
    assert a.grad.dtype == torch.bfloat16
    assert torch.allclose(a.grad.float(), b.grad, rtol=1e-2, atol=1e-5)  # bf16 rounds to 2^-8 relative


# ----------------------------------------------------------------------------- fused with the output layer


def output_layer_and_targets(seed: int = 0, vocab: int = 11, size: int = 6):
    """x (4, 7, size), the layer's W (vocab, size) and b (vocab,), targets with PAD."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 7, size, generator=g)
    weight, bias = torch.randn(vocab, size, generator=g), torch.randn(vocab, generator=g)
    _, target = random_logits_and_targets(seed, vocab)
    return x, weight, bias, target


def gradients_of(fn, *tensors):
    leaves = [t.clone().requires_grad_() for t in tensors]
    loss, nll = fn(*leaves)
    loss.backward()
    return loss.detach(), nll.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("rows", [1, 5, 28, 100])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_the_fused_loss_equals_the_loss_of_the_layers_scores(monkeypatch, rows, eps):
    """Value and gradients (x, W and b) against F.linear then F.cross_entropy."""
    monkeypatch.setattr(loss_module, "CHUNK_ROWS", rows)
    x, weight, bias, target = output_layer_and_targets()
    got = gradients_of(lambda *t: projected_losses(*t, target, eps, Workspace()), x, weight, bias)

    def reference(x, weight, bias):
        scores = F.linear(x, weight, bias).reshape(-1, weight.size(0))
        loss = F.cross_entropy(scores, target.reshape(-1), ignore_index=PAD_ID, label_smoothing=eps, reduction="sum")
        return loss, F.cross_entropy(scores, target.reshape(-1), ignore_index=PAD_ID, reduction="sum")

    want = gradients_of(reference, x, weight, bias)
    assert torch.allclose(got[0], want[0], rtol=1e-5) and torch.allclose(got[1], want[1], rtol=1e-5)
    for got_grad, want_grad in zip(got[2], want[2]):
        assert torch.allclose(got_grad, want_grad, rtol=1e-4, atol=1e-5)


def test_the_fused_loss_without_bias():
    x, weight, _, target = output_layer_and_targets()
    got = gradients_of(lambda *t: projected_losses(*t, None, target, 0.1, Workspace()), x, weight)
    want = gradients_of(lambda x, w: token_losses(F.linear(x, w), target, 0.1), x, weight)
    assert torch.allclose(got[0], want[0], rtol=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(got[2], want[2]))


def test_the_fused_loss_in_bf16_gives_fp32_parameters_their_gradient():
    """x in bf16 (autocast's dtype), fp32 parameters: the product and the table in bf16, the
    parameters' gradients in fp32, all close to the bf16 logits' loss."""
    x, weight, bias, target = output_layer_and_targets()
    xs, w, b = x.bfloat16().requires_grad_(), weight.clone().requires_grad_(), bias.clone().requires_grad_()
    loss, _ = projected_losses(xs, w, b, target, 0.1, Workspace())
    loss.backward()
    assert loss.dtype == torch.float32 and xs.grad.dtype == torch.bfloat16
    assert w.grad.dtype == torch.float32 and b.grad.dtype == torch.float32
    want = gradients_of(lambda *t: token_losses(F.linear(*t), target, 0.1), x, weight, bias)
    assert torch.allclose(loss, want[0], rtol=2e-2)
    for got_grad, want_grad in zip((xs.grad.float(), w.grad, b.grad), want[2]):
        assert torch.allclose(got_grad, want_grad, rtol=5e-2, atol=5e-2)


def test_one_workspace_serves_batches_of_any_size():
    """Smaller and larger tables than the last: each batch's loss is its own."""
    workspace = Workspace()
    for seed, (batch, length) in enumerate([(4, 7), (2, 3), (6, 9), (1, 1)]):
        x, weight, bias, _ = output_layer_and_targets(seed)
        x = torch.randn(batch, length, x.size(-1))
        target = torch.randint(1, weight.size(0), (batch, length))
        got = projected_losses(x, weight, bias, target, 0.1, workspace)[0]
        assert torch.allclose(got, token_losses(F.linear(x, weight, bias), target, 0.1)[0], rtol=1e-5)


def test_a_backward_pass_after_another_forward_pass_is_an_error():
    """The table is shared: an older graph's backward would read the newer scores."""
    x, weight, bias, target = output_layer_and_targets()
    workspace = Workspace()
    w = weight.clone().requires_grad_()
    first, _ = projected_losses(x, w, bias, target, 0.1, workspace)
    projected_losses(x, w, bias, target, 0.1, workspace)
    with pytest.raises(RuntimeError, match="overwritten"):
        first.backward()
    again, _ = projected_losses(x, w, bias, target, 0.1, workspace)
    again.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="already used"):
        again.backward()  # the table holds gradients now
