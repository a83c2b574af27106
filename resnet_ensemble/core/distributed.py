"""Many processes through torch.distributed, as launched by torchrun.

Holds:
- ``Distributed``: this process's place in a launch (rank, world size, local rank, its device,
  whether it started the process group) and the few collectives the toolkit needs: a sum of
  counts, rank 0's tensor or object on every rank, a barrier. Under a single process every
  operation is the identity, so the same code runs with and without torchrun.
- ``from_environment``: join the launch that torchrun describes in the environment (or none),
  with the device resolved once for this rank; training and sweeps both start here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..blocks.runtime import resolve_device

__all__ = ["Distributed", "from_environment"]


@dataclass
class Distributed:
    """One process of a torchrun launch; the defaults are a lone process on the CPU.

    ``owns_group``: this object started the process group, so ``close`` ends it (a group the
    caller started is left to the caller). Use as a context manager to close on the way out.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and reports."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a tensor across ranks in place (counts are summed, never averaged)."""
        if self.active:
            # NCCL reduces only CUDA tensors, Gloo only CPU ones: move if the tensor is elsewhere.
            backend = torch.device("cuda" if dist.get_backend() == "nccl" else "cpu")
            if tensor.device.type == backend.type:
                dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            else:
                moved = tensor.to(backend)
                dist.all_reduce(moved, op=dist.ReduceOp.SUM)
                tensor.copy_(moved.to(tensor.device))
        return tensor

    def broadcast_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's values of a tensor on this rank's device, in place, on every rank."""
        if self.active:
            dist.broadcast(tensor, src=0)
        return tensor

    def from_main(self, obj: Any) -> Any:
        """Rank 0's value of ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        """End the process group if this object started it; safe to call twice."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self.owns_group = False

    def __enter__(self) -> Distributed:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def from_environment(device: str | torch.device | None = "auto") -> Distributed:
    """Join the process group that torchrun describes in the environment, if any.

    Args:
        device: the user's ``--device``, resolved here once (``runtime.resolve_device``). Under
            torchrun a CUDA request means one GPU per local rank, ``cuda:LOCAL_RANK``.
    Returns:
        this process's ``Distributed``, whose ``device`` is where its model and data go; a
        lone process (no torchrun, or WORLD_SIZE 1) gets the identity with the resolved device.
    Raises:
        ValueError: an unknown or missing device, or more processes on this machine than GPUs.
    """
    requested = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(device=requested)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    here = requested
    if requested.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"torchrun started {world} processes but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s); lower --nproc_per_node"
            )
        here = torch.device("cuda", local_rank)
        torch.cuda.set_device(here)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if here.type == "cuda" else "gloo")
    return Distributed(rank, world, local_rank, here, owns)
