"""The attentional encoder-decoder.

Teacher forcing: for a target y = y_1 … y_n the decoder reads SOS y_1 … y_n and
predicts y_1 … y_n EOS. The loss is the label-smoothed cross-entropy of ``loss.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nmt_cli.config import ModelConfig
from nmt_cli.device import to_autocast_dtype
from nmt_cli.model.batch import Batch
from nmt_cli.model.decoder import Decoder, Memory
from nmt_cli.model.encoder import Encoder
from nmt_cli.model.loss import token_losses
from nmt_cli.vocab import PAD


class Seq2Seq(nn.Module):
    def __init__(self, cfg: ModelConfig, src_vocab: int, tgt_vocab: int, output_words: Sequence[int] | None = None):
        """``output_words``: the target words of the training data, which the output layer
        scores alone with ``output_vocab: target`` (``train/data.py:target_words``)."""
        super().__init__()
        self.cfg = cfg
        if cfg.share_embeddings and src_vocab != tgt_vocab:
            raise ValueError(f"share_embeddings needs one vocabulary, got sizes {src_vocab} and {tgt_vocab}")
        if cfg.output_vocab == "target" and output_words is None:
            raise ValueError("output_vocab: target needs the list of the training data's target words")
        words = torch.tensor(list(output_words)) if cfg.output_vocab == "target" else None
        src_embedding = _embedding(src_vocab, cfg.emb_size)
        tgt_embedding = src_embedding if cfg.share_embeddings else _embedding(tgt_vocab, cfg.emb_size)
        self.encoder = Encoder(cfg, src_embedding)
        self.decoder = Decoder(cfg, tgt_embedding, self.encoder.output_size, tgt_vocab, words)
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
        # Attention reads the states at every decoder step, and autocast casts an fp32
        # input of a matrix product anew at each call and keeps each copy for the backward
        # pass: one (batch, src_len, memory) copy per target position, the largest
        # activation of a long batch. Cast once here, they are stored once.
        states = to_autocast_dtype(states)
        memory = Memory(states, self.decoder.attention.keys(states), src != PAD)
        state, feed = self.decoder.init_state(final_h, final_c)
        return memory, state, feed

    def forward(self, src: Tensor, lengths: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0) -> Tensor:
        """Scores (batch, tgt_len, k) of the k words the output layer scores
        (``Decoder.logits``) at each target position given the previous words: the
        reference's (teacher forcing), or with ``teacher_forcing`` < 1 a random share of
        the model's own (scheduled sampling, see :meth:`Decoder.sampled`)."""
        memory, state, feed = self.encode(src, lengths)
        if teacher_forcing < 1.0:
            return self.decoder.sampled(tgt_in, memory, state, feed, teacher_forcing)
        return self.decoder.logits(self.decoder(tgt_in, memory, state, feed))

    def loss(self, batch: Batch, label_smoothing: float, teacher_forcing: float = 1.0) -> tuple[Tensor, Tensor]:
        """Sums over target tokens of the smoothed loss and of -log p(y_t) (``loss.py``).
        Under teacher forcing the output layer runs inside the loss, and the scores are
        never kept (``loss.projected_losses``)."""
        if teacher_forcing < 1.0:
            scores = self(batch.src, batch.src_lengths, batch.tgt_in, teacher_forcing)
            return token_losses(scores, self.decoder.target_columns(batch.tgt_out), label_smoothing)
        memory, state, feed = self.encode(batch.src, batch.src_lengths)
        return self.decoder.losses(self.decoder(batch.tgt_in, memory, state, feed), batch.tgt_out, label_smoothing)


def _embedding(vocab: int, size: int) -> nn.Embedding:
    embedding = nn.Embedding(vocab, size, padding_idx=PAD)
    nn.init.normal_(embedding.weight, std=size**-0.5)
    with torch.no_grad():
        embedding.weight[PAD].zero_()
    return embedding


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
