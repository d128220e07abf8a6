"""The selected set: every patch picked so far, replicated on every selector rank."""

from __future__ import annotations

import numpy as np

from mummi_ml.patch.constants import N_CLASSES

__all__ = ["SelectedSet"]

_FIELDS = {
    "ids": (np.uint64, ()),
    "classes": (np.int8, ()),
    "novelty": (np.float64, ()),
    "owner": (np.int32, ()),
    "src": (np.int32, ()),
    "seg": (np.int32, ()),
    "row": (np.int32, ()),
    "emitted": (np.bool_, ()),
    "awaiting_copy": (np.bool_, ()),
}


class SelectedSet:
    """Growable arrays of picks in pick order (index = pick sequence number).

    Attributes (views of length m):
        z: float32 ``[m, d]`` embeddings of the picks.
        ids: uint64 patch ids; classes: int8; novelty: float64 score when picked (d_z units);
        owner: rank that held the candidate; src/seg/row: payload location (see PayloadStore);
        emitted: bool, a job was emitted for the pick.
        awaiting_copy: bool, the pick was replayed from the picks log after a restart and was
            not in the checkpoint it restarted from, so the next copy of its patch that arrives
            is the re-read of its own spool file (a replay), not a re-sent duplicate. Saved in
            checkpoints (older ones load as False).
    """

    def __init__(self, dim: int):
        self.dim = int(dim)
        self._n = 0
        self._cap = 0
        self._z = np.zeros((0, self.dim), dtype=np.float32)
        self._a = {k: np.zeros(0, dtype=dt) for k, (dt, _) in _FIELDS.items()}

    def __len__(self) -> int:
        return self._n

    def _reserve(self, n: int) -> None:
        if n <= self._cap:
            return
        cap = max(n, 2 * self._cap, 256)
        z = np.zeros((cap, self.dim), dtype=np.float32)
        z[: self._n] = self._z[: self._n]
        self._z = z
        for k, arr in self._a.items():
            new = np.zeros(cap, dtype=arr.dtype)
            new[: self._n] = arr[: self._n]
            self._a[k] = new
        self._cap = cap

    def append(self, z: np.ndarray, **fields: np.ndarray) -> None:
        """Append picks: ``z [p, d]`` and one array of length p per field (missing: zero)."""
        z = np.asarray(z, dtype=np.float32).reshape(-1, self.dim)
        p = len(z)
        self._reserve(self._n + p)
        self._z[self._n : self._n + p] = z
        for k, arr in self._a.items():
            arr[self._n : self._n + p] = fields.get(k, 0)
        self._n += p

    def set_embeddings(self, z: np.ndarray) -> None:
        """Replace the picks' embeddings (float32 ``[m, d']``, a new model, possibly of another
        dimension) in place; everything else (novelty when picked, ids, ...) is kept."""
        if len(z) != self._n:
            raise ValueError(f"expected {self._n} rows, got {len(z)}")
        self.dim = int(z.shape[1])
        self._z = np.zeros((self._cap, self.dim), dtype=np.float32)
        self._z[: self._n] = z

    @property
    def z(self) -> np.ndarray:
        return self._z[: self._n]

    def __getattr__(self, name: str) -> np.ndarray:
        a = self.__dict__.get("_a")
        if a is not None and name in a:
            return a[name][: self._n]
        raise AttributeError(name)

    def awaiting(self) -> np.ndarray:
        """uint64 ids of the picks whose own copy is still expected (see ``awaiting_copy``)."""
        return self.ids[self.awaiting_copy]

    def copy_arrived(self, ids: np.ndarray) -> None:
        """The copies of these picks arrived: they are no longer awaited."""
        a = self._a["awaiting_copy"]
        a[: self._n][np.isin(self.ids, np.asarray(ids, dtype=np.uint64))] = False

    def class_counts(self) -> np.ndarray:
        """int64 ``[N_CLASSES]`` picks per class."""
        return np.bincount(self.classes.astype(np.int64), minlength=N_CLASSES)[:N_CLASSES]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for a checkpoint."""
        out = {k: getattr(self, k).copy() for k in _FIELDS}
        out["z"] = self.z.copy()
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], dim: int) -> SelectedSet:
        s = cls(dim)
        s.append(arrays["z"], **{k: arrays[k] for k in _FIELDS if k in arrays})
        return s
