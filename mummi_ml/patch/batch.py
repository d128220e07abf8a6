"""``PatchBatch``: a batch of patches with their labels and per-patch metadata, as numpy arrays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from mummi_ml.errors import PatchValidationError
from mummi_ml.patch.constants import PATCH_SHAPE, patch_class

__all__ = ["PatchBatch", "META_FIELDS", "OPTIONAL_FIELDS", "NO_CLASS"]

META_FIELDS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "ids": (np.dtype(np.uint64), ()),
    "replica": (np.dtype(np.int32), ()),
    "time_us": (np.dtype(np.float64), ()),
    "centre_nm": (np.dtype(np.float32), (2,)),
    "protein_id": (np.dtype(np.int64), ()),
}
"""Per-patch metadata: name -> (dtype, shape of one entry)."""

NO_CLASS: int = -1
"""``given_class`` of a patch whose producer gave no class."""

OPTIONAL_FIELDS: dict[str, tuple[np.dtype, object]] = {
    "names": (np.dtype(object), ""),
    "given_class": (np.dtype(np.int16), NO_CLASS),
    "bin_value": (np.dtype(np.float32), np.nan),
}
"""Optional per-patch producer fields (schema version 2): name -> (dtype, value when absent).
``names``: the producer's string id (e.g. MuMMI's ``mu-24-..._000000000042``); ``given_class``:
the producer's class / queue (-1: none, the selector's class map decides); ``bin_value``: a
scalar for binned selection supplied by the producer (e.g. the RAS-RAS distance, nm; NaN: none).
A batch holds None for a field no patch has."""


@dataclass
class PatchBatch:
    """N patches and everything known about them. All arrays have length N.

    Attributes:
        x: float32 ``[N, 37, 37, 14]`` lipid concentrations (rows, cols, channel).
        y: int32 ``[N, 2]`` protein counts (n_ras, n_raf) inside the patch.
        ids: uint64 ``[N]`` unique patch ids.
        replica: int32 ``[N]`` simulation / replica id.
        time_us: float64 ``[N]`` simulation time (us).
        centre_nm: float32 ``[N, 2]`` patch centre (x, y) in the domain (nm).
        protein_id: int64 ``[N]`` id of the protein the patch is centred on, -1 for none.
        names: object ``[N]`` of str, the producer's patch names ("" for none), or None.
        given_class: int16 ``[N]`` the producer's class (-1 for none), or None.
        bin_value: float32 ``[N]`` the producer's binning scalar (NaN for none), or None.
    """

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    replica: np.ndarray
    time_us: np.ndarray
    centre_nm: np.ndarray
    protein_id: np.ndarray
    names: np.ndarray | None = None
    given_class: np.ndarray | None = None
    bin_value: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.x)
        for name, (dtype, _) in OPTIONAL_FIELDS.items():
            arr = getattr(self, name)
            if arr is not None:
                if name == "names":
                    arr = np.array([_as_name(v) for v in np.asarray(arr, dtype=object).ravel()]
                                   + [None], dtype=object)[:-1]
                setattr(self, name, np.asarray(arr, dtype=dtype))
        for f in fields(self):
            arr = getattr(self, f.name)
            if arr is None:
                continue
            if len(arr) != n:
                raise ValueError(f"PatchBatch.{f.name}: expected length {n} (as x), got {len(arr)}")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def classes(self) -> np.ndarray:
        """int64 ``[N]`` protein class of each patch (see :func:`patch_class`)."""
        return patch_class(self.y) if len(self) else np.zeros(0, dtype=np.int64)

    def subset(self, idx: np.ndarray | slice | Sequence[int]) -> PatchBatch:
        """The patches at ``idx`` (indices, a boolean mask or a slice), as a new batch."""
        if not isinstance(idx, slice):
            idx = np.asarray(idx)
        return PatchBatch(**{
            f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[idx]
            for f in fields(self)
        })

    def field_or_default(self, name: str) -> np.ndarray:
        """An optional field (:data:`OPTIONAL_FIELDS`) as an array of length N, the absent
        value where the batch has none."""
        dtype, default = OPTIONAL_FIELDS[name]
        arr = getattr(self, name)
        if arr is not None:
            return arr
        out = np.empty(len(self), dtype=dtype)
        out[:] = default
        return out

    @staticmethod
    def concat(batches: Sequence[PatchBatch]) -> PatchBatch:
        """Concatenate batches in order (an empty list gives an empty batch)."""
        if len(batches) == 0:
            return PatchBatch.empty()
        names = [f.name for f in fields(PatchBatch) if f.name not in OPTIONAL_FIELDS]
        out = {n: np.concatenate([getattr(b, n) for b in batches]) for n in names}
        for n in OPTIONAL_FIELDS:
            if any(getattr(b, n) is not None for b in batches):
                out[n] = np.concatenate([b.field_or_default(n) for b in batches])
        return PatchBatch(**out)

    @staticmethod
    def empty() -> PatchBatch:
        """A batch of zero patches with the right dtypes and shapes."""
        return PatchBatch.from_arrays(
            np.zeros((0, *PATCH_SHAPE), np.float32), np.zeros((0, 2), np.int32), ids=np.zeros(0)
        )

    @staticmethod
    def from_arrays(
        x: np.ndarray,
        y: np.ndarray,
        ids: np.ndarray | None = None,
        replica: int | np.ndarray = 0,
        time_us: float | np.ndarray = 0.0,
        centre_nm: np.ndarray | None = None,
        protein_id: int | np.ndarray = -1,
        names: np.ndarray | list[str] | None = None,
        given_class: np.ndarray | list[int] | None = None,
        bin_value: np.ndarray | list[float] | None = None,
    ) -> PatchBatch:
        """Build a batch, broadcasting scalar metadata and filling defaults.

        ``ids`` defaults to ``0..N-1``; ``centre_nm`` to zeros. Arrays are converted to the
        canonical dtypes (x float32, y int32, ...); the optional producer fields stay None
        unless given. Shapes are checked by
        :func:`~mummi_ml.patch.validate.validate_batch`, not here.
        """
        x = np.asarray(x, dtype=np.float32)
        n = len(x)
        y = np.asarray(y)
        if y.dtype.kind == "f" and not (np.isfinite(y) & (y == np.round(y))).all():
            raise PatchValidationError("y: protein counts must be whole numbers")
        y = y.astype(np.int32)
        meta = {
            "ids": np.arange(n, dtype=np.uint64) if ids is None else ids,
            "replica": replica,
            "time_us": time_us,
            "centre_nm": np.zeros((n, 2)) if centre_nm is None else centre_nm,
            "protein_id": protein_id,
        }
        out = {}
        for name, (dtype, shape) in META_FIELDS.items():
            arr = np.asarray(meta[name])
            if arr.ndim == 0 or (shape and arr.shape == shape):
                arr = np.broadcast_to(arr, (n, *shape))
            if name == "ids" and arr.dtype.kind == "i" and arr.size and arr.min() < 0:
                raise ValueError("ids: patch ids must be non-negative")
            out[name] = np.array(arr, dtype=dtype)
        return PatchBatch(x=x, y=y, **out, names=names, given_class=given_class,
                          bin_value=bin_value)


def _as_name(value: object) -> str:
    """A producer name as str (bytes from HDF5 decoded); refuses other types."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise ValueError(f"names: expected strings, got {type(value).__name__} {value!r}")
