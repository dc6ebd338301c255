"""Where tensors live and in what precision the matrix products run (train and translate)."""

from __future__ import annotations

import contextlib
import functools

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
