"""The spool directory as a :class:`~mummi_ml.selector.source.PatchSource`: HDF5 patch files
written atomically by an external coupler (naming contract: :mod:`mummi_ml.patch.stream`).

Layout under ``SPOOL``::

    *.h5                      incoming files (a writer creates NAME.tmp and renames it to NAME.h5)
    claimed/rank-RRRRR/       files a selector rank took (``os.rename``: exactly one rank wins)
    archive/                  files a complete checkpoint covers (spool_after="archive")
    quarantine/               files that could not be read, with NAME.reason.json beside them

A claimed file stays in ``claimed/`` until a checkpoint covers its patches; after a crash the
restarted service re-ingests what is still there (or archives it if the checkpoint it restarts
from already covers it).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from mummi_ml.durable import rename, write_json_atomic
from mummi_ml.errors import PatchFileError
from mummi_ml.patch import PatchBatch, read_patches
from mummi_ml.patch.stream import (
    ARCHIVE_DIR,
    CLAIMED_DIR,
    QUARANTINE_DIR,
    REASON_SUFFIX,
    SPOOL_SUFFIX,
    claimed_dir,
)
from mummi_ml.selector.source import Arrival, Poll

__all__ = ["SpoolSource"]

log = logging.getLogger("mummi_ml.selector")


_MAX_NAME_BYTES = 200  # leaves room for ".N" and ".reason.json" under the usual 255-byte limit


def _short_name(name: str) -> str:
    """``name`` if it is short enough to get a reason file beside it, else a shortened name that
    keeps its start and suffix and adds a hash of the whole (distinct names stay distinct)."""
    if len(name.encode()) <= _MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    suffix = SPOOL_SUFFIX if name.endswith(SPOOL_SUFFIX) else ""
    head = name.encode()[:120].decode(errors="ignore")
    return f"{head}~{digest}{suffix}"


def _unique(dest: Path) -> Path:
    if not dest.exists():
        return dest
    stem, suf = dest.name.split(".", 1) if "." in dest.name else (dest.name, "")
    i = 1
    while True:
        cand = dest.with_name(f"{stem}.{i}.{suf}" if suf else f"{stem}.{i}")
        if not cand.exists():
            return cand
        i += 1


class SpoolSource:
    """Claim, read, quarantine and retire spool files for one selector rank (a
    :class:`~mummi_ml.selector.source.PatchSource`; the keys of its arrivals are file names).

    Args:
        spool_dir: the spool directory.
        rank, size: this rank and the number of selector ranks.
        files_per_poll: files claimed per :meth:`claim` call.
        after: ``archive`` or ``delete`` (what :meth:`retire` does).
    """

    def __init__(
        self, spool_dir: str | Path, rank: int = 0, size: int = 1, files_per_poll: int = 8,
        after: str = "archive",
    ):
        self.root = Path(spool_dir)
        self.rank, self.size = rank, size
        self.files_per_poll = files_per_poll
        self.after = after
        self.claimed_dir = claimed_dir(self.root, rank)
        for d in (self.root, self.claimed_dir, self.root / ARCHIVE_DIR,
                  self.root / QUARANTINE_DIR):
            d.mkdir(parents=True, exist_ok=True)
        self._backlog: list[Path] = []  # claimed by earlier runs, not covered: read first

    kind = "spool"

    # ---- PatchSource ---------------------------------------------------------------------------
    def recover(self, covered: Iterable[str]) -> None:
        """Adopt the files earlier runs left claimed; retire those ``covered`` names, read the
        rest (before new files) again."""
        adopted = self.adopt_claimed()
        covered = set(covered)
        self.retire([p.name for p in adopted if p.name in covered])
        self._backlog = [p for p in adopted if p.name not in covered]

    def poll(self) -> Poll:
        """Up to ``files_per_poll`` files (the backlog first, else newly claimed), read; a file
        that cannot be read is quarantined and counted in ``quarantined_files``."""
        files = self._backlog[: self.files_per_poll]
        self._backlog = self._backlog[len(files):]
        if not files:
            files = self.claim()
        out = Poll()
        for f in files:
            try:
                b = self.read(f)
            except Exception as exc:  # noqa: BLE001 - never die of input: quarantine it
                reason = str(exc) if isinstance(exc, PatchFileError) else (
                    f"{f.name}: unreadable ({type(exc).__name__}: {exc})")
                try:
                    self.quarantine(f, reason)
                except OSError as qexc:
                    log.error("rank %d: cannot quarantine %s: %s", self.rank, f.name, qexc)
                    continue
                out.counts.quarantined_files += 1
                log.warning("rank %d: quarantined file %s: %s", self.rank, f.name, exc)
                continue
            out.arrivals.append(Arrival(b, f.name, f.name))
        return out

    def is_open(self) -> bool:
        """Files are waiting (in the backlog or to be claimed)."""
        return bool(self._backlog) or bool(self.incoming())

    # ---- the steps -----------------------------------------------------------------------------

    def incoming(self) -> list[Path]:
        """Complete files waiting to be claimed, sorted by name (symbolic links included: they
        are claimed and then quarantined by :meth:`read`)."""
        return sorted(p for p in self.root.glob(f"*{SPOOL_SUFFIX}")
                      if p.is_symlink() or p.is_file())

    def claim(self) -> list[Path]:
        """Take up to ``files_per_poll`` incoming files into this rank's claimed directory."""
        files = self.incoming()
        if self.size > 1 and files:  # start at a rank-dependent offset to avoid contention
            k = self.rank * len(files) // self.size
            files = files[k:] + files[:k]
        got = []
        for f in files:
            if len(got) >= self.files_per_poll:
                break
            # only this rank writes its claimed directory, so a unique name stays unique
            dest = _unique(self.claimed_dir / f.name)
            try:
                rename(f, dest, fsync=False)
            except FileNotFoundError:  # another rank was faster
                continue
            except OSError as exc:
                log.warning("spool: cannot claim %s: %s", f.name, exc)
                continue
            got.append(dest)
        return got

    def adopt_claimed(self) -> list[Path]:
        """On start: take over files left in ``claimed/`` by earlier runs: those of old rank
        directories ``o`` with ``o % size == rank``. Returns this rank's claimed files (sorted)."""
        base = self.root / CLAIMED_DIR
        for d in sorted(base.glob("rank-*")):
            try:
                o = int(d.name.split("-")[1])
            except ValueError:
                continue
            if d == self.claimed_dir or o % self.size != self.rank:
                continue
            for f in sorted(d.glob(f"*{SPOOL_SUFFIX}")):
                rename(f, _unique(self.claimed_dir / f.name), fsync=False)
        return sorted(self.claimed_dir.glob(f"*{SPOOL_SUFFIX}"))

    @staticmethod
    def read(path: Path) -> PatchBatch:
        """All patches of a claimed file.

        Raises:
            PatchFileError: unreadable, foreign, not a regular file, or a symbolic link (a link
                could make the service copy any patch file it can read into its payloads and job
                directories; coupler writers rename regular files into the spool).
        """
        if path.is_symlink():
            raise PatchFileError(f"{path.name}: a symbolic link, not a regular file (refused)")
        return read_patches(path)

    def quarantine(self, path: Path, reason: str) -> Path:
        """Move an unreadable file to ``quarantine/`` with ``NAME.reason.json`` beside it."""
        dest = _unique(self.root / QUARANTINE_DIR / _short_name(path.name))
        note = dest.with_name(dest.name + REASON_SUFFIX)
        write_json_atomic(note, {"file": path.name, "reason": reason, "rank": self.rank,
                                 "time": time.time()}, fsync=False, indent=None)
        rename(path, dest, fsync=False)
        return dest

    def retire(self, names: list[str]) -> int:
        """Archive or delete claimed files (by name) that a complete checkpoint covers."""
        n = 0
        for name in names:
            p = self.claimed_dir / name
            if not p.exists():
                continue
            if self.after == "delete":
                p.unlink()
            else:
                rename(p, _unique(self.root / ARCHIVE_DIR / name), fsync=False)
            n += 1
        return n
