"""The encoder: embeddings, then a (bidirectional) GRU or LSTM over the source.

Sequences are packed (``pack_padded_sequence``), so the recurrence never runs over
padding: a sentence's states are the same whatever it is batched with, and the backward
direction starts at each sentence's own last token.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nmt_cli.config import ModelConfig


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig, embedding: nn.Embedding):
        super().__init__()
        self.embedding = embedding
        self.emb_dropout = nn.Dropout(cfg.emb_dropout)
        rnn = nn.GRU if cfg.cell == "gru" else nn.LSTM
        self.rnn = rnn(
            cfg.emb_size,
            cfg.encoder_hidden,
            num_layers=cfg.encoder_layers,
            batch_first=True,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout if cfg.encoder_layers > 1 else 0.0,
        )
        self.directions = 2 if cfg.bidirectional else 1
        self.output_size = cfg.encoder_hidden * self.directions

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """src (batch, src_len) ids, lengths (batch,) on CPU.

        Returns the states (batch, src_len, dirs*hidden), zero at padding, and the last
        layer's final hidden (and, for an LSTM, cell) state, directions concatenated:
        (batch, dirs*hidden).
        """
        embedded = self.emb_dropout(self.embedding(src))  # (batch, src_len, emb)
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, final = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.size(1))
        h, c = final if isinstance(final, tuple) else (final, None)
        return outputs, self._last_layer(h), None if c is None else self._last_layer(c)

    def _last_layer(self, state: Tensor) -> Tensor:
        # (layers*dirs, batch, hidden) -> (batch, dirs*hidden) for the top layer
        top = state[-self.directions :]
        return torch.cat(list(top), dim=-1)
