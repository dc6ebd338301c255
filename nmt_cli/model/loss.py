"""The training loss: label-smoothed cross-entropy over the target vocabulary.

With z the scores of one target token, p = softmax(z), V the vocabulary, y the reference
and ε the label smoothing:

    loss = (1 - ε) · (-log p_y) + ε · mean_v(-log p_v)
    ∂loss/∂z = p - (1 - ε) onehot(y) - ε / V

The unsmoothed part, -log p_y, is returned too: its mean is the log-perplexity. Both
are sums over the non-PAD targets (PAD gets zero loss and zero gradient); the training
loop divides by the number of target tokens.

Both passes walk the (tokens, vocab) table in blocks of ``CHUNK_ROWS`` rows, each
widened to fp32 in a block small enough to stay in the CPU's cache: whole-table fp32
temporaries (a 4,000-token batch of an 8k vocabulary: 128 MB each) cost a page fault
per 4 kB every time they are allocated, and raise peak memory.

Two entry points:

* :func:`token_losses` scores a table of logits that the caller holds;
* :func:`projected_losses` fuses the output layer z = W x + b into the loss. The table
  of scores lives in a :class:`Workspace` reused from batch to batch (no page faults
  for a fresh 60 MB table at every step), and the backward pass overwrites the scores
  with their gradient in place, so one table serves both passes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nmt_cli.model.shapes import padded_rows, token_rows
from nmt_cli.vocab import PAD

CHUNK_ROWS = 128  # 128 x 8k vocabulary x 4 bytes: a 4 MB fp32 block


def token_losses(logits: Tensor, target: Tensor, label_smoothing: float) -> tuple[Tensor, Tensor]:
    """(smoothed loss sum, negative log-likelihood sum) over non-PAD targets.

    logits (..., vocab), target (...).
    """
    flat = logits.reshape(-1, logits.size(-1))
    return SmoothedCrossEntropy.apply(flat, target.reshape(-1), label_smoothing)


def projected_losses(
    x: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, label_smoothing: float, workspace: Workspace
) -> tuple[Tensor, Tensor]:
    """:func:`token_losses` of the scores ``x Wᵀ + b`` without storing them.

    x (..., in) in the dtype the product should run in (autocast's, when it is on);
    weight (vocab, in) and bias (vocab,) the output layer's parameters, in their own dtype.
    """
    flat, target = x.reshape(-1, x.size(-1)), target.reshape(-1)  # (tokens, in), (tokens,)
    rows = token_rows(flat.size(0))  # PAD rows added: few product shapes (shapes.py), no loss
    return ProjectedCrossEntropy.apply(
        padded_rows(flat, rows), weight, bias, padded_rows(target, rows, PAD), label_smoothing, workspace
    )


def _forward_blocks(logits: Tensor, target: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Sums (smoothed loss, nll) over the non-PAD rows of logits (tokens, vocab)."""
    nll = logits.new_empty(logits.size(0), dtype=torch.float32)  # (tokens,)
    smooth = torch.empty_like(nll)  # -mean_v log p_v
    for rows in _blocks(logits):
        logp = torch.log_softmax(logits[rows], dim=-1, dtype=torch.float32)  # (block, vocab)
        nll[rows] = logp.gather(1, target[rows].unsqueeze(1)).squeeze(1).neg()
        smooth[rows] = logp.mean(dim=-1).neg()
    loss = (1 - eps) * nll + eps * smooth if eps else nll
    real = (target != PAD).float()
    return (loss * real).sum(), (nll * real).sum()


def _backward_blocks(
    logits: Tensor, target: Tensor, weight: Tensor, eps: float, out: Tensor, column_sums: Tensor | None = None
) -> None:
    """Writes ∂loss/∂z, scaled per row by ``weight`` (tokens,), into ``out`` (which may be
    ``logits`` itself: each block is read before it is written); adds its sum over rows
    to ``column_sums`` (vocab,), fp32, when given."""
    reference = None
    for rows in _blocks(logits):
        p = torch.softmax(logits[rows], dim=-1, dtype=torch.float32)  # (block, vocab)
        if eps:
            p.sub_(eps / p.size(1))
        if reference is None or reference.size(0) < p.size(0):
            reference = p.new_full((p.size(0), 1), eps - 1.0)  # -(1 - ε) at y
        p.scatter_add_(1, target[rows].unsqueeze(1), reference[: p.size(0)])
        out[rows] = p.mul_(weight[rows].unsqueeze(1))
        if column_sums is not None:
            column_sums += p.sum(0)


class SmoothedCrossEntropy(torch.autograd.Function):
    """The loss of a logits table (tokens, vocab), any float dtype; the gradient comes
    back in the logits' dtype."""

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        loss, nll = _forward_blocks(logits, target, eps)
        ctx.save_for_backward(logits, target)  # as they came: bf16 logits take half the memory
        ctx.eps = eps
        ctx.mark_non_differentiable(nll)  # a measurement (perplexity), not a training signal
        return loss, nll

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_nll: Tensor):
        logits, target = ctx.saved_tensors
        grad = torch.empty_like(logits)
        _backward_blocks(logits, target, grad_loss * (target != PAD), ctx.eps, grad)
        return grad, None, None


class ProjectedCrossEntropy(torch.autograd.Function):
    """The output layer and the loss in one: x (tokens, in) -> scores -> loss.

    Forward: scores = x Wᵀ + b into the workspace's table, in x's dtype; the loss from
    its row blocks. Backward: ∂loss/∂z replaces the scores in the table, block by
    block, then ∂x = g W, ∂W = gᵀ x, ∂b = Σ_rows g, with g the table.
    """

    @staticmethod
    def forward(
        ctx, x: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, eps: float, workspace: Workspace
    ) -> tuple[Tensor, Tensor]:
        w = weight.to(x.dtype)  # (vocab, in)
        scores = workspace.take(x.size(0), w.size(0), x.dtype, x.device)  # (tokens, vocab)
        if bias is None:
            torch.mm(x, w.t(), out=scores)
        else:
            torch.addmm(bias.to(x.dtype), x, w.t(), out=scores)
        loss, nll = _forward_blocks(scores, target, eps)
        ctx.save_for_backward(x, w, target)
        ctx.eps, ctx.workspace, ctx.generation = eps, workspace, workspace.generation
        ctx.dtypes = weight.dtype, None if bias is None else bias.dtype
        ctx.mark_non_differentiable(nll)
        return loss, nll

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_nll: Tensor):
        x, w, target = ctx.saved_tensors
        g = ctx.workspace.reclaim(ctx.generation, x.size(0), w.size(0))  # the scores, (tokens, vocab)
        weight_dtype, bias_dtype = ctx.dtypes
        grad_b = g.new_zeros(g.size(1), dtype=torch.float32) if ctx.needs_input_grad[2] else None  # (vocab,)
        _backward_blocks(g, target, grad_loss * (target != PAD), ctx.eps, g, grad_b)  # now their gradient
        grad_x = g @ w if ctx.needs_input_grad[0] else None  # (tokens, in)
        grad_w = (g.t() @ x).to(weight_dtype) if ctx.needs_input_grad[1] else None  # (vocab, in)
        return grad_x, grad_w, None if grad_b is None else grad_b.to(bias_dtype), None, None, None


class Workspace:
    """The (tokens, vocab) score table of :class:`ProjectedCrossEntropy`, kept from batch
    to batch and grown to the largest batch.

    Each forward pass takes the table over and each backward pass uses it up (it holds
    gradients then), so a backward pass must follow its own forward pass before the next
    one: ``generation`` tells, and anything else is an error rather than a wrong gradient.
    """

    def __init__(self) -> None:
        self.buffer: Tensor | None = None
        self.generation = 0

    def take(self, rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        need = rows * cols
        buffer = self.buffer
        if buffer is None or buffer.numel() < need or buffer.dtype != dtype or buffer.device != device:
            self.buffer = None  # freed before its successor is allocated
            self.buffer = buffer = torch.empty(need, dtype=dtype, device=device)
        self.generation += 1
        return buffer[:need].view(rows, cols)

    def reclaim(self, generation: int, rows: int, cols: int) -> Tensor:
        if generation != self.generation:
            raise RuntimeError(
                "the output layer's scores were overwritten by another forward pass, or already "
                "used by a backward pass: run each backward pass right after its forward pass"
            )
        self.generation += 1
        return self.buffer[: rows * cols].view(rows, cols)


def _blocks(logits: Tensor) -> list[slice]:
    """Row blocks of the table: ``CHUNK_ROWS`` on a CPU, the whole table on a GPU (whose
    memory is not paged in on first touch, and which wants few large kernels)."""
    n = logits.size(0)
    size = CHUNK_ROWS if logits.device.type == "cpu" else max(n, 1)
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def perplexity(nll: float, tokens: float) -> float:
    """exp(``nll`` / ``tokens``), the perplexity of a sum of -log p over target tokens; the
    exponent capped where a float would overflow (a diverged or hopeless model)."""
    return math.exp(min(nll / max(tokens, 1), 700.0))
