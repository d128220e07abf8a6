"""The hand-over contract between patch producers (the continuum coupler) and consumers (the
selector): the spool directory's file naming and the MPI wire protocol. Both sides import it from
here, the patch layer, below the continuum model and the selector.

**Spool directory.** A writer creates ``NAME.h5.tmp`` (:data:`TMP_SUFFIX`) and renames it to
``NAME.h5`` (:data:`SPOOL_SUFFIX`) when the file is complete (:func:`mummi_ml.patch.write_patches`
does both); a reader only ever takes ``*.h5``. Batch ``seq`` of replica ``r`` is named
:func:`spool_name`. Readers keep their own files in sub-directories: :data:`CLAIMED_DIR`
``/rank-RRRRR`` (taken by one reader rank with ``os.rename``), :data:`ARCHIVE_DIR` (covered by a
checkpoint), :data:`QUARANTINE_DIR` (unreadable, with ``NAME.reason.json`` beside it).

**MPI** (MPMD launch ``mpiexec -n 2 mummi-ml couple --mpi ... : -n 2 mummi-ml select ...``).
Every rank of both programs calls :func:`split_mpmd` exactly once at start-up (collective over
COMM_WORLD). Messages (pickle-free numpy buffers on the *world* communicator, in this order, same
source):

1. ``TAG_HEADER`` (31001): int64 ``[8]`` = ``[n, schema_version, 37, 37, 14, replica,
   batch_seq, meta_itemsize]``; ``n = -1`` means END (no further messages from that sender).
2. ``TAG_X`` (31002): float32 ``[n, 37, 37, 14]`` raw concentrations, C order (only if n > 0).
3. ``TAG_META`` (31003): ``n`` records of :data:`META_DTYPE` sent as bytes (only if n > 0):
   ``y`` int32[2], ``id`` uint64, ``replica`` int32, ``time_us`` float64, ``centre_nm``
   float32[2], ``protein_id`` int64 (packed little-endian, 44 bytes per patch).

Routing: coupler local rank ``i`` sends every batch to world rank
``selector_ranks[i % n_selectors]``; when done, each coupler rank sends END to *every* selector
rank, so a selector expects ``len(coupler_ranks)`` ENDs. Sends are blocking (``Send``), which
gives back-pressure when a selector falls behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mummi_ml.errors import MummiMLError
from mummi_ml.patch.batch import PatchBatch
from mummi_ml.patch.constants import PATCH_SHAPE

__all__ = [
    "StreamError",
    "SPOOL_SUFFIX",
    "TMP_SUFFIX",
    "CLAIMED_DIR",
    "ARCHIVE_DIR",
    "QUARANTINE_DIR",
    "REASON_SUFFIX",
    "spool_name",
    "claimed_dir",
    "MPMDLayout",
    "split_mpmd",
    "send_batch",
    "send_end",
    "recv_batch",
    "probe_batch",
    "batch_to_buffers",
    "buffers_to_batch",
    "META_DTYPE",
    "PROTOCOL_VERSION",
    "TAG_HEADER",
    "TAG_X",
    "TAG_META",
    "HEADER_LEN",
    "END",
]


class StreamError(MummiMLError, ValueError):
    """A hand-over that breaks the contract (a message of another protocol, a bad MPMD role)."""


SPOOL_SUFFIX = ".h5"
"""Complete spool files end in this; nothing else in the spool directory is read."""
TMP_SUFFIX = ".tmp"
"""Appended to a spool file's name while it is written (then renamed away)."""
CLAIMED_DIR, ARCHIVE_DIR, QUARANTINE_DIR = "claimed", "archive", "quarantine"
"""Sub-directories of a spool directory kept by its readers."""
REASON_SUFFIX = ".reason.json"
"""``quarantine/NAME.reason.json``: why ``quarantine/NAME`` was refused."""


def spool_name(replica: int, seq: int) -> str:
    """File name of the ``seq``-th batch of ``replica`` in a spool directory."""
    return f"patches-r{replica:05d}-{seq:08d}{SPOOL_SUFFIX}"


def claimed_dir(spool_dir: str | Path, rank: int) -> Path:
    """Where reader rank ``rank`` keeps the files it claimed."""
    return Path(spool_dir) / CLAIMED_DIR / f"rank-{rank:05d}"


PROTOCOL_VERSION = 1
TAG_HEADER, TAG_X, TAG_META = 31001, 31002, 31003
HEADER_LEN = 8
END = -1
META_DTYPE = np.dtype(
    [
        ("y", "<i4", (2,)),
        ("id", "<u8"),
        ("replica", "<i4"),
        ("time_us", "<f8"),
        ("centre_nm", "<f4", (2,)),
        ("protein_id", "<i8"),
    ]
)
"""Per-patch metadata record of the wire format (packed, 44 bytes)."""

_ROLES = ("coupler", "selector")


@dataclass(frozen=True)
class MPMDLayout:
    """Who is who in an MPMD launch.

    Attributes:
        role: this rank's role.
        world: the world communicator (messages between programs travel on it).
        local: intra-communicator of this rank's role (``world.Split(color=role)``).
        coupler_ranks, selector_ranks: world ranks of each role, ascending.
    """

    role: str
    world: Any
    local: Any
    coupler_ranks: tuple[int, ...]
    selector_ranks: tuple[int, ...]

    @property
    def world_rank(self) -> int:
        return int(self.world.Get_rank())

    @property
    def local_rank(self) -> int:
        return int(self.local.Get_rank())

    @property
    def local_size(self) -> int:
        return int(self.local.Get_size())

    @property
    def n_ends_expected(self) -> int:
        """END messages a selector rank receives before every coupler is done."""
        return len(self.coupler_ranks)

    def selector_for(self, coupler_local_rank: int) -> int:
        """World rank of the selector that coupler local rank ``i`` sends its batches to."""
        if not self.selector_ranks:
            raise StreamError("MPMD layout: no selector ranks in this launch")
        return self.selector_ranks[coupler_local_rank % len(self.selector_ranks)]


def split_mpmd(role: Literal["coupler", "selector"], comm: Any = None) -> MPMDLayout:
    """Collective over ``comm`` (None: ``MPI.COMM_WORLD``): split the ranks by role.

    Every rank of every program of the launch must call it exactly once.
    """
    if role not in _ROLES:
        raise StreamError(f"role: expected one of {_ROLES}, got {role!r}")
    if comm is None:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    code = _ROLES.index(role)
    codes = np.empty(comm.Get_size(), dtype=np.int32)
    comm.Allgather(np.array([code], dtype=np.int32), codes)
    local = comm.Split(color=code, key=comm.Get_rank())
    ranks = np.arange(comm.Get_size())
    return MPMDLayout(
        role=role,
        world=comm,
        local=local,
        coupler_ranks=tuple(int(r) for r in ranks[codes == 0]),
        selector_ranks=tuple(int(r) for r in ranks[codes == 1]),
    )


def batch_to_buffers(batch: PatchBatch, batch_seq: int = 0) -> tuple[np.ndarray, ...]:
    """The three wire buffers of a batch: int64 header ``[8]``, float32 x, uint8 metadata."""
    n = len(batch)
    replica = int(batch.replica[0]) if n else 0
    header = np.array(
        [n, PROTOCOL_VERSION, *PATCH_SHAPE, replica, batch_seq, META_DTYPE.itemsize], np.int64
    )
    x = np.ascontiguousarray(batch.x, dtype=np.float32)
    meta = np.empty(n, dtype=META_DTYPE)
    meta["y"] = batch.y
    meta["id"] = batch.ids
    meta["replica"] = batch.replica
    meta["time_us"] = batch.time_us
    meta["centre_nm"] = batch.centre_nm
    meta["protein_id"] = batch.protein_id
    return header, x, meta.view(np.uint8)


def buffers_to_batch(x: np.ndarray, meta_bytes: np.ndarray) -> PatchBatch:
    """Inverse of :func:`batch_to_buffers` (without the header)."""
    meta = np.ascontiguousarray(meta_bytes).view(META_DTYPE)
    return PatchBatch(
        x=x,
        y=np.ascontiguousarray(meta["y"], dtype=np.int32),
        ids=np.ascontiguousarray(meta["id"], dtype=np.uint64),
        replica=np.ascontiguousarray(meta["replica"], dtype=np.int32),
        time_us=np.ascontiguousarray(meta["time_us"], dtype=np.float64),
        centre_nm=np.ascontiguousarray(meta["centre_nm"], dtype=np.float32),
        protein_id=np.ascontiguousarray(meta["protein_id"], dtype=np.int64),
    )


def send_batch(world_comm: Any, dest: int, batch: PatchBatch, batch_seq: int = 0) -> None:
    """Send a batch to world rank ``dest`` (blocking; header, then x and metadata if n > 0)."""
    header, x, meta = batch_to_buffers(batch, batch_seq)
    world_comm.Send(header, dest=dest, tag=TAG_HEADER)
    if len(batch):
        world_comm.Send(x, dest=dest, tag=TAG_X)
        world_comm.Send(meta, dest=dest, tag=TAG_META)


def send_end(world_comm: Any, dest: int) -> None:
    """Tell world rank ``dest`` that this sender is done (header with ``n = -1``)."""
    header = np.array([END, PROTOCOL_VERSION, *PATCH_SHAPE, 0, 0, META_DTYPE.itemsize], np.int64)
    world_comm.Send(header, dest=dest, tag=TAG_HEADER)


def probe_batch(world_comm: Any) -> bool:
    """True when a header (a batch or an END) is waiting from any source (non-blocking)."""
    from mpi4py import MPI

    return bool(world_comm.Iprobe(source=MPI.ANY_SOURCE, tag=TAG_HEADER))


def recv_batch(world_comm: Any, status: Any = None) -> tuple[int, PatchBatch | None]:
    """Receive the next batch from any coupler rank (blocking).

    Args:
        status: an ``MPI.Status`` filled from the header message (optional).

    Returns:
        ``(source world rank, batch)``; ``batch`` is None for END.

    Raises:
        StreamError: a header of another protocol version or patch shape.
    """
    from mpi4py import MPI

    st = status if status is not None else MPI.Status()
    header = np.empty(HEADER_LEN, dtype=np.int64)
    world_comm.Recv(header, source=MPI.ANY_SOURCE, tag=TAG_HEADER, status=st)
    source = st.Get_source()
    if header[1] != PROTOCOL_VERSION or tuple(header[2:5]) != PATCH_SHAPE:
        raise StreamError(
            f"coupler message from rank {source}: expected protocol {PROTOCOL_VERSION} and "
            f"patch shape {list(PATCH_SHAPE)}, got {int(header[1])} and {header[2:5].tolist()}"
        )
    n = int(header[0])
    if n == END:
        return source, None
    if n < 0 or header[7] != META_DTYPE.itemsize:
        raise StreamError(f"coupler message from rank {source}: bad header {header.tolist()}")
    x = np.empty((n, *PATCH_SHAPE), dtype=np.float32)
    meta = np.empty(n * META_DTYPE.itemsize, dtype=np.uint8)
    if n:
        world_comm.Recv(x, source=source, tag=TAG_X)
        world_comm.Recv(meta, source=source, tag=TAG_META)
    return source, buffers_to_batch(x, meta)
