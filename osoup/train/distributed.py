"""Data-parallel training with torch.distributed (one process per device, launched by torchrun).

Why not DistributedDataParallel: the Soup computes gradients with ``torch.autograd.grad`` and
writes ``.grad`` itself (per-objective buffers for the Gramian, weighted direct gradients for
the other layers), so DDP's gradient hooks, which fire on ``.backward()``'s accumulation, never
see them. Instead the trainer reduces explicitly, twice per step:

- :func:`all_reduce_fused`: the Soup's per-objective buffers of the MOO layers (G1 and G2 of
  every level, plus its losses) in ONE collective, before λ is computed, so every rank builds
  the same Gramian and the same λ;
- :func:`all_reduce_buckets`: the remaining ``.grad`` tensors (direct layers, heads) flattened
  into a few buckets of ``bucket_mb`` each, launched asynchronously and waited for together —
  what DDP's bucketing does, without its hooks.

Both SUM: each rank's loss is its local sum divided by the GLOBAL count (tokens for CTC,
prediction terms for SSL) of that objective-half, so the sum over ranks is exactly the loss of
the union of the ranks' halves (:func:`global_count`).
"""
from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass
class DistContext:
    """Where this process stands: rank, world size, and the device it owns."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs to TensorBoard and the summary."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> tuple[DistContext, str]:
    """Join the process group that torchrun describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). NCCL when this rank gets a
    GPU, gloo on CPU. Returns the context and the device string this rank should use (``cuda:<local
    rank>`` for GPUs). Without torchrun: a single-process context and ``device`` unchanged.
    ``timeout_s`` bounds every collective, so a dead peer ends the job instead of hanging it."""
    if not launched_by_torchrun():
        return DistContext(), device
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
        backend = "nccl"
    else:
        device = "cpu"
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    log.info("rank %d of %d (local rank %d), backend %s, device %s", rank, world, local, backend, device)
    return DistContext(rank, world, local, backend), device


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_fused(tensors: list[torch.Tensor]) -> None:
    """Sum ``tensors`` over ranks, in place, with one collective (flattened into one float32
    buffer and copied back). A no-op without a process group."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1 or not tensors:
        return
    if len(tensors) == 1 and tensors[0].is_contiguous() and tensors[0].dtype == torch.float32:
        dist.all_reduce(tensors[0])
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    off = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[off : off + n].view_as(t))
        off += n


def all_reduce_buckets(tensors: list[torch.Tensor], bucket_mb: float = 25.0) -> None:
    """Sum ``tensors`` over ranks, in place: grouped by dtype into flat buckets of about
    ``bucket_mb`` MiB, all launched asynchronously, then copied back."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1 or not tensors:
        return
    limit = max(1, int(bucket_mb * 2**20))
    buckets: list[list[torch.Tensor]] = []
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        cur: list[torch.Tensor] = []
        size = 0
        for t in group:
            cur.append(t)
            size += t.numel() * t.element_size()
            if size >= limit:
                buckets.append(cur)
                cur, size = [], 0
        if cur:
            buckets.append(cur)
    pending = []
    for b in buckets:
        flat = torch.cat([t.reshape(-1) for t in b])
        pending.append((b, flat, dist.all_reduce(flat, async_op=True)))
    for b, flat, work in pending:
        work.wait()
        off = 0
        for t in b:
            n = t.numel()
            t.copy_(flat[off : off + n].view_as(t))
            off += n


def global_count(count: torch.Tensor | int | float, device: torch.device) -> torch.Tensor:
    """The sum over ranks of a per-rank count (tokens or SSL terms), as a float32 tensor
    clamped to >= 1: the denominator that makes the summed per-rank losses the global mean."""
    c = torch.as_tensor(count, dtype=torch.float32, device=device).clone()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(c)
    return c.clamp_min(1.0)


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (start from one model)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def assert_same_on_all_ranks(t: torch.Tensor, what: str) -> None:
    """Raise unless ``t`` is bit-identical on every rank (e.g. λ after its update)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    ref = t.detach().clone()
    dist.broadcast(ref, src=0)
    differs = (~torch.eq(ref, t.detach()).all()).to(torch.int32)
    dist.all_reduce(differs)
    if int(differs) != 0:
        raise RuntimeError(f"{what} differs between ranks ({int(differs)} rank(s) disagree with rank 0): {t.tolist()}")


def all_gather_objects(obj: object) -> list[object]:
    """Every rank's ``obj`` (e.g. RNG states for the checkpoint); ``[obj]`` without a group."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
