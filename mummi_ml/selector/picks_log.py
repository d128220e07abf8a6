"""Write-ahead log of picks (rank 0): a pick is appended (flushed, fsynced) before its job is
emitted, so a restart from an older checkpoint replays it instead of picking something else.

Strict JSON lines: the first pick's infinite novelty is written as ``"novelty": null`` and read
back as ``inf`` (:func:`mummi_ml.jsonutil.float_or_inf`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mummi_ml.durable import append_jsonl_many, write_text_atomic
from mummi_ml.jsonutil import float_or_inf, json_dumps_strict
from mummi_ml.selector.greedy import Pick

__all__ = ["PicksLog"]


class PicksLog:
    """``STATE/picks.jsonl``: one JSON object per pick (Pick fields + embedding ``z``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> list[dict]:
        """Every complete entry, in order (a torn last line from a crash is ignored)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                entry = json.loads(line)
                entry["novelty"] = float_or_inf(entry.get("novelty"))
            except (ValueError, TypeError, AttributeError):
                continue
            out.append(entry)
        return out

    def repair(self) -> None:
        """Rewrite the file with its complete entries only (atomically), before appending."""
        entries = self.read()
        write_text_atomic(self.path, "".join(json_dumps_strict(e) + "\n" for e in entries),
                          fsync=True)

    def append(self, picks: list[Pick], z: np.ndarray) -> None:
        """Append picks with their embeddings ``z [p, d]``; durable when this returns."""
        append_jsonl_many(self.path, [{**p.__dict__, "z": [float(v) for v in zi]}
                                      for p, zi in zip(picks, z, strict=True)], fsync=True)
