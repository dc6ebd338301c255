"""The one batch builder and the one token batcher, as translation and forced decoding
use them (training's use: tests/train/test_batching.py)."""

from __future__ import annotations

import numpy as np
import torch
from conftest import EOS_ID, PAD_ID, SOS_ID, make_batch

from nmt_cli.model.batch import Batch, token_batches


def test_a_batch_of_sources_alone_has_no_targets():
    batch = Batch.of([[5, 6], [], [7]])
    assert batch.src.tolist() == [[5, 6, EOS_ID], [EOS_ID, PAD_ID, PAD_ID], [7, EOS_ID, PAD_ID]]
    assert batch.src_lengths.tolist() == [3, 1, 2] and batch.src.dtype == torch.int64
    assert batch.tgt_in is None and batch.tgt_out is None and batch.tokens == 0
    assert batch.to(torch.device("cpu")).tgt_in is None


def test_sources_and_targets_as_lists_or_arrays():
    sources, targets = [[5, 6], [7]], [[8], []]
    expected = make_batch(sources, targets)
    for batch in (Batch.of(sources, targets), Batch.of([np.array(s) for s in sources], [np.array(t) for t in targets])):
        for name in ("src", "src_lengths", "tgt_in", "tgt_out"):
            assert torch.equal(getattr(batch, name), getattr(expected, name)), name
        assert batch.tokens == expected.tokens == 3
    assert Batch.of(sources, targets).tgt_in.tolist() == [[SOS_ID, 8], [SOS_ID, PAD_ID]]


def test_sentence_and_token_limits():
    """Length-sorted items: a batch ends before the item that would pass either limit,
    padding counted against the longest; 0 is no limit."""
    items, sizes = list("abcdef"), [5, 4, 4, 3, 2, 1]
    assert token_batches(items, sizes, 0, 2) == [["a", "b"], ["c", "d"], ["e", "f"]]
    assert token_batches(items, sizes, 12) == [["a", "b"], ["c", "d", "e"], ["f"]]
    assert token_batches(items, sizes, 12, 2) == [["a", "b"], ["c", "d"], ["e", "f"]]
    assert token_batches(items, sizes, 0) == [items]
    assert token_batches(items, sizes, 1) == [[x] for x in items]  # one item at least


def test_full_batches_keep_a_multiple_and_hand_the_rest_on():
    """Ten items of size 10 fill 100 tokens. Cut at 8, the rest goes on with the next
    items; but where the next item is 100 long, keeping 8 and handing 2 on would make a
    batch of 3 x 100 tokens: the ten stay together."""
    assert [len(b) for b in token_batches(np.arange(12), [10] * 12, 100, multiple=8)] == [8, 4]
    batches = token_batches(np.arange(12), [10] * 10 + [100, 10], 100, multiple=8)
    assert [b.tolist() for b in batches] == [list(range(10)), [10], [11]]
