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
    memory, state, feed = model.encode(src, lengths)
    limits = (lengths.float() * max_len_a + max_len_b).long().clamp(min=1).tolist()
    prev = torch.full((src.size(0),), SOS, dtype=torch.long, device=src.device)
    finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
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
