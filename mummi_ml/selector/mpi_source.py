"""Patches from continuum coupler ranks of the same MPMD job (``mummi_ml.continuum.coupler_mpi``).

Unlike spool files, a batch received over MPI exists only in memory until the next checkpoint:
after a crash it is gone (the coupler does not resend). Use the spool for durable hand-over.
"""

from __future__ import annotations

import logging
from typing import Any

from mummi_ml.patch import PatchBatch

__all__ = ["MpiSource"]

log = logging.getLogger("mummi_ml.selector")


class MpiSource:
    """Non-blocking receiver on the world communicator of an MPMD layout.

    Args:
        layout: ``split_mpmd("selector")``'s result.
        max_batches: batches taken per :meth:`poll`.
    """

    def __init__(self, layout: Any, max_batches: int = 8):
        self.world = layout.world
        self.ends_left = int(layout.n_ends_expected)
        self.max_batches = int(max_batches)
        self.bad_messages = 0

    @property
    def done(self) -> bool:
        """Every coupler rank has sent END."""
        return self.ends_left <= 0

    def poll(self) -> list[tuple[PatchBatch, str]]:
        """Batches waiting now (never blocks when nothing is waiting)."""
        from mummi_ml.continuum.coupler_mpi import probe_batch, recv_batch
        from mummi_ml.errors import MummiMLError

        out: list[tuple[PatchBatch, str]] = []
        while len(out) < self.max_batches and self.ends_left > 0 and probe_batch(self.world):
            try:
                source, batch = recv_batch(self.world)
            except MummiMLError as exc:  # a header of another protocol: counted, never fatal
                self.bad_messages += 1
                log.error("MPI source: %s", exc)
                continue
            if batch is None:
                self.ends_left -= 1
                log.info("MPI source: END from world rank %d (%d to go)", source, self.ends_left)
            else:
                out.append((batch, f"mpi:rank{source}"))
        return out
