"""The attentional encoder-decoder and its training loss.

Teacher forcing: for a target y = y_1 … y_n the decoder reads SOS y_1 … y_n and
predicts y_1 … y_n EOS. The loss is the label-smoothed cross-entropy averaged over
target tokens (padding ignored):

    loss = (1 - ε) · (-log p(y_t)) + ε · mean_v(-log p(v))

The unsmoothed part, -log p(y_t), is returned too: its mean is the log-perplexity.
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
        src_embedding = _embedding(src_vocab, cfg.emb_size)
        tgt_embedding = src_embedding if cfg.share_embeddings else _embedding(tgt_vocab, cfg.emb_size)
        self.encoder = Encoder(cfg, src_embedding)
        self.decoder = Decoder(cfg, tgt_embedding, self.encoder.output_size, tgt_vocab)

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[Memory, list[Tensor], Tensor | None]:
        """Encoder states, precomputed keys and mask; the decoder's initial state and h̃."""
        states, final_h, final_c = self.encoder(src, lengths)
        memory = Memory(states, self.decoder.attention.keys(states), src != PAD)
        state, feed = self.decoder.init_state(final_h, final_c)
        return memory, state, feed

    def forward(self, src: Tensor, lengths: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced scores: (batch, tgt_len, vocab)."""
        memory, state, feed = self.encode(src, lengths)
        return self.decoder.logits(self.decoder(tgt_in, memory, state, feed))

    def loss(self, batch: Batch, label_smoothing: float) -> tuple[Tensor, Tensor]:
        """Sums over target tokens of the smoothed loss and of -log p(y_t)."""
        logits = self(batch.src, batch.src_lengths, batch.tgt_in)
        return token_losses(logits, batch.tgt_out, label_smoothing)


def token_losses(logits: Tensor, target: Tensor, label_smoothing: float) -> tuple[Tensor, Tensor]:
    """(smoothed loss sum, negative log-likelihood sum) over non-PAD targets.

    With log p(v) = z_v - logsumexp(z), no (tokens, vocab) table of log-probabilities is
    built: -log p(y) = lse - z_y and mean_v(-log p(v)) = lse - mean_v(z).
    """
    target = target.reshape(-1)
    real = target != PAD
    logits = logits.flatten(0, -2)[real].float()  # (real tokens, vocab)
    target = target[real]
    lse = torch.logsumexp(logits, dim=-1)
    nll = lse - logits.gather(1, target.unsqueeze(1)).squeeze(1)
    if label_smoothing == 0:
        return nll.sum(), nll.detach().sum()
    smoothed = (1 - label_smoothing) * nll + label_smoothing * (lse - logits.mean(dim=-1))
    return smoothed.sum(), nll.detach().sum()


def _embedding(vocab: int, size: int) -> nn.Embedding:
    embedding = nn.Embedding(vocab, size, padding_idx=PAD)
    nn.init.normal_(embedding.weight, std=size**-0.5)
    with torch.no_grad():
        embedding.weight[PAD].zero_()
    return embedding


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
