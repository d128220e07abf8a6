"""Where do the ranks meet? The rendezvous address of torch.distributed, found without user help.

Order of preference:

1. ``MASTER_ADDR`` and ``MASTER_PORT`` when both are set (the user, or torchrun, decided);
2. with more than one rank and mpi4py importable: rank 0 takes its host's address and a free TCP
   port and broadcasts both over ``MPI.COMM_WORLD`` (works under every MPI launcher, also across
   nodes);
3. otherwise a :class:`~mummi_ml.parallel.launcher.LaunchError` that says to set the two variables.

A single rank needs no rendezvous: it gets ``127.0.0.1`` and a free port.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from mummi_ml.parallel.launcher import LaunchError, LaunchInfo

__all__ = ["find_free_port", "host_address", "rendezvous_address"]


def find_free_port(host: str = "") -> int:
    """A TCP port that was free a moment ago on this host (bind to port 0 and let the OS choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, 0))
        return int(s.getsockname()[1])


def host_address() -> str:
    """This host's address as other nodes should see it: the IPv4 of its hostname, else the name."""
    name = socket.gethostname()
    try:
        addr = socket.gethostbyname(name)
    except OSError:
        return name
    return name if addr.startswith("127.") and name not in ("localhost",) else addr


def _mpi_world():
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_WORLD


def rendezvous_address(
    info: LaunchInfo, env: Mapping[str, str] | None = None, comm=None
) -> tuple[str, int]:
    """``(address, port)`` of rank 0's TCP store, identical on every rank.

    Args:
        info: this process's place in the job (:func:`detect_launch`).
        env: environment to read MASTER_ADDR / MASTER_PORT from (default ``os.environ``).
        comm: an mpi4py communicator spanning the job (default ``MPI.COMM_WORLD`` if importable).

    Raises:
        LaunchError: several ranks, no MASTER_ADDR/MASTER_PORT and no MPI to broadcast over, or an
            MPI world whose size differs from the launcher's.
    """
    env = os.environ if env is None else env
    addr, port = env.get("MASTER_ADDR"), env.get("MASTER_PORT")
    if addr and port:
        try:
            return addr, int(port)
        except ValueError:
            raise LaunchError(f"MASTER_PORT: expected an integer port, got {port!r}") from None
    if not info.is_parallel:
        return "127.0.0.1", find_free_port("127.0.0.1")
    if comm is None:
        comm = _mpi_world()
    if comm is None:
        raise LaunchError(
            f"{info.launcher}: {info.size} ranks but no rendezvous address: install mpi4py, "
            "or export MASTER_ADDR (rank 0's host) and MASTER_PORT (a free port)"
        )
    if comm.Get_size() != info.size or comm.Get_rank() != info.rank:
        raise LaunchError(
            f"{info.launcher}: launcher says rank {info.rank} of {info.size}, MPI says rank "
            f"{comm.Get_rank()} of {comm.Get_size()} (is mpi4py built against this launcher's MPI?)"
        )
    payload = (host_address(), find_free_port()) if info.rank == 0 else None
    addr, port = comm.bcast(payload, root=0)
    return str(addr), int(port)
