"""Data-parallel training over ``torch.distributed``: one process per worker, launched by torchrun.

The same code runs in three places without a change:
- single process (no torchrun variables): :func:`init` returns a world of one and every collective is a
  no-op;
- ``marlops train --nproc 2``: torchrun starts two local processes, gloo over loopback;
- a Kubeflow Trainer TrainJob or Training Operator PyTorchJob: the operator sets the torchrun
  configuration through ``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR`` …
  (torchrun reads its flags from ``PET_*``), torchrun sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, and
  nccl is used when the process sees a GPU.

Why an explicit all-reduce instead of wrapping the networks in ``DistributedDataParallel``: the
trainers call the actors through ``dist()``/``aux_loss()`` and several forward passes (two actors and a
critic) feed one backward, which DDP's per-forward reducer does not support without
``find_unused_parameters`` and static-graph caveats. :meth:`Dist.all_reduce_grads` does what DDP's
reducer does — average every gradient across workers after ``backward()``, in one flat bucket — and
:meth:`Dist.broadcast_module` does what DDP's constructor does, so the workers start and stay identical.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as td
from torch import nn


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: not initialised (single process)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def all_reduce_grads(self, params: list[nn.Parameter]) -> None:
        """Average gradients over workers (missing gradients count as zero, so every worker calls the
        collective with the same shapes even when one of them had no sample for some head)."""
        if not self.enabled:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        td.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def broadcast_module(self, module: nn.Module) -> None:
        """Every worker takes rank 0's parameters and buffers."""
        if not self.enabled:
            return
        for t in [*module.parameters(), *module.buffers()]:
            td.broadcast(t.data, src=0)

    def all_gather_rows(self, x: np.ndarray) -> np.ndarray:
        """Concatenate equally shaped arrays from every worker along axis 0 (small arrays: statistics)."""
        if not self.enabled:
            return x
        t = torch.as_tensor(np.ascontiguousarray(x), device=self.device)
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        td.all_gather(out, t)
        return torch.cat(out).cpu().numpy()

    def mean(self, value: float) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        td.all_reduce(t)
        return float(t.item()) / self.world_size

    def barrier(self) -> None:
        if self.enabled:
            td.barrier()


def init(timeout_s: float = 600.0) -> Dist:
    """Join the process group torchrun describes in the environment, or a world of one without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not td.is_initialized():
        td.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return Dist(rank, world, local_rank, backend)


def shutdown(d: Dist) -> None:
    if d.enabled and td.is_initialized():
        td.destroy_process_group()


def torchrun_args(nproc: int, module: str, args: list[str]) -> list[str] | None:
    """torchrun's argv for ``python -m module args`` on ``nproc`` local workers, or None when this process
    should just run: already a torchrun worker, or one process and no ``PET_*`` configuration."""
    if "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ:
        return None
    pet = "PET_NPROC_PER_NODE" in os.environ or "PET_NNODES" in os.environ
    if nproc <= 1 and not pet:
        return None
    argv: list[str] = []
    if not pet:  # local: a standalone rendezvous on this machine
        argv += ["--standalone", f"--nproc-per-node={nproc}"]
    # with PET_* torchrun takes nnodes/nproc/rendezvous from the environment the operator set
    return [*argv, "--max-restarts=0", "-m", module, *args]
