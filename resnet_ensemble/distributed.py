"""Many processes through torch.distributed, as launched by torchrun.

Holds ``Distributed``: rank, world size, the device for this rank, and the two collectives the
toolkit needs (a sum of counts, and rank 0's object sent to all). Under a single process every
operation is the identity, so the same code runs with and without torchrun.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Distributed", "from_environment"]


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def device(self, requested: str) -> str:
        """One GPU per local rank under torchrun; otherwise what the user asked for."""
        if self.active and torch.cuda.is_available() and requested in ("auto", "cuda"):
            return f"cuda:{self.local_rank}"
        return requested

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a tensor across ranks in place (counts are summed, never averaged)."""
        if self.active:
            backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            moved = tensor.to(backend_device)
            dist.all_reduce(moved, op=dist.ReduceOp.SUM)
            tensor.copy_(moved.to(tensor.device))
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
        if self.active and dist.is_initialized():
            dist.destroy_process_group()


def from_environment() -> Distributed:
    """Join the process group that torchrun describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return Distributed(rank=rank, world=world, local_rank=local_rank)
