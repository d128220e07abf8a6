"""Write-ahead log of picks (rank 0): a pick is appended (flushed, fsynced) before its job is
emitted, so a restart from an older checkpoint replays it instead of picking something else.

Strict JSON lines: the first pick's infinite novelty is written as ``"novelty": null`` and read
back as ``inf`` (:func:`mummi_ml.jsonutil.float_or_inf`). Each pick carries the
``model_version`` of the embedding it was picked with; a hot swap of the model appends one
record ``{"event": "model_swap", "from": V0, "to": V1, "n_selected": M, "time": T, ...}``
(``n_selected``: picks made before it), read by :meth:`PicksLog.read_swaps`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mummi_ml.durable import append_jsonl_many, write_text_atomic
from mummi_ml.jsonutil import float_or_inf, json_dumps_strict
from mummi_ml.selector.greedy import Pick

__all__ = ["PicksLog", "SWAP_EVENT"]

SWAP_EVENT = "model_swap"


class PicksLog:
    """``STATE/picks.jsonl``: one JSON object per pick (Pick fields + embedding ``z``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _read_all(self) -> list[dict]:
        """Every complete record, in order (a torn last line from a crash is ignored)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                entry = json.loads(line)
                if "event" not in entry:
                    entry["novelty"] = float_or_inf(entry.get("novelty"))
            except (ValueError, TypeError, AttributeError):
                continue
            out.append(entry)
        return out

    def read(self) -> list[dict]:
        """Every complete pick entry, in order (a torn last line from a crash is ignored)."""
        return [e for e in self._read_all() if "event" not in e]

    def read_swaps(self) -> list[dict]:
        """The model swap records, in order."""
        return [e for e in self._read_all() if e.get("event") == SWAP_EVENT]

    def repair(self) -> None:
        """Rewrite the file with its complete records only (atomically), before appending."""
        entries = self._read_all()
        write_text_atomic(self.path, "".join(json_dumps_strict(e) + "\n" for e in entries),
                          fsync=True)

    def append(self, picks: list[Pick], z: np.ndarray, model_version: str | None = None) -> None:
        """Append picks with their embeddings ``z [p, d]`` made with ``model_version``; durable
        when this returns."""
        tag = {} if model_version is None else {"model_version": model_version}
        append_jsonl_many(self.path, [{**p.__dict__, "z": [float(v) for v in zi], **tag}
                                      for p, zi in zip(picks, z, strict=True)], fsync=True)

    def append_swap(self, record: dict) -> None:
        """Append a model swap record (``event`` is set here); durable when this returns."""
        append_jsonl_many(self.path, [{**record, "event": SWAP_EVENT}], fsync=True)
