"""Where patches come from: the :class:`PatchSource` interface the service composes.

A source owns its inputs from hand-over to retirement: it claims them (so no other selector rank
takes them), reads them, quarantines what cannot be read (counted, never raised) and retires
the inputs a complete checkpoint covers. The service only polls, counts and hands the keys of
covered inputs back; it knows nothing of files or messages. Implementations:
:class:`mummi_ml.selector.spool.SpoolSource` (a spool directory, durable) and
:class:`mummi_ml.selector.mpi_source.MpiSource` (MPI messages, in memory until a checkpoint).
The hand-over contract with the producers is :mod:`mummi_ml.patch.stream`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mummi_ml.errors import MummiMLError
from mummi_ml.patch import PatchBatch
from mummi_ml.selector.counters import Counters

__all__ = ["Arrival", "Poll", "PatchSource", "open_sources", "SOURCE_KINDS"]

SOURCE_KINDS = ("spool", "mpi")
"""Values of ``selector.sources``."""


@dataclass(frozen=True)
class Arrival:
    """One batch read from a source.

    Attributes:
        batch: the patches.
        origin: where they came from, for logs and the quarantine log (a file name, ``mpi:rankN``).
        key: the durable input it was read from, handed back to :meth:`PatchSource.retire` once
            a complete checkpoint covers it (and recorded in that checkpoint); None when there is
            nothing to retire (an MPI message).
    """

    batch: PatchBatch
    origin: str
    key: str | None = None


@dataclass
class Poll:
    """What one :meth:`PatchSource.poll` brought: batches, and counts of refused inputs
    (``quarantined_files``, ``bad_messages``) to add to the rank's counters."""

    arrivals: list[Arrival] = field(default_factory=list)
    counts: Counters = field(default_factory=Counters)

    def extend(self, other: Poll) -> None:
        """Append ``other``'s arrivals and add its counts."""
        self.arrivals += other.arrivals
        self.counts.add(other.counts)


@runtime_checkable
class PatchSource(Protocol):
    """A stream of patch batches for one selector rank."""

    kind: str
    """One of :data:`SOURCE_KINDS` (for logs)."""

    def recover(self, covered: Iterable[str]) -> None:
        """On start, after the state is restored: take over inputs left claimed by earlier runs;
        retire those whose keys ``covered`` (the restored checkpoint) lists, read the rest
        again."""

    def poll(self) -> Poll:
        """Claim and read what is waiting now, never blocking; unreadable inputs are quarantined
        and counted, never raised."""

    def is_open(self) -> bool:
        """More may arrive (inputs waiting, or a producer not finished)."""

    def retire(self, keys: list[str]) -> int:
        """Archive or drop the inputs ``keys`` (a complete checkpoint covers them; keys of other
        sources are ignored). Returns the inputs retired."""


def open_sources(s: Any, rank: int, size: int, mpi_layout: Any = None) -> list[PatchSource]:
    """The sources ``selector.sources`` names, for rank ``rank`` of ``size``.

    Args:
        s: the ``selector:`` section (``sources``, ``spool_dir``, ``files_per_poll``,
            ``spool_after``).
        mpi_layout: ``split_mpmd("selector")``'s result (needed for ``mpi``).
    """
    from mummi_ml.selector.mpi_source import MpiSource
    from mummi_ml.selector.spool import SpoolSource

    unknown = [k for k in s.sources if k not in SOURCE_KINDS]
    if unknown:
        raise MummiMLError(f"selector.sources: unknown source {unknown[0]!r} "
                           f"(expected {list(SOURCE_KINDS)})")
    out: list[PatchSource] = []
    for kind in [k for k in SOURCE_KINDS if k in s.sources]:  # polled in this order
        if kind == "spool":
            out.append(SpoolSource(s.spool_dir, rank, size, s.files_per_poll, s.spool_after))
        elif kind == "mpi":
            if mpi_layout is None:
                raise MummiMLError("selector.sources has 'mpi' but no MPMD layout was given "
                                   "(launch with `mummi-ml select --mpmd` under mpiexec)")
            out.append(MpiSource(mpi_layout))
    return out
