"""Greedy decoding: reproduces what a trained model learned, agrees with the teacher-forced
scores, does not depend on batching, and respects EOS and the length limit."""

from __future__ import annotations

import pytest
import torch
from conftest import (
    COPY_MAX,
    COPY_MIN,
    COPY_VOCAB,
    EOS_ID,
    SEARCH_VOCAB,
    SOS_ID,
    make_batch,
    random_sequences,
    sources,
    tiny_model_config,
    untrained,
)

from nmt_cli.model.seq2seq import Seq2Seq
from nmt_cli.search.greedy import greedy, greedy_encoded

VOCAB = SEARCH_VOCAB


def greedy_ids(*args) -> list[list[int]]:
    return [h.tokens for h in greedy(*args)]


def test_greedy_reproduces_the_copy_task(copy_model):
    model, _ = copy_model
    seqs = random_sequences(200, COPY_VOCAB, COPY_MIN, COPY_MAX, torch.Generator().manual_seed(7))
    batch = make_batch(seqs)
    out = greedy_ids(model, batch.src, batch.src_lengths, 1.5, 10)
    assert len(out) == len(seqs)
    exact = sum(o == s for o, s in zip(out, seqs))
    assert exact >= 196, f"only {exact}/200 copied exactly"
    assert seqs[:5] == out[:5]


def test_batched_greedy_equals_one_sentence_at_a_time(copy_model):
    """Sentences of different lengths finish at different steps; each one's output is
    what it gets alone (30 sentences: finished rows leave in groups of eight, and the
    rows kept to round their count write nothing)."""
    model, _ = copy_model
    seqs = sources(30, seed=11, vocab=COPY_VOCAB, low=1, high=COPY_MAX + 2)
    batch = make_batch(seqs)
    together = greedy_ids(model, batch.src, batch.src_lengths, 1.5, 10)
    for seq, out in zip(seqs, together):
        alone = make_batch([seq])
        assert greedy_ids(model, alone.src, alone.src_lengths, 1.5, 10) == [out]


def test_rows_rounded_to_a_larger_multiple_give_the_same_words(copy_model):
    """Validation rounds the rows left to training's batch multiple (32): rows kept only as
    padding write nothing."""
    model, _ = copy_model
    seqs = sources(70, seed=12, vocab=COPY_VOCAB, low=1, high=COPY_MAX + 2)
    batch = make_batch(seqs)
    with torch.no_grad():
        encoded = model.encode(batch.src, batch.src_lengths)
    by = {
        m: [h.tokens for h in greedy_encoded(model, encoded, batch.src_lengths, 1.5, 10, row_multiple=m)]
        for m in (1, 32)
    }
    assert by[32] == by[1]


@pytest.mark.parametrize("feeding", [True, False], ids=["feed", "nofeed"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("attention", ["bahdanau", "luong_dot", "luong_general"])
def test_greedy_picks_the_argmax_of_the_teacher_forced_scores(attention, cell, feeding):
    """Fed back as the target prefix, greedy's words are the argmax (over words other than
    PAD and SOS) at every position:
    step-by-step decoding and teacher forcing compute the same model."""
    model = untrained(attention=attention, cell=cell, input_feeding=feeding, decoder_layers=2)
    seqs = sources()
    batch = make_batch(seqs)
    out = greedy_ids(model, batch.src, batch.src_lengths, 1.0, 3)
    for row, ids in enumerate(out):
        single = make_batch([seqs[row]])
        tgt_in = torch.tensor([[SOS_ID, *ids]])
        with torch.no_grad():
            scores = model(single.src, single.src_lengths, tgt_in)[0]
        scores[:, [0, SOS_ID]] = float("-inf")  # greedy never produces PAD or SOS
        best = scores.argmax(-1).tolist()
        assert best[: len(ids)] == ids
        limit = int(len(seqs[row]) + 1 + 3)
        if len(ids) < limit:  # stopped early: by EOS
            assert best[len(ids)] == EOS_ID


def test_greedy_over_a_target_vocabulary_writes_its_words_alone():
    """With ``output_vocab: target`` the scores have a column per listed word; greedy
    maps its choices back to word ids, and they are the listed words' argmax."""
    words = [1, 3, 6, 9, 14, 20]  # UNK, EOS and four words
    torch.manual_seed(8)
    model = Seq2Seq(tiny_model_config(output_vocab="target"), VOCAB, VOCAB, words).eval()
    batch = make_batch(sources(8, seed=5))
    out = greedy_ids(model, batch.src, batch.src_lengths, 1.0, 3)
    assert {w for ids in out for w in ids} <= set(words) - {EOS_ID}
    for row, ids in enumerate(out):
        with torch.no_grad():
            first = model(batch.src[row : row + 1], batch.src_lengths[row : row + 1], torch.tensor([[SOS_ID]]))[0, 0]
        best = words[int(first[1:].argmax())]  # (k,) scores over PAD and the words
        assert ids[:1] == ([] if best == EOS_ID else [best])


def test_eos_first_gives_empty_outputs_and_eos_is_never_returned():
    model = untrained()
    with torch.no_grad():
        model.decoder.output.bias[EOS_ID] = 1e4
    batch = make_batch(sources())
    assert greedy_ids(model, batch.src, batch.src_lengths, 1.5, 10) == [[] for _ in range(6)]


def test_outputs_stop_at_eos_and_hold_no_special_ids(copy_model):
    model, _ = copy_model
    batch = make_batch(sources(20, seed=5, vocab=COPY_VOCAB, low=COPY_MIN, high=COPY_MAX))
    for ids in greedy_ids(model, batch.src, batch.src_lengths, 3.0, 10):
        assert EOS_ID not in ids and SOS_ID not in ids
