"""Distributed plumbing for `torchrun`: who am I (RANK, WORLD_SIZE, LOCAL_RANK), the process group, DDP.

One process per GPU; every rank builds the same model, takes its shard of the global batch and makes the
same optimizer step; rank 0 does all file IO. On one process every helper here is a no-op.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 does all file IO."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1


def dist_from_env(env=None) -> DistInfo:
    """Read the torchrun environment without initialising anything (world 1 without torchrun)."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", 1))
    return DistInfo(rank=int(env.get("RANK", 0)), world_size=world, local_rank=int(env.get("LOCAL_RANK", 0)),
                    local_world_size=int(env.get("LOCAL_WORLD_SIZE", world)))


def init_distributed(info: DistInfo, device: str, threads: int | None = None) -> torch.device:
    """Join the process group (nccl on GPU, gloo on CPU), pick this rank's device and CPU threads."""
    if device == "cuda":
        torch.cuda.set_device(info.local_rank)
    if info.enabled and not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device == "cuda" else "gloo")
    if threads is None and device == "cpu" and info.enabled:  # share the cores between the local ranks
        threads = max(1, (os.cpu_count() or 1) // info.local_world_size)
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.device("cuda", info.local_rank) if device == "cuda" else torch.device("cpu")


def all_reduce_(x: torch.Tensor, info: DistInfo, op=None) -> torch.Tensor:
    """In-place all-reduce (sum by default); a no-op in a single process."""
    if info.enabled:
        torch_dist.all_reduce(x, op=op or torch_dist.ReduceOp.SUM)
    return x


def broadcast_object(obj, info: DistInfo):
    """Rank 0's value of `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    """Wait until every rank gets here; a no-op in a single process."""
    if info.enabled:
        torch_dist.barrier()


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's `obj`, in rank order, on every rank."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    torch_dist.all_gather_object(out, obj)
    return out


def wrap_ddp(model: torch.nn.Module, device: torch.device):
    """DDP with the official settings (`masked_diffusion/train_util.py: TrainLoop.__init__`):
    find_unused_parameters=False works because one backward follows both MDT passes; buffers are not
    re-broadcast each forward; 128 MB buckets."""
    no_buffer_sync = ({"forward_sync_buffers": False}
                      if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                      else {"broadcast_buffers": False})
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=False, bucket_cap_mb=128,
                                   gradient_as_bucket_view=True, **no_buffer_sync)
