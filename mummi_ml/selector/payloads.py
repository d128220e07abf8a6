"""Patch payloads on disk: one small HDF5 segment file per ingested batch and rank.

A candidate's payload location is ``(src, seg, row)``: the segment ``seg`` in the directory of
rank ``src`` (the rank that ingested it; after a restart on another rank count a candidate may
live on a rank other than ``src``). Segments are written atomically (patch file API, no
compression: ingest speed matters more than disk here) and never modified; a segment is deleted
once no candidate of a complete checkpoint refers to it. Segments are not fsynced one by one as
they are written (that was half the cost of ingest): :meth:`PayloadStore.sync` flushes every
segment written since the last call, and the checkpoint calls it before it writes anything, so
a complete checkpoint never refers to a segment that is not on stable storage (a crash before
that restarts from the previous checkpoint, which does not refer to them). The state directory
is shared by all ranks, which is how rank 0 reads the payload of a pick made on another rank.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mummi_ml.durable import fsync_dir, fsync_file
from mummi_ml.patch import PatchBatch, PatchFile, PatchWriter

__all__ = ["PayloadStore"]


class PayloadStore:
    """Segments of one rank under ``root/rank-RRRRR/seg-SSSSSSSS.h5``.

    Args:
        root: payload directory (shared by all ranks).
        rank: this rank (the directory it writes).
        next_seg: number of the next segment to write (from the checkpoint on restart).
    """

    def __init__(self, root: str | Path, rank: int, next_seg: int = 0):
        self.root = Path(root)
        self.rank = int(rank)
        self.next_seg = int(next_seg)
        self.dir(self.rank).mkdir(parents=True, exist_ok=True)
        self.unsynced: list[Path] = []  # segments written since the last sync()

    def dir(self, src: int) -> Path:
        return self.root / f"rank-{src:05d}"

    def path(self, src: int, seg: int) -> Path:
        return self.dir(src) / f"seg-{seg:08d}.h5"

    def put(self, batch: PatchBatch) -> tuple[int, int, np.ndarray]:
        """Write a batch as a new segment; returns ``(src, seg, rows int32 [n])``."""
        seg = self.next_seg
        path = self.path(self.rank, seg)
        with PatchWriter(
            path, attrs={"created_by": "mummi-ml selector"},
            # uncompressed chunks take their full size on disk: no larger than the batch
            chunk_patches=min(64, max(1, len(batch))), compression_level=0, durable=False,
        ) as w:
            w.append(batch)
        self.unsynced.append(path)
        self.next_seg += 1
        return self.rank, seg, np.arange(len(batch), dtype=np.int32)

    def sync(self) -> int:
        """Flush the segments written since the last call, and this rank's directory, to stable
        storage; returns how many segments were flushed."""
        n = len(self.unsynced)
        for path in self.unsynced:
            if path.exists():  # one deleted behind our back must not stop the checkpoint
                # (its candidates fail at emission, which records them)
                fsync_file(path)
        if n:
            fsync_dir(self.dir(self.rank))
        self.unsynced = []
        return n

    def get(self, src: int, seg: int, row: int) -> PatchBatch:
        """The payload of one candidate (a PatchBatch of length 1)."""
        with PatchFile(self.path(src, seg)) as f:
            return f[np.array([row])]

    def read_rows(self, src: int, seg: int, rows: np.ndarray) -> PatchBatch:
        """The payloads of rows ``rows`` (int ``[p]``, any order) of one segment, in that order
        (a dense set of rows is read as one slice: twice as fast as chunk by chunk)."""
        rows = np.asarray(rows, dtype=np.int64)
        with PatchFile(self.path(src, seg)) as f:
            if len(rows) == 0:
                return f[rows]
            lo, hi = int(rows.min()), int(rows.max()) + 1
            if hi - lo <= 2 * len(rows):
                return f[lo:hi].subset(rows - lo)
            return f[rows]

    def collect_garbage(self, live: set[tuple[int, int]]) -> int:
        """Delete this rank's segments not in ``live`` (pairs ``(src, seg)`` referenced by any
        rank's checkpointed pool); returns how many were deleted."""
        n = 0
        for p in self.dir(self.rank).glob("seg-*.h5"):
            seg = int(p.stem.split("-")[1])
            if (self.rank, seg) not in live and seg < self.next_seg:
                os.unlink(p)
                n += 1
        return n
