"""Batches: the one builder of the model's padded id tensors, and the one rule that cuts
sentences into batches; shared by training, translation and forced decoding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nmt_cli.model.shapes import round_up
from nmt_cli.vocab import EOS, PAD, SOS


@dataclass
class Batch:
    """Padded id tensors of one batch; translation's has no targets."""

    src: Tensor  # (batch, src_len) source ids + EOS, PAD-padded
    src_lengths: Tensor  # (batch,), on the CPU (``to`` leaves them there)
    tgt_in: Tensor | None = None  # (batch, tgt_len) SOS + target ids
    tgt_out: Tensor | None = None  # (batch, tgt_len) target ids + EOS
    tokens: int = 0  # real target tokens (EOS included)

    @classmethod
    def of(cls, sources: Sequence, targets: Sequence | None = None, rows: int = 0, length_multiple: int = 1) -> Batch:
        """Sentences of ids (lists or arrays) as a batch: the source side padded to a
        multiple of ``length_multiple`` columns; rows beyond the sentences, up to ``rows``,
        are empty pairs (source EOS alone, target all PAD: no loss, no gradient)."""
        n = len(sources)
        lengths = np.ones(max(rows, n), dtype=np.int64)
        lengths[:n] = [len(s) + 1 for s in sources]
        src = _padded(sources, len(lengths), round_up(int(lengths.max()), length_multiple), end=EOS)
        src[n:, 0] = EOS
        if targets is None:
            return cls(torch.from_numpy(src), torch.from_numpy(lengths))
        width = max(len(t) + 1 for t in targets)
        tgt_in = _padded(targets, len(lengths), width, start=SOS)
        tgt_in[n:, 0] = SOS
        tgt_out = _padded(targets, len(lengths), width, end=EOS)
        tokens = sum(len(t) + 1 for t in targets)
        return cls(*(torch.from_numpy(x) for x in (src, lengths, tgt_in, tgt_out)), tokens)

    def to(self, device: torch.device) -> Batch:
        tgt = [None if x is None else x.to(device) for x in (self.tgt_in, self.tgt_out)]
        return Batch(self.src.to(device), self.src_lengths, *tgt, self.tokens)


def _padded(sentences: Sequence, rows: int, width: int, start: int | None = None, end: int | None = None):
    """(rows, width) int64: each sentence in a row after ``start`` and before ``end`` (each if given), then PAD."""
    out = np.full((rows, width), PAD, dtype=np.int64)
    first = int(start is not None)
    for row, ids in enumerate(sentences):
        out[row, first : first + len(ids)] = ids
        if start is not None:
            out[row, 0] = start
        if end is not None:
            out[row, first + len(ids)] = end
    return out


def token_batches(
    items: Sequence, sizes: Sequence[int], max_tokens: int, max_sentences: int = 0, multiple: int = 1
) -> list:
    """``items`` (sorted by length) cut into consecutive batches of at most ``max_sentences``
    items and ``max_tokens`` tokens, counted as items x the longest of their ``sizes``
    (0: no limit); a batch takes one item at least.

    A full batch keeps the largest multiple of ``multiple`` items it can and hands the rest
    on to the next batch (unless the rest and the next item would not fit together), so
    that batch sizes, and with them the shapes of the per-step products, take few values.
    """
    batches, start, longest = [], 0, 0
    for end, size in enumerate(sizes):
        longest_with, count = max(longest, size), end - start
        if count and (
            (max_sentences and count >= max_sentences) or (max_tokens and (count + 1) * longest_with > max_tokens)
        ):
            kept = count - count % multiple if count >= multiple else count
            longest_with = max(sizes[start + kept : end + 1])  # of the next batch so far
            if max_tokens and (end + 1 - start - kept) * longest_with > max_tokens:
                kept, longest_with = count, size
            batches.append(items[start : start + kept])
            start += kept
        longest = longest_with
    if len(items) > start:
        batches.append(items[start:])
    return batches
