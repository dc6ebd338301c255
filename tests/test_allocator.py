"""allocator.release hands the heap's free pages back: resident memory falls to the live tensors."""

from __future__ import annotations

import sys

import pytest
import torch

from nmt_cli import allocator

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or allocator._glibc() is None,
                                reason="glibc's malloc_trim")
MB = 2**20


def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_release_returns_freed_heap_pages():
    torch.ones(16 * MB // 4)  # freed at once; freeing a 16 MB mmap block raises glibc's mmap threshold: 1 MB blocks now come from the heap
    blocks = [torch.ones(MB // 4) for _ in range(96)]
    pin = torch.ones(MB // 4)  # the heap's top stays in use, so free() alone cannot shrink the heap
    del blocks
    before = resident()
    allocator.release()
    assert before - resident() > 48 * MB
    assert pin.sum().item() == MB // 4
