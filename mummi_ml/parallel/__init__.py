"""mummi_ml.parallel: launcher detection (mpiexec, srun, jsrun, flux run), rendezvous and
torch.distributed set-up (NCCL on GPUs, gloo on CPUs), and differentiable collectives."""

from mummi_ml.parallel.collectives import (
    all_gather_with_grad,
    all_reduce_sum_with_grad,
    is_distributed,
    world_size,
)
from mummi_ml.parallel.distributed import (
    DistContext,
    best_device,
    configure_threads,
    init_distributed,
    local_context,
)
from mummi_ml.parallel.launcher import LAUNCHERS, LaunchError, LaunchInfo, detect_launch
from mummi_ml.parallel.rendezvous import find_free_port, host_address, rendezvous_address

__all__ = [
    "LAUNCHERS",
    "LaunchError",
    "LaunchInfo",
    "detect_launch",
    "find_free_port",
    "host_address",
    "rendezvous_address",
    "DistContext",
    "best_device",
    "configure_threads",
    "init_distributed",
    "local_context",
    "all_gather_with_grad",
    "all_reduce_sum_with_grad",
    "is_distributed",
    "world_size",
]
