"""Multi-GPU data parallelism through ``torchrun`` (DDP), and the single-process default.

``torchrun --nproc_per_node N -m goldfish_prep_cli.main train ...`` sets RANK,
LOCAL_RANK and WORLD_SIZE; when they are absent the trainer runs as one
process. Rank 0 alone logs and writes checkpoints. NCCL on CUDA, gloo on CPU
(the CPU path is what the tests exercise).
"""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Distributed:
    """Join the process group torchrun describes in the environment, or run alone."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Distributed()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo", rank=rank, world_size=world)
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
    return Distributed(rank=rank, local_rank=local_rank, world_size=world, enabled=True)


def all_reduce_sum(value: float, state: Distributed, device: torch.device) -> float:
    """The sum of ``value`` over ranks (itself when running alone)."""
    if not state.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item())


def teardown_distributed(state: Distributed) -> None:
    if state.enabled and dist.is_initialized():
        dist.destroy_process_group()
