"""Token batches: each pair once per epoch, the token bound, a seeded order that a resumed
run can replay, and the padded tensors a batch is made of."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import EOS_ID, PAD_ID, SOS_ID

from nmt_cli.prep.store import IdStore, IdWriter
from nmt_cli.train.batching import PairData


def pair_data(root: Path, sources: list[list[int]], targets: list[list[int]], split: str = "train") -> PairData:
    for lang, sentences in (("de", sources), ("en", targets)):
        with IdWriter(root, split, lang, np.dtype("<u2")) as writer:
            for ids in sentences:
                writer.add(ids)
    return PairData(IdStore(root, split, "de", "<u2"), IdStore(root, split, "en", "<u2"))


@pytest.fixture
def pairs(tmp_path) -> PairData:
    """600 pairs of 0 to 40 ids per side (some sides empty), unrelated lengths."""
    rng = np.random.default_rng(5)
    sources = [rng.integers(4, 200, rng.integers(0, 41)).tolist() for _ in range(600)]
    targets = [rng.integers(4, 200, rng.integers(0, 41)).tolist() for _ in range(600)]
    return pair_data(tmp_path, sources, targets)


BATCH_TOKENS = [1, 30, 100, 700, 100_000]


def test_lengths_count_eos_and_sos(pairs):
    assert len(pairs) == 600
    assert np.array_equal(pairs.src_len, pairs.src.lengths() + 1)
    assert np.array_equal(pairs.tgt_len, pairs.tgt.lengths() + 1)
    assert np.array_equal(pairs.size, np.maximum(pairs.src_len, pairs.tgt_len))


@pytest.mark.parametrize("multiple", [1, 8])
@pytest.mark.parametrize("batch_tokens", BATCH_TOKENS)
@pytest.mark.parametrize("seed, epoch", [(1, 0), (1, 1), (7, 12), (None, 0)])
def test_every_pair_exactly_once_per_epoch(pairs, batch_tokens, seed, epoch, multiple):
    batches = pairs.batches(batch_tokens, seed, epoch, multiple)
    seen = np.concatenate(batches)
    assert len(seen) == len(pairs)
    assert np.array_equal(np.sort(seen), np.arange(len(pairs)))
    assert all(len(b) > 0 for b in batches)


@pytest.mark.parametrize("multiple", [1, 8])
@pytest.mark.parametrize("batch_tokens", BATCH_TOKENS)
@pytest.mark.parametrize("seed", [1, None])
def test_batches_respect_the_token_bound(pairs, batch_tokens, seed, multiple):
    """sentences x (longest side + 1) <= batch_tokens, unless the batch is one sentence."""
    batches = pairs.batches(batch_tokens, seed, 0, multiple)
    for b in batches:
        padded = len(b) * int(pairs.size[b].max())
        assert padded <= batch_tokens or len(b) == 1, (len(b), padded)
        # the same bound, in terms of the tensors a batch becomes
        batch = pairs.collate(b)
        assert len(b) * max(int(batch.src_lengths.max()), batch.tgt_in.size(1)) <= batch_tokens or len(b) == 1
    if batch_tokens == 1:
        assert all(len(b) == 1 for b in batches)
    if batch_tokens == 100_000:
        assert len(batches) == 1


@pytest.mark.parametrize("batch_tokens", BATCH_TOKENS)
def test_batches_are_filled(pairs, batch_tokens):
    """Cut greedily: the next batch's first sentence would not have fitted (unseeded
    batches come in cut order)."""
    batches = pairs.batches(batch_tokens, None)
    for b, following in zip(batches, batches[1:]):
        grown = np.append(b, following[0])
        assert len(grown) * int(pairs.size[grown].max()) > batch_tokens


@pytest.mark.parametrize("seed", [1, None])
@pytest.mark.parametrize("batch_tokens", [700, 2000])
def test_full_batches_hold_a_multiple_of_the_batch_multiple(pairs, batch_tokens, seed):
    """Of each pool (one here) only its last batch may hold another count; each batch
    would still have been overfull with the next batch's first sentence added, up to
    the sentences handed on to it (fewer than the multiple)."""
    batches = pairs.batches(batch_tokens, seed, 0, 8)
    assert sum(len(b) % 8 != 0 for b in batches) <= 1
    plain = pairs.batches(batch_tokens, seed, 0)
    assert len(plain) <= len(batches) <= len(plain) + len(plain) // 2
    if seed is None:  # cut order: the next batch starts with the sentences handed on
        for b, following in zip(batches, batches[1:]):
            grown = np.append(b, following[:8])
            assert len(grown) * int(pairs.size[grown].max()) > batch_tokens


@pytest.mark.parametrize("batch_tokens", [30, 100, 700])
def test_sentences_in_a_batch_are_sorted_by_length(pairs, batch_tokens):
    """Pools are sorted by (target, source) length before cutting, so a batch holds
    neighbours in that order and little padding."""
    for b in pairs.batches(batch_tokens, 3, 0):
        key = list(zip(pairs.tgt_len[b], pairs.src_len[b]))
        assert key == sorted(key)


def test_bucketing_keeps_padding_low(tmp_path):
    """With target lengths that follow source lengths (as in translation), over 85% of
    a batch is real tokens; batches cut from the unsorted order are about half padding."""
    rng = np.random.default_rng(5)
    sources = [rng.integers(4, 200, rng.integers(0, 41)).tolist() for _ in range(600)]
    targets = [s[: max(0, len(s) + int(rng.integers(-2, 3)))] for s in sources]
    data = pair_data(tmp_path, sources, targets)

    def fill(batches):
        return sum(int(data.size[b].sum()) for b in batches) / sum(len(b) * int(data.size[b].max()) for b in batches)

    assert fill(data.batches(700, 1, 0)) > 0.85
    order = rng.permutation(len(data))
    unsorted = [order[i : i + 20] for i in range(0, len(data), 20)]
    assert fill(unsorted) < 0.7


def test_same_seed_and_epoch_same_batches_else_another_order(pairs):
    first = pairs.batches(100, 1, 4)
    again = pairs.batches(100, 1, 4)
    assert len(first) == len(again) and all(np.array_equal(a, b) for a, b in zip(first, again))
    for other in (pairs.batches(100, 1, 5), pairs.batches(100, 2, 4)):
        assert [b.tolist() for b in other] != [b.tolist() for b in first]
        assert other[0].tolist() != first[0].tolist()


def test_unseeded_batches_are_sorted_by_size(pairs):
    order = np.concatenate(pairs.batches(100, None))
    assert np.all(np.diff(pairs.size[order]) >= 0)


def test_a_batch_order_does_not_depend_on_global_random_state(pairs):
    np.random.seed(0)
    torch.manual_seed(0)
    first = pairs.batches(100, 1, 0)
    np.random.seed(1)
    torch.manual_seed(1)
    np.random.random(10)
    assert all(np.array_equal(a, b) for a, b in zip(first, pairs.batches(100, 1, 0)))


# ----------------------------------------------------------------------------- collate

SOURCES = [[10, 11, 12], [], [13], [14, 15, 16, 17, 18]]
TARGETS = [[20], [21, 22, 23], [], [24, 25]]


def test_collate_builds_the_teacher_forcing_tensors(tmp_path):
    data = pair_data(tmp_path, SOURCES, TARGETS)
    batch = data.collate(np.array([0, 1, 2, 3]))
    P, S, E = PAD_ID, SOS_ID, EOS_ID
    assert batch.src.tolist() == [  # padded to a multiple of 8 (shapes.LENGTH_MULTIPLE)
        [10, 11, 12, E, P, P, P, P],
        [E, P, P, P, P, P, P, P],
        [13, E, P, P, P, P, P, P],
        [14, 15, 16, 17, 18, E, P, P],
    ]
    assert batch.src_lengths.tolist() == [4, 1, 2, 6]
    assert batch.tgt_in.tolist() == [
        [S, 20, P, P],
        [S, 21, 22, 23],
        [S, P, P, P],
        [S, 24, 25, P],
    ]
    assert batch.tgt_out.tolist() == [
        [20, E, P, P],
        [21, 22, 23, E],
        [E, P, P, P],
        [24, 25, E, P],
    ]
    assert batch.tokens == 2 + 4 + 1 + 3  # real target tokens, EOS included
    assert batch.tokens == int((batch.tgt_out != PAD_ID).sum())
    for t in (batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out):
        assert t.dtype == torch.int64


def test_collate_follows_the_given_order(tmp_path):
    data = pair_data(tmp_path, SOURCES, TARGETS)
    batch = data.collate(np.array([3, 0]))
    assert batch.src[0, :6].tolist() == [14, 15, 16, 17, 18, EOS_ID]
    assert batch.tgt_out[1].tolist() == [20, EOS_ID, PAD_ID]
    assert batch.src.shape == (2, 8) and batch.tgt_in.shape == (2, 3)


def test_batch_to_device_keeps_lengths_on_the_cpu(tmp_path):
    batch = pair_data(tmp_path, SOURCES, TARGETS).collate(np.array([0, 1]))
    moved = batch.to(torch.device("cpu"))
    assert moved.src_lengths.device.type == "cpu"
    assert moved.tokens == batch.tokens
    assert torch.equal(moved.tgt_out, batch.tgt_out)


def test_collate_pads_the_rows_to_a_multiple_with_empty_pairs(tmp_path):
    data = pair_data(tmp_path, SOURCES, TARGETS)
    plain, padded = data.collate(np.array([0, 3, 1])), data.collate(np.array([0, 3, 1]), multiple=8)
    assert padded.src.shape == (8, 8) and padded.tgt_in.shape == (8, 4)
    assert torch.equal(padded.src[:3], plain.src) and torch.equal(padded.tgt_out[:3], plain.tgt_out)
    assert padded.src[3:, 0].eq(EOS_ID).all() and padded.src[3:, 1:].eq(PAD_ID).all()  # source: EOS alone
    assert padded.src_lengths[3:].eq(1).all()
    assert padded.tgt_in[3:, 0].eq(SOS_ID).all() and padded.tgt_in[3:, 1:].eq(PAD_ID).all()
    assert padded.tgt_out[3:].eq(PAD_ID).all()  # no target: no loss
    assert padded.tokens == plain.tokens
    assert data.collate(np.arange(4), multiple=4).src.size(0) == 4  # a full multiple: nothing added
    # sizes (longest side + 1) of pairs 0, 3, 1: 4, 6, 4; 8 rows x 6 = 48 tokens
    assert data.collate(np.array([0, 3, 1]), multiple=8, max_tokens=48).src.size(0) == 8
    assert data.collate(np.array([0, 3, 1]), multiple=8, max_tokens=47).src.size(0) == 3  # it would outgrow the batch


def test_empty_pairs_change_neither_loss_nor_gradients(tmp_path):
    from conftest import tiny_model_config

    from nmt_cli.model.seq2seq import Seq2Seq

    data = pair_data(tmp_path, SOURCES, TARGETS)
    torch.manual_seed(0)
    model = Seq2Seq(tiny_model_config(), 32, 32)
    results = []
    for multiple in (1, 8):
        model.zero_grad()
        loss, _ = model.loss(data.collate(np.array([0, 3, 1]), multiple=multiple), label_smoothing=0.1)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (loss1, grads1), (loss8, grads8) = results
    torch.testing.assert_close(loss8, loss1)
    for g8, g1 in zip(grads8, grads1):
        torch.testing.assert_close(g8, g1)
