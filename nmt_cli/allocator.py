"""The C heap under torch's CPU tensors.

glibc's malloc serves a large block with ``mmap`` (returned to the system when freed)
and a smaller one from its heap. After a large block is freed it raises that size
threshold, so that most of a training step's activations (hundreds of kB to a few MB
each, thousands of them a step) come from the heap; freed heap memory stays resident
where other blocks pin it. Peak RSS then grows over the steps to well above the
largest step's live tensors. :func:`release` hands the free pages back (``malloc_trim``),
so the steps after it start from the live tensors alone; the training loop calls it every
few steps, as pages handed back cost a page fault each when a step touches them again.

Other C libraries (musl, macOS) manage memory their own way: there it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _glibc():
    """The C library when it is glibc (it has ``malloc_trim``), else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def release() -> None:
    """Return the heap's free pages to the system (glibc); a few ms."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
