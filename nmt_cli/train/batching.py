"""Token-based, length-bucketed batches over memory-mapped ids.

A batch holds as many sentence pairs as fit ``batch_tokens`` once padded: sentences x
(longest side + 1 for SOS/EOS) <= batch_tokens. To keep padding low, each epoch:

1. shuffles all pair indices with a generator seeded by (seed, epoch);
2. cuts the shuffled order into pools of about 100 batches and sorts each pool by length
   (target, then source), so neighbours have similar lengths;
3. cuts each pool into batches and shuffles the batch order.

The batch list of an epoch is a pure function of (seed, epoch), so a resumed run skips
the batches it already did and sees exactly the batches an uninterrupted run would.
Only the length arrays (8 bytes a sentence) live in memory; ids are read per batch from
the memory-mapped store.
"""

from __future__ import annotations

import numpy as np
import torch

from nmt_cli.model.seq2seq import Batch
from nmt_cli.model.shapes import LENGTH_MULTIPLE, round_up
from nmt_cli.prep.store import IdStore
from nmt_cli.vocab import EOS, PAD, SOS

POOL_BATCHES = 100


class PairData:
    """The source and target id stores of one split, with their lengths (EOS/SOS included)."""

    def __init__(self, src: IdStore, tgt: IdStore):
        self.src, self.tgt = src, tgt
        self.src_len = src.lengths() + 1
        self.tgt_len = tgt.lengths() + 1
        self.size = np.maximum(self.src_len, self.tgt_len)

    def __len__(self) -> int:
        return len(self.src_len)

    def collate(self, indices: np.ndarray, max_len: int = 0, multiple: int = 1, max_tokens: int = 0) -> Batch:
        """Padded tensors for the pairs ``indices`` (sources truncated to ``max_len`` if > 0);
        the source side padded to a multiple of ``LENGTH_MULTIPLE``, and the rows to a
        multiple of ``multiple`` with empty pairs (source EOS, target all PAD: no loss, no
        gradient) where rows x longest side stays within ``max_tokens`` (if > 0), so that
        the odd batch at the end of a pool meets no new product shapes (``shapes.py``)."""
        n = len(indices)
        rows = round_up(n, multiple)
        if max_tokens and rows * int(self.size[indices].max()) > max_tokens:
            rows = n  # padded, it would outgrow the batch size: memory over shapes
        src_lens = self.src_len[indices]
        if max_len:
            src_lens = np.minimum(src_lens, max_len)
        src_lens = np.concatenate([src_lens, np.ones(rows - n, dtype=src_lens.dtype)])  # empty pairs: EOS alone
        tgt_lens = self.tgt_len[indices]
        src = np.full((rows, round_up(int(src_lens.max()), LENGTH_MULTIPLE)), PAD, dtype=np.int64)
        tgt_in = np.full((rows, tgt_lens.max()), PAD, dtype=np.int64)
        tgt_out = np.full((rows, tgt_lens.max()), PAD, dtype=np.int64)
        src[n:, 0], tgt_in[n:, 0] = EOS, SOS
        for row, i in enumerate(indices):
            s, t = self.src[i][: src_lens[row] - 1], self.tgt[i]
            src[row, : len(s)], src[row, len(s)] = s, EOS
            tgt_in[row, 0], tgt_in[row, 1 : len(t) + 1] = SOS, t
            tgt_out[row, : len(t)], tgt_out[row, len(t)] = t, EOS
        return Batch(
            torch.from_numpy(src),
            torch.from_numpy(src_lens.astype(np.int64)),
            torch.from_numpy(tgt_in),
            torch.from_numpy(tgt_out),
            int(tgt_lens.sum()),
        )

    def batches(
        self, batch_tokens: int, seed: int | None = None, epoch: int = 0, multiple: int = 1
    ) -> list[np.ndarray]:
        """Index arrays of an epoch's batches: shuffled and pooled with a seed, else sorted.
        A full batch holds a multiple of ``multiple`` sentences (see :func:`_cut`)."""
        if seed is None:
            return _cut(np.argsort(self.size, kind="stable"), self.size, batch_tokens, multiple)
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(self))
        pool = max(1, int(POOL_BATCHES * batch_tokens / max(1.0, float(self.size.mean()))))
        batches = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunk = chunk[np.lexsort((self.src_len[chunk], self.tgt_len[chunk]))]
            batches.extend(_cut(chunk, self.size, batch_tokens, multiple))
        return [batches[i] for i in rng.permutation(len(batches))]


def _cut(order: np.ndarray, size: np.ndarray, batch_tokens: int, multiple: int = 1) -> list[np.ndarray]:
    """Split ``order`` (sorted by length) so that count x longest <= batch_tokens.

    A batch that is full (the next sentence does not fit) keeps the largest multiple of
    ``multiple`` sentences it can and hands the rest on to the next batch, so that batch
    sizes, and with them the shapes of the decoder's per-step products, take few values
    (unless the rest and the next sentence would not fit together).
    """
    batches, start, longest = [], 0, 0
    for end, i in enumerate(order):
        longest_with = max(longest, int(size[i]))
        if end > start and (end - start + 1) * longest_with > batch_tokens:
            count = end - start
            kept = count - count % multiple if count >= multiple else count
            longest_with = int(size[order[start + kept : end + 1]].max())  # of the next batch so far
            if (end + 1 - start - kept) * longest_with > batch_tokens:
                kept, longest_with = count, int(size[i])
            batches.append(order[start : start + kept])
            start += kept
        longest = longest_with
    if len(order) > start:
        batches.append(order[start:])
    return batches
