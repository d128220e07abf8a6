"""Append-only write-ahead journal of job submissions (JSON lines, flushed and fsynced).

Each line is one event about a job name::

    {"event": "intent",    "name": "mummi-42-1", "patch_id": 42, "attempt": 1, "t": ...}
    {"event": "submitted", "name": "mummi-42-1", "job_id": "1234", "adopted": false, "t": ...}
    {"event": "intent",    "name": "mummi-42-2", "patch_id": 42, "attempt": 2,
     "last_exit_code": 3, "last_reason": "exit code 3", "t": ...}      # a retry
    {"event": "cancel",    "name": "mummi-42-2", "patch_id": 42, "t": ...}   # JobEmitter.cancel
    {"event": "final",     "patch_id": 42, "name": "mummi-42-2", "state": "completed",
     "attempts": 2, "exit_code": 0, "reason": "", "t": ...}

The intent is on disk before the backend hears of the job, so a crash at any point leaves either
no trace (nothing was submitted) or an intent that :meth:`JobEmitter.recover` reconciles with the
backend by job name. A torn last line (a crash in the middle of a write) is ignored on replay;
:meth:`Journal.replay` truncates it away before new lines are appended.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mummi_ml.durable import append_jsonl, write_text_atomic
from mummi_ml.errors import MummiMLError
from mummi_ml.jsonutil import json_dumps_strict

__all__ = ["Journal", "JournalError", "JOURNAL_EVENTS"]

log = logging.getLogger(__name__)

JOURNAL_EVENTS = ("intent", "submitted", "cancel", "final")


class JournalError(MummiMLError, OSError):
    """The journal file is unreadable or has a corrupt line before its end."""


class Journal:
    """An append-only JSON-lines file; every :meth:`append` is durable when it returns.

    Args:
        path: journal file (created with its parent directory if missing).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def replay(self) -> Iterator[dict[str, Any]]:
        """Yield every complete event in order; drop a torn last line (truncating the file)."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good_end = 0
        lines = data.split(b"\n")
        for i, raw in enumerate(lines):
            last = i == len(lines) - 1
            if last and raw == b"":
                break
            try:
                event = json.loads(raw)
                if not isinstance(event, dict) or event.get("event") not in JOURNAL_EVENTS:
                    raise ValueError("not a journal event")
            except ValueError:
                if last:  # no newline after it: a write cut short by a crash
                    log.warning(
                        "journal %s: dropping a torn last line (%d bytes)", self.path, len(raw)
                    )
                    self._truncate(good_end)
                    return
                raise JournalError(
                    f"{self.path}: line {i + 1} is not a journal event: {raw[:80]!r}"
                ) from None
            if last:  # complete JSON without its newline: keep it, finish the line
                self._truncate(good_end)
                self.append(event)
                yield event
                return
            good_end += len(raw) + 1
            yield event

    def _truncate(self, size: int) -> None:
        with open(self.path, "r+b") as f:
            f.truncate(size)
            f.flush()
            os.fsync(f.fileno())

    def append(self, event: dict[str, Any]) -> None:
        """Append one event (``event["event"]`` in :data:`JOURNAL_EVENTS`); flush and fsync."""
        if event.get("event") not in JOURNAL_EVENTS:
            raise JournalError(f"journal event: expected one of {JOURNAL_EVENTS}, got {event!r}")
        append_jsonl(self.path, {**event, "t": event.get("t", time.time())}, fsync=True)

    def rewrite(self, events: list[dict[str, Any]]) -> None:
        """Replace the whole journal with ``events`` atomically (compaction)."""
        write_text_atomic(self.path, "".join(json_dumps_strict(e) + "\n" for e in events),
                          fsync=True)

    def close(self) -> None:
        """Nothing to release: each append opens and closes the file (kept for callers)."""
