"""Greedy decoding: at each step take the single most probable word.

Batched: all sentences step together; a sentence that has produced EOS is finished and
its later outputs are ignored; decoding stops when every sentence is finished or at the
length limit ``max_len_a * src_len + max_len_b`` (per sentence).
"""

from __future__ import annotations

import torch
from torch import Tensor

from nmt_cli.model.seq2seq import Seq2Seq
from nmt_cli.prep.subwords import EOS, SOS


@torch.no_grad()
def greedy(model: Seq2Seq, src: Tensor, lengths: Tensor, max_len_a: float, max_len_b: int) -> list[list[int]]:
    """Best-first word ids per sentence (without SOS/EOS); src (batch, src_len)."""
    return greedy_encoded(model, model.encode(src, lengths), lengths, max_len_a, max_len_b)


@torch.no_grad()
def greedy_encoded(model: Seq2Seq, encoded: tuple, lengths: Tensor, max_len_a: float, max_len_b: int) -> list[list[int]]:
    """:func:`greedy` from the output of ``model.encode`` (when the caller has it already)."""
    memory, state, feed = encoded
    batch, device = memory.mask.size(0), memory.mask.device
    limits = (lengths.float() * max_len_a + max_len_b).long().clamp(min=1).tolist()
    prev = torch.full((batch,), SOS, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    steps = []
    for _ in range(max(limits)):
        att, state, _ = model.decoder.step(model.decoder.embed(prev), state, feed, memory)
        if feed is not None:
            feed = att
        prev = model.decoder.logits(att).argmax(dim=-1)  # (batch,)
        steps.append(prev)
        finished |= prev == EOS
        if bool(finished.all()):
            break
    rows = torch.stack(steps, dim=1).tolist()  # (batch, steps)
    return [_until_eos(row[:limit]) for row, limit in zip(rows, limits)]


def _until_eos(ids: list[int]) -> list[int]:
    return ids[: ids.index(EOS)] if EOS in ids else ids
