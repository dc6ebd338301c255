"""Beam search: beam 1 is greedy search, a wider beam never scores below greedy on these
models, batching changes nothing, n-best lists are sorted and distinct, and a hand-built
model whose locally best first word leads nowhere is searched correctly (and exactly,
when the beam holds every prefix)."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from conftest import (
    COPY_MAX,
    COPY_MIN,
    COPY_VOCAB,
    EOS_ID,
    PAD_ID,
    SEARCH_VOCAB,
    SOS_ID,
    make_batch,
    random_sequences,
    sources,
    untrained,
)

from nmt_cli.model.decoder import Decoder, Memory
from nmt_cli.model.rewrites import inference_decoder
from nmt_cli.model.seq2seq import Seq2Seq
from nmt_cli.search.beam import beam_search
from nmt_cli.search.greedy import greedy_encoded
from nmt_cli.search.hypothesis import ranking_score

VOCAB = SEARCH_VOCAB
SPECIAL = {PAD_ID, SOS_ID, EOS_ID}


def run_greedy(model, seqs, a=1.5, b=5, keep_attention=False):
    batch = make_batch(seqs)
    return greedy_encoded(model, model.encode(batch.src, batch.src_lengths), batch.src_lengths, a, b, keep_attention)


def run_beam(model, seqs, beam, a=1.5, b=5, **kwargs):
    batch = make_batch(seqs)
    return beam_search(model, model.encode(batch.src, batch.src_lengths), batch.src_lengths, beam, a, b, **kwargs)


def limit(seq, a=1.5, b=5) -> int:
    return max(1, int((len(seq) + 1) * a + b))


# --------------------------------------------------------------------------- beam 1 = greedy


@pytest.mark.parametrize("feeding", [True, False], ids=["feed", "nofeed"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("attention", ["bahdanau", "luong_dot", "luong_general"])
def test_beam_1_is_greedy_on_untrained_models(attention, cell, feeding):
    model = untrained(attention=attention, cell=cell, input_feeding=feeding, decoder_layers=2)
    seqs = sources(10, seed=4)
    greedy = run_greedy(model, seqs, keep_attention=True)
    beam = run_beam(model, seqs, 1, keep_attention=True)
    assert [[h.tokens] for h in greedy] == [[h.tokens for h in hyps] for hyps in beam]
    for g, (b,) in zip(greedy, beam):
        assert b.logprob == pytest.approx(g.logprob, abs=1e-4)
        assert b.score == pytest.approx(g.logprob, abs=1e-4)  # alpha 0, beta 0: the score is log P
        assert torch.allclose(b.attention, g.attention, atol=1e-5)


def test_beam_1_is_greedy_on_the_copy_model(copy_model):
    model, _ = copy_model
    seqs = sources(40, seed=8, vocab=COPY_VOCAB, low=1, high=COPY_MAX + 2)
    greedy = run_greedy(model, seqs, 1.5, 10)
    beam = run_beam(model, seqs, 1, 1.5, 10)
    assert [h.tokens for h in greedy] == [hyps[0].tokens for hyps in beam]
    for g, (b,) in zip(greedy, beam):
        assert b.logprob == pytest.approx(g.logprob, abs=1e-4)


def test_beam_reproduces_the_copy_task(copy_model):
    model, _ = copy_model
    seqs = random_sequences(100, COPY_VOCAB, COPY_MIN, COPY_MAX, torch.Generator().manual_seed(7))
    out = [hyps[0].tokens for hyps in run_beam(model, seqs, 5, 1.5, 10, alpha=0.6)]
    exact = sum(o == s for o, s in zip(out, seqs))
    assert exact >= 97, f"only {exact}/100 copied exactly"


# --------------------------------------------------------------------------- beam >= greedy


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("attention", ["bahdanau", "luong_general"])
@pytest.mark.parametrize("seed", [0, 1])
def test_beam_never_scores_below_greedy_on_untrained_models(seed, attention, cell):
    """alpha = beta = 0: the beam ranks by log P. (Beam search is not exact, and on other
    models a near-tie at the length limit can leave it a hair below greedy; on these
    it never is.)"""
    model = untrained(seed, attention=attention, cell=cell)
    seqs = sources(30, seed=100 + seed, low=1, high=10)
    greedy = run_greedy(model, seqs)
    for beam in (4, 5):
        for seq, g, hyps in zip(seqs, greedy, run_beam(model, seqs, beam, alpha=0.0, beta=0.0)):
            assert hyps[0].logprob >= g.logprob - 1e-4, (seq, beam, g.tokens, hyps[0].tokens)


def test_beam_never_scores_below_greedy_on_the_copy_model(copy_model):
    model, _ = copy_model
    seqs = sources(40, seed=9, vocab=COPY_VOCAB, low=1, high=COPY_MAX + 2)
    greedy = run_greedy(model, seqs, 1.5, 10)
    for g, hyps in zip(greedy, run_beam(model, seqs, 4, 1.5, 10)):
        assert hyps[0].logprob >= g.logprob - 1e-4


# --------------------------------------------------------------------------- batching


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("attention", ["bahdanau", "luong_dot", "luong_general"])
def test_batched_beam_equals_one_sentence_at_a_time(attention, cell):
    """Sentences of different lengths finish (and leave the batch) at different steps."""
    model = untrained(2, attention=attention, cell=cell, decoder_layers=2)
    seqs = sources(10, seed=21, low=1, high=10)
    together = run_beam(model, seqs, 4, alpha=0.6, nbest=4)
    for seq, hyps in zip(seqs, together):
        (alone,) = run_beam(model, [seq], 4, alpha=0.6, nbest=4)
        assert [h.tokens for h in alone] == [h.tokens for h in hyps]
        for a, b in zip(alone, hyps):
            assert a.score == pytest.approx(b.score, abs=1e-4)
            assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


def test_batched_beam_equals_one_sentence_at_a_time_on_the_copy_model(copy_model):
    model, _ = copy_model
    seqs = sources(12, seed=11, vocab=COPY_VOCAB, low=1, high=COPY_MAX + 2)
    together = run_beam(model, seqs, 3, 1.5, 10, alpha=0.6, nbest=3)
    for seq, hyps in zip(seqs, together):
        (alone,) = run_beam(model, [seq], 3, 1.5, 10, alpha=0.6, nbest=3)
        assert [h.tokens for h in alone] == [h.tokens for h in hyps]
        assert [h.score for h in alone] == pytest.approx([h.score for h in hyps], abs=1e-4)


# --------------------------------------------------------------------------- n-best lists


@pytest.mark.parametrize("alpha, beta", [(0.0, 0.0), (0.6, 0.0), (1.0, 0.4)])
@pytest.mark.parametrize("beam, nbest", [(5, 5), (5, 3), (3, 1), (2, 2)])
def test_nbest_lists_are_sorted_distinct_and_at_most_nbest(beam, nbest, alpha, beta):
    model = untrained(1)
    seqs = sources(12, seed=5, low=1, high=10)
    results = run_beam(model, seqs, beam, alpha=alpha, beta=beta, nbest=nbest)
    assert len(results) == len(seqs)
    for seq, hyps in zip(seqs, results):
        assert 1 <= len(hyps) <= min(nbest, beam)
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == len(hyps), [h.tokens for h in hyps]
        for h in hyps:
            assert math.isfinite(h.score) and math.isfinite(h.logprob)
            assert len(h.tokens) <= limit(seq)


@pytest.mark.parametrize("beam", [13, 30])
def test_a_beam_wider_than_half_the_vocabulary(beam):
    """25 words: 2·beam candidates per sentence can outnumber the vocabulary."""
    model = untrained(1)
    seqs = sources(5, seed=5, low=1, high=6)
    results = run_beam(model, seqs, beam, alpha=0.6, nbest=beam)
    for hyps in results:
        assert 1 <= len(hyps) <= beam
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == len(hyps)
        assert all(math.isfinite(h.logprob) and not SPECIAL & set(h.tokens) for h in hyps)
    greedy = run_greedy(model, seqs)
    for g, hyps in zip(greedy, run_beam(model, seqs, beam, alpha=0.0)):
        assert hyps[0].logprob >= g.logprob - 1e-4


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.5])
def test_scores_are_the_gnmt_ranking_of_the_logprob(alpha):
    """score = log P / lp(|Y|), |Y| counting EOS when the hypothesis ended with one (any
    hypothesis shorter than the limit did)."""
    model = untrained(3)
    seqs = sources(10, seed=6, low=1, high=10)
    for seq, hyps in zip(seqs, run_beam(model, seqs, 4, alpha=alpha, nbest=4)):
        for h in hyps:
            steps = len(h.tokens) + 1 if len(h.tokens) < limit(seq) else len(h.tokens)
            assert h.score == pytest.approx(ranking_score(h.logprob, steps, alpha), abs=1e-5)
            assert h.logprob <= 0


def test_coverage_penalty_only_lowers_scores():
    model = untrained(3)
    seqs = sources(8, seed=6, low=1, high=10)
    for seq, hyps in zip(seqs, run_beam(model, seqs, 4, alpha=0.6, beta=0.5, nbest=4)):
        for h in hyps:
            steps = len(h.tokens) + 1 if len(h.tokens) < limit(seq) else len(h.tokens)
            assert h.score <= ranking_score(h.logprob, steps, 0.6) + 1e-6


@pytest.mark.parametrize("beam", [1, 4])
def test_outputs_hold_no_special_ids_even_when_the_model_prefers_them(beam):
    model = untrained(4)
    with torch.no_grad():
        model.decoder.output.bias[PAD_ID] = 50.0
        model.decoder.output.bias[SOS_ID] = 50.0
    seqs = sources(8, seed=7, low=1, high=10)
    for hyps in run_beam(model, seqs, beam, nbest=beam):
        for h in hyps:
            assert not SPECIAL & set(h.tokens), h.tokens
            assert math.isfinite(h.logprob)


def test_eos_first_gives_empty_best_outputs():
    model = untrained()
    with torch.no_grad():
        model.decoder.output.bias[EOS_ID] = 1e4
    results = run_beam(model, sources(), 4, nbest=4)
    assert [hyps[0].tokens for hyps in results] == [[] for _ in range(6)]
    for hyps in results:
        assert hyps[0].logprob == pytest.approx(0.0, abs=1e-4)


def test_keep_attention_gives_a_row_per_step_over_the_source():
    model = untrained(5, attention="luong_general")
    seqs = sources(6, seed=12, low=1, high=10)
    batch = make_batch(seqs)
    for seq, hyps in zip(seqs, run_beam(model, seqs, 3, keep_attention=True, nbest=3)):
        for h in hyps:
            ended = len(h.tokens) < limit(seq)
            assert h.attention.shape == (len(h.tokens) + ended, batch.src.size(1))
            real = len(seq) + 1  # EOS included; padding columns get no weight
            assert torch.allclose(h.attention[:, :real].sum(-1), torch.ones(h.attention.size(0)), atol=1e-5)
            assert float(h.attention[:, real:].abs().sum()) == 0.0


def test_keeping_attention_does_not_change_the_search():
    model = untrained(6)
    seqs = sources(8, seed=13, low=1, high=10)
    plain = run_beam(model, seqs, 4, alpha=0.6, nbest=4)
    kept = run_beam(model, seqs, 4, alpha=0.6, nbest=4, keep_attention=True)
    assert [[h.tokens for h in hs] for hs in plain] == [[h.tokens for h in hs] for hs in kept]


# --------------------------------------------------------------------------- a hand-built model

A, B, C, D, E = 4, 5, 6, 7, 8
TOY_VOCAB = 9  # PAD UNK SOS EOS A B C D E
FLOOR = -40.0  # the log-probability (before normalizing) of every word a row does not name


class Bigram:
    """Stands in for Seq2Seq where greedy_encoded and beam_search use it: the next word's
    log-probabilities depend on the previous word only, through ``table`` (vocab, vocab).

    ``decoder.embed`` one-hot encodes the previous word, ``decoder.step`` passes it on as h̃ (and
    spreads attention evenly over the real source positions), and ``decoder.logits``
    looks up that word's row: the source is ignored.
    """

    def __init__(self, table: torch.Tensor):
        self.table = table
        self.decoder = self
        self.output_ids = None  # every word: Decoder's search_scores and word_ids below apply
        self.banned = [PAD_ID, SOS_ID]  # as Decoder's, for a layer that scores every word

    search_scores = Decoder.search_scores
    _ban = Decoder._ban
    word_ids = Decoder.word_ids

    def embed(self, prev: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(prev, self.table.size(0)).float()

    def step(self, emb_in: torch.Tensor, state, feed, memory: Memory, t: int = 0):
        rows, sentences = emb_in.size(0), memory.mask.size(0)
        assert state[0].size(0) == rows and (feed is None or feed.size(0) == rows)
        # the memory has a row per hypothesis, or (like Decoder.step allows) a row per
        # sentence shared by a group of consecutive hypotheses
        assert rows % sentences == 0, (rows, sentences)
        weights = memory.mask.float() / memory.mask.sum(-1, keepdim=True)
        return emb_in, [s + 1 for s in state], weights.repeat_interleave(rows // sentences, dim=0)

    def logits(self, att: torch.Tensor) -> torch.Tensor:
        return self.table[att.argmax(-1)]

    def encoded(self, lengths: list[int], feed: bool = False):
        n, width = len(lengths), max(lengths)
        mask = torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
        memory = Memory(torch.zeros(n, width, 3), torch.zeros(n, width, 2), mask)
        return memory, [torch.zeros(n, 4)], torch.zeros(n, self.table.size(0)) if feed else None


def toy_table(rows: dict[int, dict[int, float]]) -> torch.Tensor:
    table = torch.full((TOY_VOCAB, TOY_VOCAB), FLOOR)
    for prev in range(TOY_VOCAB):
        for word, p in rows.get(prev, {EOS_ID: 1.0}).items():
            table[prev, word] = math.log(p)
    return table


# After SOS, A (0.6) beats B (0.4); but every continuation of A is poor (at most 0.32),
# while B is followed by EOS for sure.
TRAP = toy_table(
    {
        SOS_ID: {A: 0.6, B: 0.4},
        A: {C: 0.32, D: 0.3, E: 0.28, EOS_ID: 0.1},
        B: {EOS_ID: 1.0},
        C: {EOS_ID: 0.5, D: 0.25, E: 0.25},
        D: {EOS_ID: 0.5, C: 0.25, E: 0.25},
        E: {EOS_ID: 0.5, C: 0.25, D: 0.25},
    }
)


@pytest.mark.parametrize("feed", [False, True], ids=["nofeed", "feed"])
def test_greedy_falls_into_the_trap_that_beam_search_avoids(feed):
    model = Bigram(TRAP)
    lengths = torch.tensor([4, 2, 6])  # three sentences: the toy ignores the source
    (greedy_hyp, *_) = greedy_encoded(model, model.encoded(lengths.tolist(), feed), lengths, 0.0, 5)
    assert greedy_hyp.tokens == [A, C]
    assert greedy_hyp.logprob == pytest.approx(math.log(0.6 * 0.32 * 0.5), abs=1e-5)
    for beam in (2, 3):
        results = beam_search(model, model.encoded(lengths.tolist(), feed), lengths, beam, 0.0, 5, nbest=beam)
        for hyps in results:
            best = hyps[0]
            assert best.tokens == [B]
            assert best.logprob == pytest.approx(math.log(0.4), abs=1e-5)
            assert best.logprob > greedy_hyp.logprob
            assert hyps[1].tokens == [A, C]  # the greedy path is the runner-up
            assert hyps[1].logprob == pytest.approx(greedy_hyp.logprob, abs=1e-5)


def test_beam_1_on_the_trap_is_greedy():
    model = Bigram(TRAP)
    lengths = torch.tensor([3])
    (hyps,) = beam_search(model, model.encoded([3]), lengths, 1, 0.0, 5)
    assert [h.tokens for h in hyps] == [[A, C]]


def exhaustive(table: torch.Tensor, limit: int, alpha: float) -> list[tuple[float, list[int], float]]:
    """Every hypothesis beam search can return for a Bigram with this length limit:
    (score, tokens, logprob), best first."""
    scores = table.double().clone()
    scores[:, [PAD_ID, SOS_ID]] = float("-inf")  # search normalizes over the words it can produce
    logp = torch.log_softmax(scores, dim=-1)
    words = [w for w in range(table.size(0)) if w not in SPECIAL]
    out = []
    for n in range(limit + 1):
        for seq in itertools.product(words, repeat=n):
            path, prev = 0.0, SOS_ID
            for w in seq:
                path, prev = path + float(logp[prev, w]), w
            if n < limit:  # ended with EOS
                lp = path + float(logp[prev, EOS_ID])
                out.append((ranking_score(lp, n + 1, alpha), list(seq), lp))
            else:  # stopped by the length limit
                out.append((ranking_score(path, n, alpha), list(seq), path))
    return sorted(out, key=lambda x: -x[0])


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_beam_wide_enough_to_hold_every_prefix_finds_the_exact_nbest(seed, alpha):
    """4 words besides EOS, a length limit of 3: every prefix fits in a beam of 80
    (16 open prefixes at the second step, 80 extensions at the last), so the n-best list
    is the true n best of all 85 possible outputs."""
    vocab = 7  # PAD UNK SOS EOS and three more: UNK, 4, 5, 6 are ordinary words here
    gen = torch.Generator().manual_seed(seed)
    table = torch.randn(vocab, vocab, generator=gen) * 1.5
    model = Bigram(table)
    lengths = torch.tensor([5, 2])
    results = beam_search(model, model.encoded([5, 2]), lengths, 80, 0.0, 3, alpha=alpha, nbest=10)
    want = exhaustive(table, 3, alpha)[:10]
    for hyps in results:
        assert [h.tokens for h in hyps] == [tokens for _, tokens, _ in want]
        assert [h.score for h in hyps] == pytest.approx([score for score, _, _ in want], abs=1e-4)
        assert [h.logprob for h in hyps] == pytest.approx([lp for _, _, lp in want], abs=1e-4)


def test_a_tiny_vocabulary_narrower_than_the_beam():
    """Fewer real words than beam slots: the n-best list holds only finite, distinct
    hypotheses."""
    model = Bigram(torch.randn(6, 6, generator=torch.Generator().manual_seed(3)))  # words: UNK, 4, 5
    lengths = torch.tensor([3])
    (hyps,) = beam_search(model, model.encoded([3]), lengths, 5, 0.0, 1, nbest=5)
    assert all(math.isfinite(h.logprob) for h in hyps)
    assert len({tuple(h.tokens) for h in hyps}) == len(hyps)
    assert sorted(tuple(h.tokens) for h in hyps) == [(), (1,), (4,), (5,)]  # EOS at once, or one word


def restricted(model: Seq2Seq, ids: list[int]) -> Seq2Seq:
    model = copy.deepcopy(model)
    model.decoder = inference_decoder(model.decoder, torch.tensor(ids))
    return model


@pytest.mark.parametrize("beam", [1, 3])
def test_an_output_layer_restricted_to_every_word_searches_as_the_whole_one(beam):
    model = untrained(seed=4)
    seqs = sources()
    every = restricted(model, list(range(VOCAB)))
    assert every.decoder.output_ids.numel() == VOCAB - 2  # without PAD and SOS
    for a, b in zip(run_beam(model, seqs, beam), run_beam(every, seqs, beam)):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.logprob for h in a] == pytest.approx([h.logprob for h in b], abs=1e-5)
    for a, b in zip(run_greedy(model, seqs), run_greedy(every, seqs)):
        assert a.tokens == b.tokens and a.logprob == pytest.approx(b.logprob, abs=1e-5)


@pytest.mark.parametrize("beam", [1, 3])
def test_a_restricted_search_produces_only_the_kept_words(beam):
    kept = [EOS_ID, 5, 8, 9]
    model = restricted(untrained(seed=5), kept)
    outputs = [h.tokens for hyps in run_beam(model, sources(), beam) for h in hyps]
    outputs += [h.tokens for h in run_greedy(model, sources())]
    assert outputs and all(set(tokens) <= set(kept) for tokens in outputs)
    assert any(tokens for tokens in outputs)  # not all empty: the check above bites
