"""The attentional encoder-decoder and its training loss.

Teacher forcing: for a target y = y_1 … y_n the decoder reads SOS y_1 … y_n and
predicts y_1 … y_n EOS. The loss is the label-smoothed cross-entropy averaged over
target tokens (padding ignored):

    loss = (1 - ε) · (-log p(y_t)) + ε · mean_v(-log p(v))

The unsmoothed part, -log p(y_t), is returned too: its mean is the log-perplexity.
Both are sums; the training loop divides by the number of target tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nmt_cli.config import ModelConfig
from nmt_cli.model.decoder import Decoder, Memory
from nmt_cli.model.encoder import Encoder
from nmt_cli.prep.subwords import PAD


@dataclass
class Batch:
    """Padded id tensors of one batch; see ``train/batching.py``."""

    src: Tensor  # (batch, src_len) source ids + EOS, PAD-padded
    src_lengths: Tensor  # (batch,)
    tgt_in: Tensor  # (batch, tgt_len) SOS + target ids
    tgt_out: Tensor  # (batch, tgt_len) target ids + EOS
    tokens: int  # real target tokens (EOS included)

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.src.to(device), self.src_lengths, self.tgt_in.to(device), self.tgt_out.to(device), self.tokens)


class Seq2Seq(nn.Module):
    def __init__(self, cfg: ModelConfig, src_vocab: int, tgt_vocab: int):
        super().__init__()
        self.cfg = cfg
        if cfg.share_embeddings and src_vocab != tgt_vocab:
            raise ValueError(f"share_embeddings needs one vocabulary, got sizes {src_vocab} and {tgt_vocab}")
        src_embedding = _embedding(src_vocab, cfg.emb_size)
        tgt_embedding = src_embedding if cfg.share_embeddings else _embedding(tgt_vocab, cfg.emb_size)
        self.encoder = Encoder(cfg, src_embedding)
        self.decoder = Decoder(cfg, tgt_embedding, self.encoder.output_size, tgt_vocab)
        if cfg.init_uniform:
            with torch.no_grad():
                for p in self.parameters():
                    p.uniform_(-cfg.init_uniform, cfg.init_uniform)
                for embedding in {id(e): e for e in (src_embedding, tgt_embedding)}.values():
                    embedding.weight[PAD].zero_()
            self.decoder.attention.init_combine()  # a structured start, not a random one (see there)

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[Memory, list[Tensor], Tensor | None]:
        """Encoder states, precomputed keys and mask; the decoder's initial state and h̃."""
        states, final_h, final_c = self.encoder(src, lengths)
        states = _autocast_dtype(states)
        memory = Memory(states, self.decoder.attention.keys(states), src != PAD)
        state, feed = self.decoder.init_state(final_h, final_c)
        return memory, state, feed

    def forward(self, src: Tensor, lengths: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0) -> Tensor:
        """Scores (batch, tgt_len, vocab) of each target position given the previous words:
        the reference's (teacher forcing), or with ``teacher_forcing`` < 1 a random share
        of the model's own (scheduled sampling, see :meth:`Decoder.sampled`)."""
        memory, state, feed = self.encode(src, lengths)
        if teacher_forcing < 1.0:
            return self.decoder.sampled(tgt_in, memory, state, feed, teacher_forcing)
        return self.decoder.logits(self.decoder(tgt_in, memory, state, feed))

    def loss(self, batch: Batch, label_smoothing: float) -> tuple[Tensor, Tensor]:
        """Sums over target tokens of the smoothed loss and of -log p(y_t)."""
        logits = self(batch.src, batch.src_lengths, batch.tgt_in)
        return token_losses(logits, batch.tgt_out, label_smoothing)


def token_losses(logits: Tensor, target: Tensor, label_smoothing: float) -> tuple[Tensor, Tensor]:
    """(smoothed loss sum, negative log-likelihood sum) over non-PAD targets.

    logits (..., vocab), target (...). See :class:`SmoothedCrossEntropy`.
    """
    flat = logits.reshape(-1, logits.size(-1))
    return SmoothedCrossEntropy.apply(flat, target.reshape(-1), label_smoothing)


class SmoothedCrossEntropy(torch.autograd.Function):
    """Label-smoothed cross-entropy with a hand-written backward pass, a block of rows at a time.

    With z the scores of one token, lse = logsumexp(z), p = softmax(z), V the vocabulary
    and y the reference:

        loss = (1 - ε) (lse - z_y) + ε (lse - mean(z))
        ∂loss/∂z = p - (1 - ε) onehot(y) - ε / V

    Both passes walk the (tokens, vocab) table in blocks of ``CHUNK_ROWS`` rows: each block
    is widened to fp32 in a small buffer that stays in the CPU's cache and is reused, where
    whole-table fp32 temporaries (a 4,000-token batch of an 8k vocabulary: 128 MB each)
    cost a page fault per 4 kB every time they are allocated, and raise peak memory.
    The backward pass is one exp per block plus in-place updates. PAD targets get zero
    loss and zero gradient.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        lse = logits.new_empty(logits.size(0), dtype=torch.float32)  # (tokens,)
        z_y, z_mean = torch.empty_like(lse), torch.empty_like(lse)
        for rows in _blocks(logits):
            z = logits[rows].float()  # (block, vocab)
            lse[rows] = torch.logsumexp(z, dim=-1)
            z_y[rows] = z.gather(1, target[rows].unsqueeze(1)).squeeze(1)
            z_mean[rows] = z.mean(dim=-1)
        nll = lse - z_y
        loss = (1 - eps) * nll + eps * (lse - z_mean) if eps else nll
        real = (target != PAD).float()
        ctx.save_for_backward(logits, lse, target, real)  # logits as they came: bf16 ones take half the memory
        ctx.eps = eps
        nll_sum = (nll * real).sum()
        ctx.mark_non_differentiable(nll_sum)  # a measurement (perplexity), not a training signal
        return (loss * real).sum(), nll_sum

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_nll: Tensor):
        logits, lse, target, real = ctx.saved_tensors
        weight = (grad_loss * real).unsqueeze(1)  # (tokens, 1)
        grad = torch.empty_like(logits)
        blocks = _blocks(logits)
        buffer = logits.new_empty(blocks[0].stop if blocks else 0, logits.size(1), dtype=torch.float32)
        reference = torch.full_like(buffer[:, :1], ctx.eps - 1.0)  # (block, 1): -(1 - ε) at y
        for rows in blocks:
            n = rows.stop - rows.start
            p = buffer[:n]
            torch.sub(logits[rows], lse[rows].unsqueeze(1), out=p).exp_()  # softmax, in fp32
            if ctx.eps:
                p.sub_(ctx.eps / p.size(1))
            p.scatter_add_(1, target[rows].unsqueeze(1), reference[:n])
            grad[rows] = p.mul_(weight[rows])
        return grad, None, None


CHUNK_ROWS = 128  # 128 x 8k vocabulary x 4 bytes: a 4 MB fp32 block


def _blocks(logits: Tensor) -> list[slice]:
    """Row blocks of the table: ``CHUNK_ROWS`` on a CPU, the whole table on a GPU (whose
    memory is not paged in on first touch, and which wants few large kernels)."""
    n = logits.size(0)
    size = CHUNK_ROWS if logits.device.type == "cpu" else max(n, 1)
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def _autocast_dtype(states: Tensor) -> Tensor:
    """The encoder states in autocast's dtype when it is on (bf16/fp16), else as they are.

    Attention reads them at every decoder step, and autocast casts an fp32 input of a
    matrix product anew at each call and keeps each copy for the backward pass: one
    (batch, src_len, memory) copy per target position, the largest activation of a
    long batch. Cast once here, they are stored once.
    """
    kind = states.device.type
    return states.to(torch.get_autocast_dtype(kind)) if torch.is_autocast_enabled(kind) else states


def _embedding(vocab: int, size: int) -> nn.Embedding:
    embedding = nn.Embedding(vocab, size, padding_idx=PAD)
    nn.init.normal_(embedding.weight, std=size**-0.5)
    with torch.no_grad():
        embedding.weight[PAD].zero_()
    return embedding


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
