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

:func:`limit_descriptor_cache` trims a second holder of heap memory: ideep, the layer
between torch and oneDNN, keeps its own cache of matrix-product descriptors beside
oneDNN's cache of compiled kernels (see ``model/shapes.py``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

# ideep's cache of matrix-product descriptors (``LRU_CACHE_CAPACITY``, default 1,024). A
# descriptor is large, and oneDNN's kernel cache keeps a copy of it with each compiled
# kernel anyway, so ideep's copies only spare the microseconds of building one again: a
# small cache takes a good share off training's peak memory for a few per cent of its
# speed (docs/performance.md).
DESCRIPTOR_CACHE = 64


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


def limit_descriptor_cache() -> None:
    """Keep ideep's descriptor cache at ``DESCRIPTOR_CACHE`` entries, unless the user has
    set ``LRU_CACHE_CAPACITY``. ideep reads it at its first matrix product, so this must
    run before any."""
    os.environ.setdefault("LRU_CACHE_CAPACITY", str(DESCRIPTOR_CACHE))
