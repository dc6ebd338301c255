"""Where tensors live and in what precision the matrix products run (train and translate)."""

from __future__ import annotations

import contextlib
import functools
import time

import torch
from torch import Tensor

from nmt_cli.errors import NmtError


def resolve(name: str) -> torch.device:
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``; asking for absent CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NmtError("--device cuda: no CUDA device is available (this torch build or machine has none)")
    return torch.device(name)


def autocast(device: torch.device, precision: str, key: str):
    """A context-manager factory: autocast to bf16/fp16, or nothing for fp32.

    fp16 is refused on CPU (no fast fp16 kernels there); ``key`` names the setting in the error.
    """
    if precision == "fp32":
        return contextlib.nullcontext
    if precision == "fp16" and device.type != "cuda":
        raise NmtError(f"{key} fp16 needs CUDA; use bf16 on CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtype)


def to_autocast_dtype(t: Tensor) -> Tensor:
    """``t`` in autocast's dtype (bf16/fp16) when autocast is on for its device, else as it is:
    what a matrix product would read it as, cast once rather than at every product."""
    kind = t.device.type
    return t.to(torch.get_autocast_dtype(kind)) if torch.is_autocast_enabled(kind) else t


def bf16_speedup(rows: int = 512, size: int = 512, reps: int = 5) -> float:
    """How many times faster a bf16 matrix product runs than an fp32 one on this CPU (> 1:
    faster), timed on a (rows, size) x (size, 3*size) product, the best of ``reps``.

    bf16 pays where the CPU multiplies it natively at more than fp32's rate (Intel AMX,
    AMD Zen 5); on an Intel CPU with AVX-512 BF16 but AMX hidden by its hypervisor it ran
    at about half fp32's rate (docs/performance.md). About 0.05 s.
    """
    rng = torch.Generator().manual_seed(0)  # its own: a run's random state stays as it was
    a, b = torch.randn(rows, size, generator=rng), torch.randn(size, 3 * size, generator=rng)

    def best(x: Tensor, y: Tensor) -> float:
        x @ y  # the first call compiles the kernel
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            x @ y
            times.append(time.perf_counter() - start)
        return min(times)

    return best(a, b) / best(a.bfloat16(), b.bfloat16())


def slow_bf16_note(device: torch.device, precision: str, key: str) -> str | None:
    """A one-line hint when ``precision`` is bf16 on a CPU where bf16 products run slower
    than fp32 ones (:func:`bf16_speedup` < 1), naming the setting ``key`` that switches; else None."""
    if precision != "bf16" or device.type != "cpu":
        return None
    ratio = bf16_speedup()
    if ratio >= 1.0:
        return None
    return (f"note: bf16 matrix products run at {ratio:.2f}x fp32's speed on this CPU (no AMX or native bf16 units); "
            f"{key}=fp32 may be faster (docs/performance.md)")
