"""torch.distributed set-up for data-parallel training: process group, device and threads.

:func:`init_distributed` is the one call a training script makes (it replaces Horovod's
``hvd.init()``)::

    ctx = init_distributed()          # reads the launcher's environment, finds the rendezvous
    model.to(ctx.device)              # cuda:<local rank> on GPU nodes, cpu otherwise
    ...
    ctx.close()

Backend: NCCL when the process has a GPU, gloo on CPUs. One GPU per local rank
(``cuda:{local_rank % device_count}``). A single process (no launcher) gets a context with
``size == 1`` and no process group at all.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mummi_ml.parallel.launcher import LaunchError, LaunchInfo, detect_launch
from mummi_ml.parallel.rendezvous import rendezvous_address

__all__ = [
    "DistContext", "init_distributed", "local_context", "best_device", "configure_threads"
]


def best_device(local_rank: int = 0, prefer: str = "auto") -> torch.device:
    """The device a rank should compute on: ``cuda:{local_rank % n_gpus}`` if any GPU, else cpu.

    Args:
        local_rank: rank on this node.
        prefer: ``auto`` (GPU if present), ``cpu`` or ``cuda`` (error if none).
    """
    if prefer not in ("auto", "cpu", "cuda"):
        raise LaunchError(f"device: expected 'auto', 'cpu' or 'cuda', got {prefer!r}")
    if prefer == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if prefer == "cuda":
        raise LaunchError("device: 'cuda' requested but torch sees no GPU")
    return torch.device("cpu")


def configure_threads(num_threads: int, local_size: int | None) -> int:
    """Set torch's intra-op CPU threads for this rank and return the number used.

    ``num_threads > 0`` is used as given. ``0`` means: the CPUs this process may run on, divided
    by the ranks sharing the node (1 thread per rank when ranks outnumber cores), so that ranks
    on one node do not oversubscribe it. ``OMP_NUM_THREADS`` is exported for child processes.
    """
    if num_threads < 0:
        raise LaunchError(f"num_threads: expected >= 0, got {num_threads}")
    if num_threads == 0:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - macOS
            cpus = os.cpu_count() or 1
        num_threads = max(1, cpus // max(1, local_size or 1))
    torch.set_num_threads(num_threads)
    os.environ["OMP_NUM_THREADS"] = str(num_threads)
    return num_threads


@dataclass
class DistContext:
    """The parallel context of one rank.

    Attributes:
        info: launcher, rank, size, local rank.
        device: the torch device this rank computes on.
        backend: ``nccl``, ``gloo`` or ``none`` (single process).
        address: rendezvous ``host:port`` (empty for a single process).
    """

    info: LaunchInfo
    device: torch.device
    backend: str
    address: str = ""

    @property
    def rank(self) -> int:
        return self.info.rank

    @property
    def size(self) -> int:
        return self.info.size

    @property
    def is_root(self) -> bool:
        """True on rank 0 (the one that writes files and shows progress)."""
        return self.info.rank == 0

    @property
    def distributed(self) -> bool:
        """True when a process group spans several ranks."""
        return self.backend != "none"

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process)."""
        if self.distributed:
            if self.backend == "nccl":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def close(self) -> None:
        """Destroy the process group (safe to call twice)."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()
        self.backend = "none"


def init_distributed(
    device: str = "auto",
    num_threads: int = 0,
    timeout_s: float = 1800.0,
    env: Mapping[str, str] | None = None,
    comm=None,
) -> DistContext:
    """Detect the launcher, pick the device and threads, and join the process group.

    Args:
        device: ``auto`` (GPU if present), ``cpu`` or ``cuda``.
        num_threads: torch CPU threads per rank, 0 = cores of the node / ranks on it.
        timeout_s: how long collectives and the rendezvous may wait (s).
        env: environment (default ``os.environ``).
        comm: mpi4py communicator for the address broadcast (default ``COMM_WORLD`` if importable).

    Returns:
        The rank's :class:`DistContext`; with more than one rank the default process group is
        initialised (NCCL on GPU, gloo on CPU).
    """
    info = detect_launch(env)
    dev = best_device(info.local_rank, device)
    configure_threads(num_threads, info.local_size)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not info.is_parallel:
        return DistContext(info, dev, "none")
    if dist.is_initialized():
        backend = dist.get_backend()
        if dist.get_world_size() != info.size or dist.get_rank() != info.rank:
            raise LaunchError(
                f"torch.distributed already initialised as rank {dist.get_rank()} of "
                f"{dist.get_world_size()}, launcher says {info.rank} of {info.size}"
            )
        return DistContext(info, dev, str(backend))
    addr, port = rendezvous_address(info, env, comm)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    try:
        dist.init_process_group(
            backend=backend,
            init_method=f"tcp://{addr}:{port}",
            rank=info.rank,
            world_size=info.size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    except (RuntimeError, ValueError) as exc:
        raise LaunchError(
            f"{info.launcher}: rank {info.rank} could not join the {backend} process group at "
            f"{addr}:{port}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    return DistContext(info, dev, backend, f"{addr}:{port}")


def local_context(device: str = "auto", num_threads: int = 0) -> DistContext:
    """A one-process context whatever the launcher: for work that each rank of an MPI job does
    on its own (e.g. every rank training a different ablation with ``train_model(ctx=...)``)."""
    info = LaunchInfo("single", 0, 1, 0, 1)
    launched = detect_launch()
    dev = best_device(launched.local_rank, device)
    configure_threads(num_threads, launched.local_size)
    return DistContext(info, dev, "none")
