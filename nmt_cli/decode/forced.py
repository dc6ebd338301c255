"""Forced decoding: how probable the model finds a given translation.

For a source x and a reference y = y_1 … y_n, teacher forcing gives every
log p(y_t | y_<t, x) in one pass; a line's score is

    log P(y|x) = Σ_{t=1}^{n+1} log p(y_t | y_<t, x)      (y_{n+1} = EOS)

with its per-token average log P / (n+1), and over a corpus the perplexity
exp(-Σ log P / Σ (n+1)). Useful to filter a corpus (low scores flag misaligned pairs)
or to check a model on references. An ensemble scores each token as search does,
Σ_m w_m log p_m(y_t | y_<t, x) (``search/scorer.py``), a word outside a member's output
words counting as that member's UNK, as for one model. Streams like ``nmt translate``: pairs are read in
chunks, sorted by length into batches and written back in input order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from nmt_cli import device as devices
from nmt_cli import io as nio
from nmt_cli.decode.inference import Inference, ensemble_weights, load_all
from nmt_cli.errors import NmtError
from nmt_cli.model import loss
from nmt_cli.model.batch import Batch, token_batches
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
def score_pairs(
    inference: Inference | list[Inference], pairs: list[Pair], batch_size: int, weights: list[float] | None = None
) -> None:
    """Fill ``pair.logprob`` for every pair (an empty source still gets EOS to read) under
    a model or an ensemble (``weights``: default equal). A model must score every word it
    was trained on: loaded with ``Inference.load(..., search=False)``. With ``output_vocab:
    target`` a reference word outside the model's output words is scored as UNK."""
    members = inference if isinstance(inference, list) else [inference]
    weights = weights or [1.0 / len(members)] * len(members)
    for member in members:
        decoder = member.model.decoder
        if decoder.output_ids is not None and decoder.columns is None:
            raise ValueError("forced decoding needs the whole output layer: load with search=False")
    ordered = sorted(pairs, key=lambda p: -len(p.src))
    for batch in token_batches(ordered, [len(p.src) + 1 for p in ordered], 0, batch_size):
        padded = Batch.of([p.src for p in batch], [p.tgt for p in batch]).to(members[0].device)
        target = padded.tgt_out
        token_logp = 0.0
        for member, weight in zip(members, weights):
            with member.autocast():
                logits = member.model(padded.src, padded.src_lengths, padded.tgt_in)  # (batch, tgt_len, k)
            logp = torch.log_softmax(logits.float(), dim=-1)
            columns = member.model.decoder.target_columns(target).unsqueeze(2)
            token_logp = token_logp + logp.gather(2, columns).squeeze(2) * weight
        token_logp = token_logp * (target != PAD)  # (batch, tgt_len)
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


@dataclass
class Totals:
    """Sums over the scored lines, for the perplexity summary."""

    lines: int = 0
    tokens: int = 0
    logprob: float = 0.0

    def add(self, pair: Pair) -> None:
        self.lines, self.tokens, self.logprob = self.lines + 1, self.tokens + pair.tokens, self.logprob + pair.logprob

    @property
    def summary(self) -> str:
        per_token = self.logprob / max(self.tokens, 1)
        return (
            f"nmt score: {self.lines:,} lines, {self.tokens:,} target tokens; log-probability {self.logprob:.2f}, "
            f"{per_token:.4f} per token; perplexity {loss.perplexity(-self.logprob, self.tokens):.3f}"
        )


def score_file(
    model: Path | str | list[Path | str],
    src: str,
    ref: str,
    out: TextIO,
    json_lines: bool,
    batch_size: int,
    device: str,
    weights: str | list[float] | None = None,
) -> Totals:
    """Write each line's scores to ``out`` (TSV with a header, or JSON lines): the log-probability
    of the reference line in ``ref`` as a translation of the line in ``src`` under checkpoint
    ``model`` (several: an ensemble, with ``weights``), its tokens and their average."""
    members = load_all(model, {}, devices.resolve(device), search=False)
    weights, inference = ensemble_weights(weights, len(members)), members[0]
    held: list[str] = []  # rows of a piped input, written once its line count is known to match
    emit = out.write if counted_alike(src, ref) else held.append
    totals = Totals()
    if not json_lines:
        emit("line\tlogprob\ttokens\tavg_logprob\n")
    for chunk in read_pairs(inference, nio.paired_lines(src, ref), (src, ref)):
        score_pairs(members, chunk, batch_size, weights)
        for p in chunk:
            row = {"line": p.index + 1, "logprob": round(p.logprob, 4), "tokens": p.tokens}
            row["avg_logprob"] = round(p.logprob / p.tokens, 4)
            emit((json.dumps(row) if json_lines else "\t".join(str(v) for v in row.values())) + "\n")
            totals.add(p)
        out.flush()
    out.writelines(held)
    return totals
