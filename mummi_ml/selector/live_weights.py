"""Live importance weights of the selected patches, written with every checkpoint.

``STATE/weights.json`` (written atomically by rank 0 at every checkpoint, so also on
``SIGUSR1``, which checkpoints now and goes on) holds, per selected patch in pick order, its
patch id, its producer name (the optional ``name`` dataset of its patch file, "" if none), the
raw weight (1 + the unselected candidates whose nearest selected patch it is) and the weight
normalised to mean 1 (MuMMI's feedback weights). :func:`read_weights` reads it.

Producer names are not kept in the pool (no Python object per candidate): rank 0 reads them
from the picks' payload segments before the checkpoint may delete those, and appends them to
``STATE/names.jsonl`` (fsynced), so they survive the payloads and restarts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mummi_ml.durable import append_jsonl_many, write_json_atomic
from mummi_ml.errors import MummiMLError
from mummi_ml.selector.importance import importance_weights

if TYPE_CHECKING:
    from mummi_ml.selector.state import SelectorState

__all__ = ["ImportanceWeights", "PickNames", "publish_weights", "read_weights", "WEIGHTS_FILE",
           "normalise_weights"]

WEIGHTS_FILE = "weights.json"
NAMES_FILE = "names.jsonl"


def normalise_weights(raw: np.ndarray) -> np.ndarray:
    """float32 ``[m]``: ``raw`` scaled to mean 1 (empty stays empty)."""
    raw = np.asarray(raw, np.float64)
    return (raw * (len(raw) / raw.sum())).astype(np.float32) if len(raw) else raw.astype(
        np.float32)


@dataclass(frozen=True)
class ImportanceWeights:
    """Weights of the selected patches (pick order).

    Attributes:
        ids: uint64 ``[m]`` patch ids; names: producer names ``[m]`` ("" if none);
        raw: int64 ``[m]`` 1 + candidates nearest to it; weights: float32 ``[m]`` mean 1;
        time: when computed (s since the epoch); checkpoint: the checkpoint's sequence number.
    """

    ids: np.ndarray
    names: list[str]
    raw: np.ndarray
    weights: np.ndarray
    time: float
    checkpoint: int

    def lookup(self, keys: list[str] | list[int]) -> np.ndarray:
        """float32 normalised weights of ``keys`` (producer names or patch ids), in order;
        KeyError names the first unknown key."""
        by_name = {n: w for n, w in zip(self.names, self.weights, strict=True) if n}
        by_id = {int(i): w for i, w in zip(self.ids, self.weights, strict=True)}
        out = []
        for k in keys:
            w = by_name.get(k) if isinstance(k, str) else by_id.get(int(k))
            if w is None and isinstance(k, str) and k.isdigit():
                w = by_id.get(int(k))
            if w is None:
                raise KeyError(f"{k!r} is not a selected patch")
            out.append(w)
        return np.array(out, np.float32)


class PickNames:
    """Producer names of picks (rank 0): ``STATE/names.jsonl``, one ``{"id", "name"}`` line
    per pick, filled from the payload segments."""

    def __init__(self, state_dir: str | Path):
        self.path = Path(state_dir) / NAMES_FILE
        self.names: dict[int, str] = {}
        if self.path.exists():
            # undecodable bytes fail the JSON parse below: a name not known here is read
            # again from its payload by resolve(), so a bad line only costs a re-read
            for line in self.path.read_text(errors="replace").splitlines():
                try:
                    e = json.loads(line)
                    self.names[int(e["id"])] = str(e["name"])
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line

    def resolve(self, selected: Any, payloads: Any) -> list[str]:
        """Names of every selected patch, reading those not known yet from their payloads
        (one open per segment); a payload already gone gives ""."""
        ids = [int(i) for i in selected.ids]
        missing = [q for q, i in enumerate(ids) if i not in self.names]
        new = {}
        by_seg: dict[tuple[int, int], list[int]] = {}
        for q in missing:
            by_seg.setdefault((int(selected.src[q]), int(selected.seg[q])), []).append(q)
        for (src, seg), qs in by_seg.items():
            from mummi_ml.patch import PatchFile

            try:
                with PatchFile(payloads.path(src, seg)) as f:
                    names = f.field("names")
                for q in qs:
                    new[ids[q]] = str(names[int(selected.row[q])])
            except (MummiMLError, OSError, IndexError):
                for q in qs:
                    new[ids[q]] = ""
        if new:
            try:  # a torn last line (full disk) is skipped when read back
                append_jsonl_many(self.path, [{"id": i, "name": n} for i, n in new.items()],
                                  fsync=True)
            except OSError as exc:
                raise MummiMLError(f"{self.path}: cannot append names "
                                   f"({exc.strerror or exc})") from None
            self.names.update(new)
        return [self.names[i] for i in ids]


def publish_weights(state: SelectorState) -> None:
    """Compute the weights of ``state``'s selected set (collective over ``state.comm``) and, on
    rank 0, write ``weights.json`` atomically, tagged with the coming checkpoint's number."""
    raw = importance_weights(state.pool.z, state.selected.z, state.comm)
    if state.rank != 0:
        return
    names = PickNames(state.state_dir).resolve(state.selected, state.payloads)
    write_weights(state.state_dir, state.selected.ids, names, raw, state.seq)


def write_weights(state_dir: str | Path, ids: np.ndarray, names: list[str], raw: np.ndarray,
                  checkpoint: int) -> Path:
    """Write ``weights.json`` (temporary file, fsync, rename)."""
    path = Path(state_dir) / WEIGHTS_FILE
    data = {"schema": "mummi-ml-weights", "version": 1, "time": time.time(),
            "checkpoint": int(checkpoint), "ids": [int(i) for i in ids], "names": list(names),
            "weights_raw": [int(w) for w in raw],
            "weights": [float(w) for w in normalise_weights(raw)]}
    try:  # e.g. a full disk: no temporary file stays behind
        write_json_atomic(path, data, fsync=True, indent=None)
    except OSError as exc:
        raise MummiMLError(f"{path}: cannot write the weights ({exc.strerror or exc})") from None
    return path


def read_weights(state_dir: str | Path) -> ImportanceWeights:
    """The newest weights of a selector (``STATE/weights.json``); MummiMLError if none."""
    path = Path(state_dir) / WEIGHTS_FILE
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MummiMLError(f"{path}: no readable weights ({exc}); they are written with "
                           "every checkpoint") from None
    return ImportanceWeights(
        ids=np.array(d["ids"], np.uint64), names=list(d["names"]),
        raw=np.array(d["weights_raw"], np.int64), weights=np.array(d["weights"], np.float32),
        time=float(d["time"]), checkpoint=int(d["checkpoint"]),
    )
