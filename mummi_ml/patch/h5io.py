"""HDF5 patch files: the exchange format between every stage of mummi-ml.

Layout (schema ``mummi-ml-patches``, version 2; version-1 files are read too), readable with
``h5ls -v`` or HDFView:

========== ======================== ======== =====================================================
dataset    shape                    dtype    meaning
========== ======================== ======== =====================================================
x          [N, 37, 37, 14]          float32  lipid concentrations (rows, cols, channel)
y          [N, 2]                   int32    protein counts (n_ras, n_raf) inside the patch
id         [N]                      uint64   unique patch id
replica    [N]                      int32    simulation / replica id
time_us    [N]                      float64  simulation time (us)
centre_nm  [N, 2]                   float32  patch centre (x, y) in the domain (nm)
protein_id [N]                      int64    id of the centre protein, -1 for none
name       [N]                      str      optional (v2): the producer's patch name ("": none)
class      [N]                      int16    optional (v2): the producer's class (-1: none)
bin_value  [N]                      float32  optional (v2): the producer's binning scalar (NaN)
========== ======================== ======== =====================================================

Version 2 adds the three optional datasets; a writer creates one only when a batch has it
(earlier rows get the "none" value), so a file has them all, some or none. A file without them
is written as version 1, which older readers still read.

Every dataset is chunked along N and compressed with shuffle + deflate (gzip), which every HDF5
build can read. File attributes: ``schema``, ``schema_version``, ``channel_names``,
``pixel_size_nm``, ``n_patches`` (written on clean close), ``created_by``, ``created_at``, and
whatever the producer adds (e.g. ``preset``). A writer works on ``NAME.tmp`` and renames it to
``NAME`` only when closed cleanly, so a crash never leaves a complete-looking truncated file.

Readers trust nothing in a file: before any data is read, :class:`PatchFile` refuses files whose
datasets are not stored in the file itself (HDF5 external storage, virtual datasets) or whose
top-level entries are soft, external or user-defined links, since any of these would let a file
make the reader copy bytes of another file (e.g. ``/etc/passwd``) into patches, payloads and job
directories. It also refuses files whose ``channel_names`` differ from the schema's: channels are
identified by position, never remapped by name (a file with the same lipids in another order, or
other lipids, is data for another model; a silent remap would hide a producer's mistake and
mislabel every channel the metric and the MD jobs see).
"""

from __future__ import annotations

import datetime as _dt
import glob
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mummi_ml import __version__
from mummi_ml.durable import fsync_file, rename
from mummi_ml.errors import PatchFileError, PatchValidationError
from mummi_ml.patch.batch import META_FIELDS, OPTIONAL_FIELDS, PatchBatch
from mummi_ml.patch.constants import CHANNEL_NAMES, PATCH_SHAPE, PIXEL_SIZE_NM
from mummi_ml.patch.validate import validate_batch

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "PatchWriter",
    "PatchFile",
    "PatchDataset",
    "write_patches",
    "read_patches",
    "open_patches",
    "validate_dataset",
    "validate_files",
    "check_self_contained",
    "open_h5_self_contained",
    "h5_error_reason",
]

SCHEMA = "mummi-ml-patches"
SCHEMA_VERSION = 2
_CACHE_BYTES = 64 * 2**20  # HDF5 chunk cache per open file

# batch field -> (dataset name, units, description)
_DATASETS: dict[str, tuple[str, str, str]] = {
    "x": ("x", "concentration", "lipid concentrations [N, rows, cols, channel]; see channel_names"),
    "y": ("y", "count", "protein counts inside the patch [N, (n_ras, n_raf)]"),
    "ids": ("id", "", "unique patch id"),
    "replica": ("replica", "", "simulation / replica id"),
    "time_us": ("time_us", "us", "simulation time of the frame"),
    "centre_nm": ("centre_nm", "nm", "patch centre (x, y) in the simulation domain"),
    "protein_id": ("protein_id", "", "id of the protein the patch is centred on; -1 for none"),
}
# optional producer fields (schema version 2): batch field -> (dataset name, units, description)
_OPTIONAL: dict[str, tuple[str, str, str]] = {
    "names": ("name", "", "the producer's patch name (string id); empty: none"),
    "given_class": ("class", "", "the producer's class / queue of the patch; -1: none"),
    "bin_value": ("bin_value", "", "the producer's scalar for binned selection (e.g. RAS-RAS "
                  "distance, nm); NaN: none"),
}
_H5_DTYPES = {"names": h5py.string_dtype("utf-8"), "given_class": np.dtype(np.int16),
              "bin_value": np.dtype(np.float32)}
_FIELD_SHAPES: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "x": (np.dtype(np.float32), PATCH_SHAPE),
    "y": (np.dtype(np.int32), (2,)),
    **META_FIELDS,
}


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OS":
        return [_decode(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _absent(name: str, n: int) -> np.ndarray:
    """``n`` copies of an optional field's "none" value."""
    dtype, default = OPTIONAL_FIELDS[name]
    out = np.empty(n, dtype=dtype)
    out[:] = default
    return out


def h5_error_reason(exc: BaseException) -> str:
    """A short reason for an HDF5/OS error: the OS's words for its errno (e.g. "No space left
    on device") if it has one, else the first line of h5py's message without HDF5's details."""
    errno_ = getattr(exc, "errno", None)
    if isinstance(errno_, int) and errno_ > 0:
        return os.strerror(errno_)
    text = str(exc).strip()
    said = re.search(r"error message = '([^']{1,200})'", text)  # HDF5's report of the OS error
    if said:
        return said.group(1)
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _int_attr(path: Path, attrs: Any, key: str, default: int) -> int:
    """An integer file attribute, or PatchFileError naming it."""
    value = attrs.get(key, default)
    try:
        if isinstance(value, (float, np.floating)) and not float(value).is_integer():
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise PatchFileError(f"{path}: attribute {key!r} is not an integer: {value!r}") from None


def check_self_contained(group: h5py.Group, path: str | Path, kind: str = "a patch file") -> None:
    """Refuse an HDF5 file (or group) that is not self-contained, before any data is read.

    Walks every link below ``group`` without following soft or external ones and raises
    :class:`PatchFileError` (one line naming ``path``, the entry and what it is) if a link is a
    soft, external or user-defined link, or a dataset is virtual or uses external storage: any
    of these lets a file make its reader copy bytes of another file (e.g. ``/etc/passwd``) into
    patches, payloads, checkpoints and job directories. Used by :class:`PatchFile` and by every
    other reader of HDF5 files that arrive from elsewhere or are restored from disk (selector
    checkpoints); ``kind`` names the file in the message ("a patch file", "a checkpoint file").
    """
    for name in group.keys():  # link names only: nothing is dereferenced here
        link = group.get(name, getlink=True)
        where = f"{group.name.rstrip('/')}/{name}".lstrip("/")
        if not isinstance(link, h5py.HardLink):
            if isinstance(link, h5py.ExternalLink):
                what = f"an external link to {link.filename!s:.200}:{link.path!s:.100}"
            elif isinstance(link, h5py.SoftLink):
                what = f"a soft link to {link.path!s:.100}"
            else:
                what = f"a link of type {type(link).__name__}"
            raise PatchFileError(f"{path}: {where!r} is {what}; {kind} must hold its own data")
        obj = group[name]
        if isinstance(obj, h5py.Group):
            check_self_contained(obj, path, kind)
            continue
        if not isinstance(obj, h5py.Dataset):
            continue  # a named datatype: holds no data
        dcpl = obj.id.get_create_plist()
        if dcpl.get_layout() == h5py.h5d.VIRTUAL:
            raise PatchFileError(f"{path}: dataset {where!r} is a virtual dataset (its data "
                                 f"lives in other files); {kind} must hold its own data")
        if dcpl.get_external_count() > 0:
            target = _decode(dcpl.get_external(0)[0])
            raise PatchFileError(f"{path}: dataset {where!r} uses external storage (its bytes "
                                 f"are read from {target!s:.200}); {kind} must hold its own data")


def open_h5_self_contained(path: str | Path, kind: str = "a patch file") -> h5py.File:
    """Open an HDF5 file read-only after checking it is a regular file, then
    :func:`check_self_contained` (closed again if refused).

    Raises:
        PatchFileError: missing, not a regular file (a FIFO would block), not HDF5, or not
            self-contained; one line naming ``path``.
    """
    p = Path(path)
    if not p.exists():
        raise PatchFileError(f"{p}: no such file")
    if not p.is_file():
        raise PatchFileError(f"{p}: not a regular file")
    try:
        f = h5py.File(p, "r")
    except OSError:
        raise PatchFileError(f"{p}: not a readable HDF5 file (truncated, corrupt or another "
                             "format)") from None
    try:
        check_self_contained(f, p, kind)
    except PatchFileError:
        f.close()
        raise
    except (KeyError, RuntimeError, ValueError, TypeError, OSError) as exc:  # broken metadata
        f.close()
        raise PatchFileError(f"{p}: corrupt HDF5 metadata ({str(exc).splitlines()[0][:120]})"
                             ) from None
    return f


class PatchWriter:
    """Write patches to a new HDF5 file in batches; the file appears under ``path`` on close.

    Args:
        path: destination ``.h5`` file; overwritten if it exists (only at the final rename).
        attrs: extra file attributes (str, numbers or lists of them), e.g.
            ``{"preset": "campaign"}``.
        chunk_patches: patches per HDF5 chunk (the unit of compression and of streaming reads).
        compression_level: gzip level 0-9 (0: no compression).
        durable: fsync the data before the rename (default). False leaves the flush to the
            caller (e.g. one :func:`~mummi_ml.durable.fsync_file` of many files before a
            checkpoint that refers to them); the rename still only happens on a clean close.

    Use as a context manager; on an exception the temporary file is removed and nothing appears
    at ``path``. Every appended batch is validated (:func:`validate_batch`) and ids must be unique
    within the file.
    """

    def __init__(
        self,
        path: str | Path,
        attrs: dict[str, Any] | None = None,
        chunk_patches: int = 32,
        compression_level: int = 1,
        durable: bool = True,
    ):
        self.path = Path(path)
        self.durable = bool(durable)
        if chunk_patches < 1:
            raise ValueError(f"chunk_patches: expected >= 1, got {chunk_patches}")
        if not 0 <= compression_level <= 9:
            raise ValueError(f"compression_level: expected 0-9, got {compression_level}")
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        self._seen_ids: set[int] = set()
        self._n = 0
        self._chunk = max(int(chunk_patches), 4096)
        self._gzip = ({"compression": "gzip", "compression_opts": compression_level,
                       "shuffle": True} if compression_level > 0 else {})
        self._file: h5py.File | None = None
        self._aborted = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # no chunk cache: every append reaches the file before append() returns, so a full
            # disk fails there, cleanly. Chunks left dirty in a cache that cannot be flushed make
            # h5py/HDF5 fail on close and crash the interpreter (SIGSEGV) at exit.
            self._file = h5py.File(self.tmp_path, "w", rdcc_nbytes=0)
        except OSError as exc:
            self.abort()  # a file HDF5 began but could not finish must not stay behind
            raise PatchFileError(f"{self.tmp_path}: cannot create ({h5_error_reason(exc)})"
                                 ) from None
        try:
            self._init_layout(attrs, chunk_patches, compression_level)
        except Exception as exc:
            self.abort()
            raise PatchFileError(f"{self.path}: cannot set up the file ({h5_error_reason(exc)})"
                                 ) from None

    def _init_layout(
        self, attrs: dict[str, Any] | None, chunk_patches: int, compression_level: int
    ) -> None:
        f = self._file
        f.attrs["schema"] = SCHEMA
        f.attrs["schema_version"] = 1  # 2 once a version-2 dataset is created
        f.attrs["channel_names"] = list(CHANNEL_NAMES)
        f.attrs["pixel_size_nm"] = PIXEL_SIZE_NM
        f.attrs["created_by"] = f"mummi-ml {__version__}"
        f.attrs["created_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        f.attrs["description"] = (
            "Membrane patches around RAS proteins: x = lipid concentrations on a 37x37 grid of "
            "30/37 nm pixels, y = (n_ras, n_raf). Written by mummi-ml; layout in its README."
        )
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        gzip = {"compression": "gzip", "compression_opts": compression_level, "shuffle": True}
        for name, (dtype, shape) in _FIELD_SHAPES.items():
            dset_name, units, desc = _DATASETS[name]
            ds = f.create_dataset(
                dset_name,
                shape=(0, *shape),
                maxshape=(None, *shape),
                dtype=dtype,
                chunks=(chunk_patches if name == "x" else max(chunk_patches, 4096), *shape),
                **(gzip if compression_level > 0 else {}),
            )
            ds.attrs["units"] = units
            ds.attrs["description"] = desc

    def __len__(self) -> int:
        return self._n

    def append(self, batch: PatchBatch) -> None:
        """Validate and append a batch of patches (any size, including 0)."""
        if self._file is None:
            raise PatchFileError(f"{self.path}: writer is closed")
        validate_batch(batch.x, batch.y)
        ids = batch.ids.tolist()
        if len(set(ids)) != len(ids):
            raise PatchValidationError(f"{self.path}: duplicate patch ids within one batch")
        if not self._seen_ids.isdisjoint(ids):
            dup = next(i for i in ids if i in self._seen_ids)
            raise PatchValidationError(f"{self.path}: patch id {dup} already written to this file")
        n_new = len(batch)
        for name, (_, shape) in _FIELD_SHAPES.items():
            arr = np.asarray(getattr(batch, name))
            if arr.shape != (n_new, *shape):
                raise PatchValidationError(
                    f"{self.path}: field {name!r} has shape {list(arr.shape)}, "
                    f"expected {[n_new, *shape]}"
                )
        if n_new == 0:
            return
        for name in _OPTIONAL:  # a field seen for the first time: its dataset, backfilled
            if getattr(batch, name) is not None and _OPTIONAL[name][0] not in self._file:
                self._create_optional(name)
        present = [n for n in _OPTIONAL if _OPTIONAL[n][0] in self._file]
        try:
            for name in _FIELD_SHAPES:
                ds = self._file[_DATASETS[name][0]]
                ds.resize(self._n + n_new, axis=0)
                ds[self._n :] = getattr(batch, name)
            for name in present:
                ds = self._file[_OPTIONAL[name][0]]
                ds.resize(self._n + n_new, axis=0)
                ds[self._n :] = batch.field_or_default(name)
        except Exception as exc:
            try:  # roll back: every dataset keeps the old length
                for name in _FIELD_SHAPES:
                    self._file[_DATASETS[name][0]].resize(self._n, axis=0)
                for name in present:
                    self._file[_OPTIONAL[name][0]].resize(self._n, axis=0)
            except Exception:  # noqa: BLE001 - the file is unusable (e.g. disk full): drop it
                self.abort()
            raise PatchFileError(f"{self.path}: cannot append the batch ({h5_error_reason(exc)})"
                                 ) from None
        self._seen_ids.update(ids)
        self._n += n_new

    def _create_optional(self, name: str) -> None:
        """Create an optional dataset, the rows written so far set to the "none" value."""
        dset_name, units, desc = _OPTIONAL[name]
        ds = self._file.create_dataset(
            dset_name, shape=(self._n,), maxshape=(None,), dtype=_H5_DTYPES[name],
            chunks=(self._chunk,), **self._gzip,
        )
        if self._n:
            ds[:] = _absent(name, self._n)
        ds.attrs["units"] = units
        ds.attrs["description"] = desc
        self._file.attrs["schema_version"] = SCHEMA_VERSION

    def close(self) -> Path:
        """Finish the file and move it into place; returns the final path."""
        if self._file is None:
            if self._aborted:
                raise PatchFileError(f"{self.path}: writer was aborted; nothing was written")
            return self.path
        try:
            self._file.attrs["n_patches"] = self._n
            self._file.close()
            self._file = None
            if self.durable:  # the data is on disk before the name says the file is complete
                fsync_file(self.tmp_path)
            rename(self.tmp_path, self.path, fsync=self.durable)
        except (OSError, RuntimeError, ValueError) as exc:
            # a full disk or a failed rename: no temporary file is left, nothing at ``path``
            self.abort()
            raise PatchFileError(f"{self.path}: cannot finish writing ({h5_error_reason(exc)})"
                                 ) from None
        return self.path

    def abort(self) -> None:
        """Discard everything written; nothing appears at ``path``."""
        self._aborted = True
        if self._file is not None:
            try:
                self._file.close()
            except (OSError, RuntimeError, ValueError):
                pass  # the file is removed below whatever state it is in
            self._file = None
        try:
            self.tmp_path.unlink(missing_ok=True)
        except OSError:
            pass  # e.g. its directory is not one: there is nothing to remove

    def __enter__(self) -> PatchWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class PatchFile:
    """Read a patch file: ``len``, random access ``f[idx]``, streaming ``iter_batches``.

    Opening checks that the file is a complete mummi-ml patch file of a schema this version can
    read; otherwise :class:`PatchFileError` with a one-line reason. Nothing is loaded until asked.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise PatchFileError(f"{self.path}: no such file")
        if not self.path.is_file():  # a FIFO or device would block or stream forever
            raise PatchFileError(f"{self.path}: not a regular file")
        try:
            self._file = h5py.File(self.path, "r", rdcc_nbytes=_CACHE_BYTES, rdcc_nslots=10007)
        except OSError:
            raise PatchFileError(
                f"{self.path}: not a readable HDF5 file (truncated, corrupt or another format)"
            ) from None
        try:
            self._check()
        except PatchFileError:
            self._file.close()
            raise
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:  # h5py on broken metadata
            self._file.close()
            raise PatchFileError(
                f"{self.path}: corrupt HDF5 metadata ({str(exc).splitlines()[0][:120]})"
            ) from None

    def _check_channels(self) -> None:
        names = _decode(self._file.attrs.get("channel_names"))
        if names is None:
            raise PatchFileError(f"{self.path}: no channel_names attribute")
        if isinstance(names, str):
            names = [names]
        names = [str(n) for n in names] if isinstance(names, (list, tuple)) else [str(names)]
        if names == list(CHANNEL_NAMES):
            return
        common = min(len(names), len(CHANNEL_NAMES))
        k = next((i for i in range(common) if names[i] != CHANNEL_NAMES[i]), common)
        got = repr(names[k])[:60] if k < len(names) else "nothing"
        want = repr(CHANNEL_NAMES[k]) if k < len(CHANNEL_NAMES) else "nothing"
        raise PatchFileError(
            f"{self.path}: channel_names differ from the schema at channel {k}: the file has "
            f"{got}, the schema {want} (channels are matched by position, not remapped by name)"
        )

    def _check(self) -> None:
        check_self_contained(self._file, self.path)
        a = self._file.attrs
        if _decode(a.get("schema")) != SCHEMA:
            raise PatchFileError(f"{self.path}: not a mummi-ml patch file (no schema={SCHEMA!r})")
        version = _int_attr(self.path, a, "schema_version", -1)
        if version > SCHEMA_VERSION:
            raise PatchFileError(
                f"{self.path}: schema version {version} is newer than this mummi-ml reads "
                f"({SCHEMA_VERSION}); upgrade mummi-ml"
            )
        if version < 1:
            raise PatchFileError(f"{self.path}: invalid schema_version {version}")
        if "n_patches" not in a:
            raise PatchFileError(f"{self.path}: incomplete file (writer did not close it)")
        self._check_channels()
        n = _int_attr(self.path, a, "n_patches", -1)
        if n < 0:
            raise PatchFileError(f"{self.path}: invalid n_patches {a['n_patches']!r}")
        for name, (dtype, shape) in _FIELD_SHAPES.items():
            dset = _DATASETS[name][0]
            if dset not in self._file or not isinstance(self._file[dset], h5py.Dataset):
                raise PatchFileError(f"{self.path}: missing dataset {dset!r}")
            ds = self._file[dset]
            if ds.dtype.kind != dtype.kind:
                raise PatchFileError(
                    f"{self.path}: dataset {dset!r} has dtype {ds.dtype}, expected {dtype}"
                )
            if ds.shape != (n, *shape):
                raise PatchFileError(
                    f"{self.path}: dataset {dset!r} has shape {list(ds.shape)}, "
                    f"expected {[n, *shape]}"
                )
        self._optional = []
        for name, (dset, _, _) in _OPTIONAL.items():
            if dset not in self._file:
                continue
            if version < 2:
                raise PatchFileError(f"{self.path}: dataset {dset!r} needs schema version 2, "
                                     f"the file says {version}")
            ds = self._file[dset]
            want = _H5_DTYPES[name]
            ok = (h5py.check_string_dtype(ds.dtype) is not None if name == "names"
                  else isinstance(ds, h5py.Dataset) and ds.dtype.kind == np.dtype(want).kind)
            if not isinstance(ds, h5py.Dataset) or not ok:
                raise PatchFileError(f"{self.path}: dataset {dset!r} has dtype "
                                     f"{getattr(ds, 'dtype', 'none')}, expected {want}")
            if ds.shape != (n,):
                raise PatchFileError(f"{self.path}: dataset {dset!r} has shape "
                                     f"{list(ds.shape)}, expected {[n]}")
            self._optional.append(name)
        self._n = n
        self.chunk_patches = self._file["x"].chunks[0] if self._file["x"].chunks else 1024

    @property
    def attrs(self) -> dict[str, Any]:
        """File attributes as plain Python values."""
        return {k: _decode(v) for k, v in self._file.attrs.items()}

    def __len__(self) -> int:
        return self._n

    @property
    def optional_fields(self) -> list[str]:
        """The optional producer fields this file has (``names``, ``given_class``,
        ``bin_value``; schema version 2)."""
        return list(self._optional)

    def field(self, name: str) -> np.ndarray:
        """One per-patch field for every patch (e.g. ``"y"``, ``"ids"``, ``"time_us"``; an
        optional field the file lacks comes back as its "none" value)."""
        if name in _OPTIONAL:
            if name not in self._optional:
                return _absent(name, self._n)
            return self._read_field(name, slice(0, self._n))
        if name not in _DATASETS:
            raise KeyError(f"unknown field {name!r}; fields: "
                           f"{', '.join([*_DATASETS, *_OPTIONAL])}")
        return self._read_field(name, slice(0, self._n))

    def _read_field(self, name: str, sel: slice | np.ndarray) -> np.ndarray:
        ds = self._file[(_OPTIONAL[name] if name in _OPTIONAL else _DATASETS[name])[0]]
        try:
            if name == "names":
                return np.array([_decode(v) for v in ds[sel]] + [None], dtype=object)[:-1]
            return ds[sel]
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise PatchFileError(f"{self.path}: cannot read {name!r} ({exc})") from None

    def _read_slice(self, start: int, stop: int) -> PatchBatch:
        sel = slice(start, stop)
        fields_ = {name: self._read_field(name, sel) for name in _FIELD_SHAPES}
        fields_.update({name: self._read_field(name, sel) for name in self._optional})
        return PatchBatch(**fields_)

    def _read_sorted(self, idx: np.ndarray) -> PatchBatch:
        """Read sorted unique indices chunk by chunk (h5py point selection is slow)."""
        cs = self.chunk_patches
        chunk_of = idx // cs
        parts = []
        starts = np.flatnonzero(np.r_[True, chunk_of[1:] != chunk_of[:-1]])
        bounds = np.r_[starts, len(idx)]
        for b0, b1 in zip(bounds[:-1], bounds[1:], strict=True):
            group = idx[b0:b1]
            lo, hi = int(group[0]), int(group[-1]) + 1
            parts.append(self._read_slice(lo, hi).subset(group - lo))
        return PatchBatch.concat(parts)

    def __getitem__(self, idx: int | slice | Sequence[int] | np.ndarray) -> PatchBatch:
        """Patches at an int, a slice, or an int array (any order, repeats allowed)."""
        if isinstance(idx, slice):
            start, stop, step = idx.indices(self._n)
            if step == 1:
                return self._read_slice(start, max(start, stop))
            idx = np.arange(start, stop, step)
        idx = np.atleast_1d(np.asarray(idx))
        if idx.dtype.kind not in "iu":
            raise TypeError(f"index: expected integers, got dtype {idx.dtype}")
        idx = np.where(idx < 0, idx + self._n, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= self._n):
            raise IndexError(f"{self.path}: index out of range for {self._n} patches")
        uniq, inverse = np.unique(idx, return_inverse=True)
        if uniq.size == 0:
            return PatchBatch.empty()
        return self._read_sorted(uniq).subset(inverse)

    def iter_batches(
        self, batch_size: int | None = None, start: int = 0, stop: int | None = None
    ) -> Iterator[PatchBatch]:
        """Stream patches ``start..stop`` in order, ``batch_size`` at a time (default: 1024,
        rounded to whole chunks). Memory stays bounded whatever the file size."""
        if batch_size is None:
            batch_size = max(1, 1024 // self.chunk_patches) * self.chunk_patches
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        stop = self._n if stop is None else min(stop, self._n)
        for lo in range(start, stop, batch_size):
            yield self._read_slice(lo, min(lo + batch_size, stop))

    def read(self) -> PatchBatch:
        """Every patch of the file (loads it all: mind the size)."""
        return self._read_slice(0, self._n)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> PatchFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _expand(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Path] = []
    for p in paths:
        s = str(p)
        if any(ch in s for ch in "*?["):
            matches = sorted(glob.glob(s))
            if not matches:
                raise PatchFileError(f"{s}: no file matches this pattern")
            out.extend(Path(m) for m in matches)
        elif Path(s).is_dir():
            matches = sorted(Path(s).glob("*.h5"))
            if not matches:
                raise PatchFileError(f"{s}: directory holds no .h5 files")
            out.extend(matches)
        else:
            out.append(Path(s))
    return out


class PatchDataset:
    """Several patch files (e.g. one shard per MPI rank) read as one dataset, in order.

    Args:
        paths: files, glob patterns (``"run/patches.rank*.h5"``) or directories of ``*.h5``.
    """

    def __init__(self, paths: str | Path | Sequence[str | Path]):
        self.paths = _expand(paths)
        if not self.paths:
            raise PatchFileError("no patch files given")
        self.files: list[PatchFile] = []
        try:
            for p in self.paths:
                self.files.append(PatchFile(p))
        except PatchFileError:
            self.close()
            raise
        names = [tuple(f.attrs.get("channel_names", ())) for f in self.files]
        if len(set(names)) > 1:
            self.close()
            raise PatchFileError(f"{self.paths}: files have different channel_names")
        self.offsets = np.cumsum([0] + [len(f) for f in self.files])

    @property
    def attrs(self) -> dict[str, Any]:
        """Attributes of the first file."""
        return self.files[0].attrs

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def field(self, name: str) -> np.ndarray:
        """A per-patch field over all files, concatenated."""
        return np.concatenate([f.field(name) for f in self.files])

    def __getitem__(self, idx: int | slice | Sequence[int] | np.ndarray) -> PatchBatch:
        """Patches at global indices (int, slice or int array; any order)."""
        if isinstance(idx, slice):
            idx = np.arange(*idx.indices(len(self)))
        idx = np.atleast_1d(np.asarray(idx))
        idx = np.where(idx < 0, idx + len(self), idx)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} patches")
        which = np.searchsorted(self.offsets, idx, side="right") - 1
        order = np.argsort(which, kind="stable")
        parts = []
        for k in np.unique(which):
            sel = order[which[order] == k]
            parts.append((sel, self.files[k][idx[sel] - self.offsets[k]]))
        if not parts:
            return PatchBatch.empty()
        merged = PatchBatch.concat([p for _, p in parts])
        positions = np.concatenate([s for s, _ in parts])
        return merged.subset(np.argsort(positions))

    def iter_batches(self, batch_size: int | None = None) -> Iterator[PatchBatch]:
        """Stream every file in order (a batch never spans two files)."""
        for f in self.files:
            yield from f.iter_batches(batch_size)

    def read(self) -> PatchBatch:
        """Every patch of every file (loads it all)."""
        return PatchBatch.concat([f.read() for f in self.files])

    def close(self) -> None:
        for f in self.files:
            f.close()

    def __enter__(self) -> PatchDataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def validate_dataset(dataset: PatchDataset, batch_size: int | None = None) -> None:
    """Check every patch of a dataset (one streaming pass) and that ids are unique across files.

    The rules are those of :func:`~mummi_ml.patch.validate.validate_batch` (finite, physically
    possible concentrations, consistent protein counts), applied by readers that consume whole
    files (training) as the selector applies them per patch.

    Raises:
        PatchValidationError: one line naming the file, the patch (index and id) and the problem.
    """
    ids = dataset.field("ids") if len(dataset) else np.zeros(0, np.uint64)
    uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = int(uniq[counts > 1][0])
        where = np.flatnonzero(ids == dup)[:2]
        k = np.searchsorted(dataset.offsets, where, side="right") - 1
        raise PatchValidationError(
            f"patch id {dup} appears more than once ({int((counts > 1).sum())} repeated ids): "
            f"{dataset.paths[k[0]]} patch {int(where[0] - dataset.offsets[k[0]])} and "
            f"{dataset.paths[k[1]]} patch {int(where[1] - dataset.offsets[k[1]])}"
        )
    for f in dataset.files:
        lo = 0
        for b in f.iter_batches(batch_size):
            try:
                validate_batch(b.x, b.y)
            except PatchValidationError as exc:
                i = lo + (exc.index or 0)
                raise PatchValidationError(
                    f"{f.path}: {str(exc).replace(f'patch {exc.index}:', f'patch {i}:', 1)} "
                    f"(id {int(b.ids[exc.index or 0])})", index=i
                ) from None
            lo += len(b)


def validate_files(paths: str | Path | Sequence[str | Path]) -> int:
    """Open patch files as one dataset and :func:`validate_dataset` it; returns the patch count.

    Raises:
        PatchFileError: a file cannot be read (see :class:`PatchFile`).
        PatchValidationError: a bad patch or a repeated id (one line, naming file and patch).
    """
    with PatchDataset(paths) as ds:
        validate_dataset(ds)
        return len(ds)


def open_patches(paths: str | Path | Sequence[str | Path]) -> PatchDataset:
    """Open one or more patch files (paths, globs or directories) as a :class:`PatchDataset`."""
    return PatchDataset(paths)


def write_patches(path: str | Path, batch: PatchBatch, attrs: dict[str, Any] | None = None) -> Path:
    """Write one batch to a new patch file in one go; returns the path."""
    with PatchWriter(path, attrs=attrs) as w:
        w.append(batch)
    return Path(path)


def read_patches(path: str | Path) -> PatchBatch:
    """Read every patch of one file."""
    with PatchFile(path) as f:
        return f.read()


assert set(_DATASETS) | set(_OPTIONAL) == {f.name for f in fields(PatchBatch)}
