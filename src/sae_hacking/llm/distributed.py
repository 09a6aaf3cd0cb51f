"""torch.distributed under torchrun: which rank this is, its device, and summing tensors across ranks."""

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class RankInfo:
    """This process's place among the ranks (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher) set RANK and WORLD_SIZE."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_ranks(device: torch.device) -> RankInfo:
    """Join the process group when launched by torchrun (NCCL on CUDA, gloo on CPU)."""
    if not launched_by_torchrun():
        return RankInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return RankInfo(
        rank=dist.get_rank(),
        world=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def rank_device(device: torch.device, ranks: RankInfo) -> torch.device:
    """On CUDA each local rank gets its own GPU; CPU is shared."""
    if device.type == "cuda" and ranks.world > 1:
        return torch.device("cuda", ranks.local_rank)
    return device


def sum_across_ranks(tensor: Tensor, ranks: RankInfo) -> Tensor:
    """The elementwise sum of ``tensor`` over all ranks (a copy; the input is left alone)."""
    total = tensor.clone()
    if ranks.world > 1:
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def main_rank_makes(ranks: RankInfo, make: Callable[[], Path]) -> Path:
    """Rank 0 makes the run directory and every rank gets its path (collective).

    If rank 0 fails, the others are told so instead of waiting for it forever.
    """
    box: list[Any] = [None]
    try:
        if ranks.is_main:
            box = [str(make())]
    finally:
        if ranks.world > 1:
            dist.broadcast_object_list(box, src=0)
    if box[0] is None:
        raise RuntimeError("rank 0 could not make the run directory")
    return Path(box[0])


def barrier(ranks: RankInfo) -> None:
    """Wait for every rank (a no-op for one process)."""
    if ranks.world > 1:
        dist.barrier()


def shutdown(ranks: RankInfo) -> None:
    """Leave the process group if this process joined one."""
    if ranks.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
