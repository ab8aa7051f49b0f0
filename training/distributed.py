"""Helpers that make a training function correct in one process and under ``torchrun``.

``torchrun`` sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR; ``training.dist_entry`` pins each rank to
its GPU (``cuda:LOCAL_RANK``) and initialises the process group (NCCL when every rank has a GPU of
its own, gloo on CPU) before calling the stage. A stage asks ``world()`` and ``device()``, puts its
model there, runs forward passes under ``autocast()`` and averages what it reports with
``all_reduce_sum``; every collective here moves its tensor to the backend's device (NCCL only
reduces CUDA tensors, gloo CPU ones).
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) outside torchrun."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def device() -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` when the node has a GPU for each of its ranks, else
    the CPU (more ranks than GPUs keeps every rank on the CPU, so all ranks agree on gloo)."""
    ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if torch.cuda.is_available() and ranks_here <= torch.cuda.device_count():
        return torch.device("cuda", local_rank())
    return torch.device("cpu")


def backend() -> str:
    """The process-group backend for this machine: NCCL with one GPU per rank, gloo otherwise."""
    return "nccl" if device().type == "cuda" else "gloo"


def _collective_device() -> torch.device:
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def autocast():
    """bf16 autocast on a GPU that has it (weights and optimizer state stay float32); a no-op on CPU
    and on older GPUs (fp16 would need loss scaling, so those train in float32)."""
    if device().type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum floats over all processes (identity in one process)."""
    if not is_distributed():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def all_reduce_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all processes (itself in one process), returned on the CPU."""
    if not is_distributed():
        return tensor
    moved = tensor.to(_collective_device())
    dist.all_reduce(moved, op=dist.ReduceOp.SUM)
    return moved.cpu()


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
    flat = torch.cat([g.reshape(-1) for g in grads]).to(_collective_device())
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))  # copy_ moves it back to the gradient's device
        offset += n
