"""Data-parallel training on torch.distributed, as started by ``torchrun``.

``torchrun --nproc_per_node N -m nmt_cli train ...`` starts N processes (ranks), with
RANK, LOCAL_RANK, WORLD_SIZE and the rendezvous address in their environment. Each rank
holds a copy of the model in DistributedDataParallel (DDP): every optimizer step the ranks
share out the step's batches, and DDP averages their gradients (gloo on CPU, nccl on
CUDA), so that the ranks stay identical and N ranks over batches b_1..b_N take the step
one process would over the same batches. Rank 0 alone validates, logs and writes;
decisions that change the trajectory (validation scores, stopping) are agreed by all
ranks. A process started without torchrun is rank 0 of a world of one, at no cost.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from nmt_cli.errors import NmtError


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: its rank, the local rank on its machine, how many."""

    rank: int = 0
    local: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that validates, logs and writes."""
        return self.rank == 0


def from_env() -> Ranks:
    """The ranks torchrun describes in the environment (rank 0 of 1 without it)."""
    try:
        return Ranks(
            int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        )
    except ValueError:
        raise NmtError("RANK, LOCAL_RANK and WORLD_SIZE must be integers (they are set by torchrun)") from None


def launched() -> bool:
    """Whether torchrun (or another launcher with the same environment) started this process."""
    return "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[Ranks]:
    """Join the run's process group (when launched) for the duration of training.

    The backend follows the device: nccl for CUDA, gloo for CPU. A world of one under
    torchrun still runs DDP, as it would on many ranks.
    """
    ranks = from_env()
    if not launched():
        yield Ranks()
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        if ranks.local >= torch.cuda.device_count():
            raise NmtError(
                f"local rank {ranks.local} has no GPU of its own: this machine has {torch.cuda.device_count()}; "
                "start at most that many processes per node (--nproc_per_node)"
            )
        torch.cuda.set_device(ranks.local)
    dist.init_process_group(backend, device_id=torch.device("cuda", ranks.local) if device.type == "cuda" else None)
    try:
        yield ranks
        dist.barrier()  # leave together: a rank that tears down early can abort the others' transport
    finally:
        gc.collect()  # DDP's reducer (in reference cycles) must go before the group it uses
        dist.destroy_process_group()


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """CUDA ranks each take the GPU of their local rank; CPU ranks share the CPU."""
    if device.type == "cuda" and dist.is_initialized():
        return torch.device("cuda", ranks.local)
    return device


def barrier() -> None:
    """Wait until every rank is here (nothing to wait for in a world of one)."""
    if dist.is_initialized():
        dist.barrier()


def from_main(value: Any) -> Any:
    """Rank 0's ``value``, on every rank (a picklable object)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not dist.is_initialized():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def total(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums of ``values`` over all ranks."""
    if not dist.is_initialized():
        return values
    summed = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(summed)
    return summed.tolist()


def share(group: list, ranks: Ranks) -> list:
    """This rank's part of a step's batches: every ``world``-th, from its rank on."""
    return group[ranks.rank :: ranks.world]
