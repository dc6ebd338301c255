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


# bf16 must be this many times faster than fp32 on the probe for ``auto`` to choose it: a
# noisy machine near 1x would otherwise flip between runs (docs/performance.md).
AUTO_MARGIN = 1.2


SCREEN = (128, 512, 512)  # (rows, k, n): without native bf16 units a bf16 call takes about 25 ms, fp32's 0.4


def bf16_speedup(shapes: list[tuple[int, int, int]] = ((128, 512, 1536),), reps: int = 3) -> float:
    """How many times faster bf16 matrix products run than fp32 ones on this CPU (> 1:
    faster), over ``shapes`` (rows, k, n), each the best of ``reps`` interleaved runs.

    bf16 pays where the CPU multiplies it natively at more than fp32's rate (Intel AMX,
    AMD Zen 4/5); without native units (AVX2-only CPUs) it runs at a few hundredths of
    fp32's rate. A small product, :data:`SCREEN`, goes first, fp32 and bf16 in turn: where
    even the fastest of its bf16 calls takes far longer than a typical fp32 one, the probe
    ends there, short on such CPUs (docs/performance.md). A busy CPU slows both alike, so
    it goes on to the model's shapes, which alone count towards the ratio.
    """
    rng = torch.Generator().manual_seed(0)  # its own: a run's random state stays as it was

    def timed(rows: int, k: int, n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``reps`` fp32 and bf16 calls of one product shape, in turn: noise hits both."""
        a, b = torch.randn(rows, k, generator=rng), torch.randn(k, n, generator=rng)
        a16, b16 = a.bfloat16(), b.bfloat16()
        _timed(a, b)  # the first call of a shape prepares its kernel
        return tuple(zip(*((_timed(a, b), _timed(a16, b16)) for _ in range(reps))))

    fp32, bf16 = timed(*SCREEN)
    typical = sorted(fp32)[reps // 2]
    if min(bf16) > 20 * typical + 0.005:  # far slower even allowing for compiling
        return typical / min(bf16)
    fp32_total = bf16_total = 0.0
    for shape in shapes:
        fp32, bf16 = timed(*shape)
        fp32_total, bf16_total = fp32_total + min(fp32), bf16_total + min(bf16)
    return fp32_total / bf16_total


def _timed(x: Tensor, y: Tensor) -> float:
    start = time.perf_counter()
    x @ y
    return time.perf_counter() - start


def resolve_precision(requested: str, device: torch.device, shapes: list[tuple[int, int, int]]) -> tuple[str, str]:
    """The concrete precision for ``requested`` (``auto``, fp32, bf16 or fp16) and why.

    ``auto``: on a CPU, bf16 where the probe (:func:`bf16_speedup` over the model's own
    product shapes) finds it at least ``AUTO_MARGIN`` times faster than fp32, else fp32; on
    CUDA, fp32, faster than autocast for models of this size (docs/performance.md).
    """
    if requested != "auto":
        return requested, "as asked"
    if device.type != "cpu":
        return "fp32", f"fp32 on {device.type}: faster than autocast for models of this size"
    return auto_choice(bf16_speedup(shapes))


def auto_choice(speedup: float) -> tuple[str, str]:
    """What ``auto`` picks on a CPU where bf16 runs ``speedup`` times as fast as fp32, and why."""
    return "bf16" if speedup >= AUTO_MARGIN else "fp32", f"bf16 {speedup:.2f}x fp32 on this CPU"


def int8_products() -> bool:
    """Whether fbgemm serves int8 matrix products here (x86 CPUs with AVX2 or later):
    there they run 2-5 times as fast as fp32's (docs/performance.md)."""
    return torch.backends.quantized.engine in ("x86", "fbgemm")


def slow_bf16_note(device: torch.device, precision: str, key: str) -> str | None:
    """A one-line hint when bf16 was asked for explicitly on a CPU where bf16 products run
    slower than fp32 ones (:func:`bf16_speedup` < 1), naming the setting ``key`` that
    switches; else None."""
    if precision != "bf16" or device.type != "cpu":
        return None
    ratio = bf16_speedup()
    if ratio >= 1.0:
        return None
    return (
        f"note: bf16 matrix products run at {ratio:.2f}x fp32's speed on this CPU (no native bf16 units); "
        f"{key}=auto or fp32 is faster (docs/performance.md)"
    )
