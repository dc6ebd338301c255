"""Forced decoding: how probable the model finds a given translation.

For a source x and a reference y = y_1 … y_n, teacher forcing gives every
log p(y_t | y_<t, x) in one pass; a line's score is

    log P(y|x) = Σ_{t=1}^{n+1} log p(y_t | y_<t, x)      (y_{n+1} = EOS)

with its per-token average log P / (n+1), and over a corpus the perplexity
exp(-Σ log P / Σ (n+1)). Useful to filter a corpus (low scores flag misaligned pairs)
or to check a model on references. Streams like ``nmt translate``: pairs are read in
chunks, sorted by length into batches and written back in input order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from nmt_cli import io as nio
from nmt_cli.decode.inference import Inference, batches
from nmt_cli.errors import NmtError
from nmt_cli.model import loss
from nmt_cli.model.batch import Batch
from nmt_cli.vocab import PAD

CHUNK = 2048  # pairs read at a time


@dataclass
class Pair:
    index: int  # 0-based line number
    src: list[int]
    tgt: list[int]
    logprob: float = 0.0

    @property
    def tokens(self) -> int:
        return len(self.tgt) + 1  # EOS included


@torch.no_grad()
def score_pairs(inference: Inference, pairs: list[Pair], batch_size: int) -> None:
    """Fill ``pair.logprob`` for every pair (an empty source still gets EOS to read).
    The model must score every word it was trained on: loaded with ``Inference.load(...,
    search=False)``. With ``output_vocab: target`` a reference word outside the model's
    output words is scored as UNK."""
    decoder = inference.model.decoder
    if decoder.output_ids is not None and decoder.columns is None:
        raise ValueError("forced decoding needs the whole output layer: load with search=False")
    ordered = sorted(pairs, key=lambda p: -len(p.src))
    for batch in batches(ordered, lambda p: len(p.src) + 1, batch_size, 0):
        padded = Batch.of([p.src for p in batch], [p.tgt for p in batch]).to(inference.device)
        with inference.autocast():
            logits = inference.model(padded.src, padded.src_lengths, padded.tgt_in)  # (batch, tgt_len, k)
        logp = torch.log_softmax(logits.float(), dim=-1)
        target = padded.tgt_out
        token_logp = logp.gather(2, decoder.target_columns(target).unsqueeze(2)).squeeze(2) * (
            target != PAD
        )  # (batch, tgt_len)
        for p, total in zip(batch, token_logp.sum(dim=1).tolist()):
            p.logprob = total


def read_pairs(
    inference: Inference, sources: Iterator[tuple[str, str]], names: tuple[str, str]
) -> Iterator[list[Pair]]:
    """Chunks of normalized, subword-split, truncated pairs from (source, reference) lines."""
    chunk: list[Pair] = []
    for index, (src_text, tgt_text) in enumerate(sources):
        where = (f"{names[0]}:{index + 1}", f"{names[1]}:{index + 1}")
        src = inference.split(inference.normalize(src_text), inference.src_sp, where[0])
        tgt = inference.split(inference.normalize(tgt_text), inference.tgt_sp, where[1])
        chunk.append(Pair(index, src, tgt))
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def counted_alike(src: str, ref: str) -> bool:
    """Whether ``src`` and ``ref`` are files counted to hold as many lines (else a one-line
    error), before any score is printed; ``False`` for a pipe, which can be read only once:
    its mismatch shows at its end (the caller holds its rows back until then)."""
    if not (Path(src).is_file() and Path(ref).is_file()):
        return False
    counts = [sum(1 for _ in nio.read_lines(path)) for path in (src, ref)]
    if counts[0] != counts[1]:
        raise NmtError(f"{src} has {counts[0]} lines but {ref} has {counts[1]}")
    return True


def perplexity(logprob: float, tokens: int) -> float:
    return loss.perplexity(-logprob, tokens)
