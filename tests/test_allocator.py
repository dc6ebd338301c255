"""allocator.release hands the heap's free pages back: resident memory falls to the live tensors;
limit_descriptor_cache caps the copies of product descriptors that ideep keeps on the heap."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from nmt_cli import allocator

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or allocator._glibc() is None, reason="glibc's malloc_trim"
)
MB = 2**20


def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_release_returns_freed_heap_pages():
    torch.ones(
        16 * MB // 4
    )  # freed at once; freeing a 16 MB mmap block raises glibc's mmap threshold: 1 MB blocks now come from the heap
    blocks = [torch.ones(MB // 4) for _ in range(96)]
    pin = torch.ones(MB // 4)  # the heap's top stays in use, so free() alone cannot shrink the heap
    del blocks
    before = resident()
    allocator.release()
    assert before - resident() > 48 * MB
    assert pin.sum().item() == MB // 4


def test_limit_descriptor_cache_keeps_the_users_setting(monkeypatch):
    monkeypatch.delenv("LRU_CACHE_CAPACITY", raising=False)
    allocator.limit_descriptor_cache()
    assert os.environ["LRU_CACHE_CAPACITY"] == str(allocator.DESCRIPTOR_CACHE)
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "512")
    allocator.limit_descriptor_cache()
    assert os.environ["LRU_CACHE_CAPACITY"] == "512"


# A child process: the CLI's process setup (which runs before every command and limits the
# cache), then bf16 products of 320 distinct shapes; prints how much the heap's bytes in use
# grew (mallinfo2).
_SHAPES = """
import ctypes, torch
import nmt_cli.runtime
nmt_cli.runtime.setup()
class Info(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]
libc = ctypes.CDLL("libc.so.6"); libc.mallinfo2.restype = Info
torch.set_num_threads(1)
w = torch.randn(768, 256, dtype=torch.bfloat16)
torch.nn.functional.linear(torch.randn(8, 256, dtype=torch.bfloat16), w)
before = libc.mallinfo2().uordblks
for i in range(320):
    torch.nn.functional.linear(torch.randn(8 * (i + 2), 256, dtype=torch.bfloat16), w)
print(libc.mallinfo2().uordblks - before)
"""


def _heap_growth(env: dict) -> int:
    out = subprocess.run([sys.executable, "-c", _SHAPES], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not hasattr(allocator._glibc(), "mallinfo2"), reason="glibc >= 2.33")
def test_the_cli_keeps_fewer_product_descriptors_on_the_heap():
    env = {k: v for k, v in os.environ.items() if k != "LRU_CACHE_CAPACITY"}
    default = _heap_growth({**env, "LRU_CACHE_CAPACITY": "1024"})  # ideep's own default
    if default < 20 * MB:
        pytest.skip(f"bf16 products cached {default / MB:.1f} MB: no oneDNN kernels here")
    assert _heap_growth(env) < 0.7 * default  # ideep keeps 64 descriptors, not 320
