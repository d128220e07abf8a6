"""Patches from continuum coupler ranks of the same MPMD job, as a
:class:`~mummi_ml.selector.source.PatchSource` (wire protocol: :mod:`mummi_ml.patch.stream`).

Unlike spool files, a batch received over MPI exists only in memory until the next checkpoint:
after a crash it is gone (the coupler does not resend), so there is nothing to claim, recover or
retire. Use the spool for durable hand-over.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from mummi_ml.errors import MummiMLError
from mummi_ml.patch.stream import probe_batch, recv_batch
from mummi_ml.selector.source import Arrival, Poll

__all__ = ["MpiSource"]

log = logging.getLogger("mummi_ml.selector")


class MpiSource:
    """Non-blocking receiver on the world communicator of an MPMD layout.

    Args:
        layout: ``split_mpmd("selector")``'s result (or any object with ``world`` and
            ``n_ends_expected``).
        max_batches: batches taken per :meth:`poll`.
    """

    kind = "mpi"

    def __init__(self, layout: Any, max_batches: int = 8):
        self.world = layout.world
        self.ends_left = int(layout.n_ends_expected)
        self.max_batches = int(max_batches)

    @property
    def done(self) -> bool:
        """Every coupler rank has sent END."""
        return self.ends_left <= 0

    def recover(self, covered: Iterable[str]) -> None:
        """Nothing survives a restart: messages of an earlier run are gone."""

    def is_open(self) -> bool:
        """A coupler rank has not sent END yet."""
        return not self.done

    def retire(self, keys: list[str]) -> int:
        """Nothing to retire (a message is gone once received)."""
        return 0

    def poll(self) -> Poll:
        """Batches waiting now (never blocks when nothing is waiting); a message of another
        protocol is dropped and counted in ``bad_messages``."""
        out = Poll()
        while (len(out.arrivals) < self.max_batches and self.ends_left > 0
               and probe_batch(self.world)):
            try:
                source, batch = recv_batch(self.world)
            except MummiMLError as exc:  # a header of another protocol: counted, never fatal
                out.counts.bad_messages += 1
                log.error("MPI source: %s", exc)
                continue
            if batch is None:
                self.ends_left -= 1
                log.info("MPI source: END from world rank %d (%d to go)", source, self.ends_left)
            else:
                out.arrivals.append(Arrival(batch, f"mpi:rank{source}"))
        return out
