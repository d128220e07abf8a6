"""Write-ahead log of picks (rank 0): a pick is appended (flushed, fsynced) before its job is
emitted, so a restart from an older checkpoint replays it instead of picking something else.

Strict JSON lines: the first pick's infinite novelty is written as ``"novelty": null`` and read
back as ``inf`` (:func:`mummi_ml.jsonutil.float_or_inf`). Each pick carries the
``model_version`` of the embedding it was picked with; a hot swap of the model appends one
record ``{"event": "model_swap", "from": V0, "to": V1, "n_selected": M, "time": T, ...}``
(``n_selected``: picks made before it), read by :meth:`PicksLog.read_swaps`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mummi_ml.durable import append_jsonl_many, write_text_atomic
from mummi_ml.jsonutil import float_or_inf, json_dumps_strict
from mummi_ml.selector.errors import SelectorError
from mummi_ml.selector.greedy import Pick

__all__ = ["PicksLog", "check_entry", "SWAP_EVENT"]

SWAP_EVENT = "model_swap"

_INT_KEYS = ("seq", "id", "cls", "owner", "src", "seg", "row")


def check_entry(entry: Any, dim: int | None = None, model_version: str | None = None) -> dict:
    """A picks-log entry with its types checked: the :class:`Pick` fields (non-negative
    integers; ``novelty`` a number or ``null`` = infinite, read back as ``inf``), ``z``, a
    list of finite numbers (``dim`` of them if given, for a pick made with ``model_version``
    when that is given: after a hot swap older picks may have another dimension) and the
    optional ``model_version`` (a string). A swap record (``"event": "model_swap"``) needs
    string ``from`` and ``to``. ValueError/TypeError saying what is wrong otherwise."""
    if not isinstance(entry, dict):
        raise TypeError(f"expected a JSON object, got {type(entry).__name__}")
    if "event" in entry:
        if entry["event"] != SWAP_EVENT or not all(
                isinstance(entry.get(k), str) for k in ("from", "to")):
            raise ValueError(f"a record with 'event' must be a {SWAP_EVENT} record with string "
                             "'from' and 'to'")
        return entry
    mv = entry.get("model_version")
    if mv is not None and not isinstance(mv, str):
        raise ValueError(f"'model_version' must be a string, got {str(mv)[:40]!r}")
    if model_version is not None and mv not in (None, model_version):
        dim = None  # a pick of an earlier model of the campaign
    for key in _INT_KEYS:
        v = entry.get(key)
        top = 2**64 if key in ("seq", "id") else 2**31  # uint64 ids, int32 ranks and rows
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < top:
            raise ValueError(f"{key!r} must be an integer in [0, {top}), got {str(v)[:40]!r}")
    nov = entry.get("novelty")
    if nov is not None and (isinstance(nov, bool) or not isinstance(nov, (int, float))):
        raise ValueError(f"'novelty' must be a number or null, got {str(nov)[:40]!r}")
    z = entry.get("z")
    if (not isinstance(z, list) or not z
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in z)
            or not np.isfinite(np.asarray(z, dtype=np.float64)).all()):
        raise ValueError("'z' must be a non-empty list of finite numbers")
    if dim is not None and len(z) != dim:
        raise ValueError(f"'z' has {len(z)} values, the embedding has {dim}")
    return {**entry, "novelty": float_or_inf(nov)}


class PicksLog:
    """``STATE/picks.jsonl``: one JSON object per pick (Pick fields + embedding ``z``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self, dim: int | None = None, model_version: str | None = None) -> list[dict]:
        """Every complete pick entry, in order (swap records left out), each checked by
        :func:`check_entry` (``z`` of length ``dim`` if given, for the picks of
        ``model_version`` if given).

        Recovery: an incomplete LAST line (a crash or a full disk in the middle of an append)
        is dropped, as :meth:`repair` does before the next append. Any other bad line (not
        UTF-8, not a JSON object, a missing or mistyped field, a non-finite embedding) is
        corruption of the write-ahead log, which decides what is replayed: SelectorError naming
        the line, never a silent skip.
        """
        return [e for e in self._records(dim, model_version) if "event" not in e]

    def read_swaps(self) -> list[dict]:
        """The model swap records, in order."""
        return [e for e in self._records() if "event" in e]

    def _records(self, dim: int | None = None, model_version: str | None = None) -> list[dict]:
        """Every complete record (picks and swap records), in order; see :meth:`read`."""
        if not self.path.exists():
            return []
        try:
            lines = self.path.read_bytes().split(b"\n")
        except OSError as exc:
            raise SelectorError(f"{self.path}: cannot read the picks log "
                                f"({exc.strerror or exc})") from None
        torn = lines[-1] != b""  # every complete entry ends with a newline
        out = []
        for k, raw in enumerate(lines[:-1] if not torn else lines):
            if not raw.strip():
                continue
            try:
                out.append(check_entry(json.loads(raw.decode("utf-8")), dim, model_version))
            except (ValueError, TypeError) as exc:
                if torn and k == len(lines) - 1:
                    break  # the unfinished last append
                raise SelectorError(
                    f"{self.path}: line {k + 1} is not a pick entry ({str(exc)[:120]}); the "
                    "write-ahead log of picks is corrupt (repair the line or move the state "
                    "directory away)") from None
        return out

    def repair(self) -> None:
        """Rewrite the file with its complete records only (atomically), before appending."""
        entries = self._records()
        try:
            write_text_atomic(self.path, "".join(json_dumps_strict(e) + "\n" for e in entries),
                              fsync=True)
        except OSError as exc:
            raise SelectorError(f"{self.path}: cannot rewrite the picks log "
                                f"({exc.strerror or exc})") from None

    def append(self, picks: list[Pick], z: np.ndarray, model_version: str | None = None) -> None:
        """Append picks with their embeddings ``z [p, d]`` made with ``model_version``; durable
        when this returns.

        On a write error (e.g. a full disk) the file is cut back to its previous length, so no
        partial entry stays behind, and SelectorError says why in one line."""
        tag = {} if model_version is None else {"model_version": model_version}
        self._append([{**p.__dict__, "z": [float(v) for v in zi], **tag}
                      for p, zi in zip(picks, z, strict=True)], "picks")

    def append_swap(self, record: dict) -> None:
        """Append a model swap record (``event`` is set here); durable when this returns."""
        self._append([{**record, "event": SWAP_EVENT}], "a model swap record")

    def _append(self, records: list[dict], what: str) -> None:
        size = self.path.stat().st_size if self.path.exists() else 0
        try:
            append_jsonl_many(self.path, records, fsync=True)
        except OSError as exc:
            try:
                os.truncate(self.path, size)
            except OSError:
                pass  # read() drops a torn last line
            raise SelectorError(f"{self.path}: cannot append {what} "
                                f"({exc.strerror or exc})") from None
