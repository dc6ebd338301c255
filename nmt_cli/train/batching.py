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

from nmt_cli.model.batch import Batch, token_batches
from nmt_cli.model.shapes import LENGTH_MULTIPLE, round_up
from nmt_cli.prep.store import IdStore

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

    def collate(self, indices: np.ndarray, multiple: int = 1, max_tokens: int = 0) -> Batch:
        """The pairs ``indices`` padded (``Batch.of``): the source side to a multiple of
        ``LENGTH_MULTIPLE``, and the rows with empty pairs to a multiple of ``multiple`` where
        rows x longest side stays within ``max_tokens`` (if > 0), so that the odd batch at the
        end of a pool meets no new product shapes (``shapes.py``)."""
        rows = round_up(len(indices), multiple)
        if max_tokens and rows * int(self.size[indices].max()) > max_tokens:
            rows = len(indices)  # padded, it would outgrow the batch size: memory over shapes
        sources, targets = [self.src[i] for i in indices], [self.tgt[i] for i in indices]
        return Batch.of(sources, targets, rows, LENGTH_MULTIPLE)

    def batches(
        self, batch_tokens: int, seed: int | None = None, epoch: int = 0, multiple: int = 1
    ) -> list[np.ndarray]:
        """Index arrays of an epoch's batches: shuffled and pooled with a seed, else sorted.
        A full batch holds a multiple of ``multiple`` sentences (``token_batches``)."""
        if seed is None:
            order = np.argsort(self.size, kind="stable")
            return token_batches(order, self.size[order].tolist(), batch_tokens, multiple=multiple)
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(self))
        pool = max(1, int(POOL_BATCHES * batch_tokens / max(1.0, float(self.size.mean()))))
        batches = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunk = chunk[np.lexsort((self.src_len[chunk], self.tgt_len[chunk]))]
            batches.extend(token_batches(chunk, self.size[chunk].tolist(), batch_tokens, multiple=multiple))
        return [batches[i] for i in rng.permutation(len(batches))]
