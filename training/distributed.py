"""Helpers that make a training function correct in one process and under ``torchrun``.

``torchrun`` sets RANK/WORLD_SIZE/MASTER_ADDR; ``training.dist_entry`` initialises the process
group (gloo on CPU, NCCL on GPUs) before calling the stage, so a stage only asks ``world()`` and
averages what it reports with ``all_reduce_sum``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) outside torchrun."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum floats over all processes (identity in one process)."""
    if not is_distributed():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def average_gradients(model: torch.nn.Module) -> None:
    """Average gradients over processes after ``backward`` (what DDP does, without its wrapper).

    An explicit all-reduce keeps the model a plain ``PreTrainedModel`` (``save_pretrained`` and
    generation work unchanged) and, on CPU/gloo with small models, costs the same as DDP buckets.
    """
    if not is_distributed():
        return
    size = float(dist.get_world_size())
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n
