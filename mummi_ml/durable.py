"""Durable file writes: the one place where mummi-ml replaces, renames and fsyncs files.

Every write here is atomic for readers: the data goes to a temporary file in the destination's
directory, which is renamed over the destination only when complete, so a reader (or a restart)
sees the old file or the new one, never half of one. A temporary is hidden and never ends like
the final name (``.NAME.tmp-<pid>-<random>``), so a glob of final names (``*.h5``, ``*.png``)
never matches it; a failed write removes it.

``fsync`` is keyword-only and has no default, so each call site states its choice. The rule:
state that must survive a crash (checkpoints, journals, picks, outcome records, job records)
fsyncs; derived or report files (figures, reports, status, statistics) may not.

Lowest layer: the standard library and :mod:`mummi_ml.jsonutil` only.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mummi_ml.jsonutil import json_dumps_strict

__all__ = [
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "append_jsonl",
    "append_jsonl_many",
    "atomic_path",
    "temp_path",
    "rename",
    "fsync_file",
    "fsync_dir",
]

TEMP_MARK = ".tmp-"
"""Part of every temporary name: ``.NAME.tmp-<pid>-<random>``."""


def fsync_file(path: str | Path) -> None:
    """Flush a file's data (or a directory's entries) to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Flush a directory's entries (creations, renames, removals in it) to stable storage."""
    fsync_file(path)


def temp_path(path: str | Path) -> Path:
    """A fresh temporary name beside ``path``: ``.NAME.tmp-<pid>-<random>`` (hidden, and no glob
    of final names such as ``*.npy`` matches it)."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def rename(src: str | Path, dst: str | Path, *, fsync: bool) -> None:
    """Rename ``src`` to ``dst`` atomically (replacing ``dst`` if it is a file); with ``fsync``
    the directory of ``dst`` (and that of ``src`` when different) is fsynced after the rename, so
    the move survives a crash. ``src``'s data is not fsynced here (see :func:`fsync_file`).
    Raises what :func:`os.replace` raises (e.g. FileNotFoundError when ``src`` is gone)."""
    src, dst = Path(src), Path(dst)
    os.replace(src, dst)
    if fsync:
        fsync_dir(dst.parent)
        if src.parent.resolve() != dst.parent.resolve():
            fsync_dir(src.parent)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that needs a file name (h5py,
    ``np.save``, matplotlib, ``torch.save``); on a clean exit it is renamed over ``path`` (with
    ``fsync``: the file is fsynced before the rename and the directory after); on any exception
    it is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        if fsync:
            fsync_file(tmp)
        rename(tmp, path, fsync=fsync)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes, *, fsync: bool) -> None:
    """Replace ``path``'s content with ``data`` atomically (see the module's fsync rule)."""
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def write_text_atomic(path: str | Path, text: str, *, fsync: bool) -> None:
    """Replace ``path``'s content with ``text`` (UTF-8) atomically."""
    write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def write_json_atomic(path: str | Path, obj: Any, *, fsync: bool, indent: int | None = 1,
                      **dumps_kwargs: Any) -> None:
    """Write ``obj`` as strict JSON (:func:`mummi_ml.jsonutil.json_dumps_strict`: a non-finite
    float is written as ``null``) to ``path`` atomically; extra keywords go to ``json.dumps``
    (e.g. ``sort_keys``, ``default``)."""
    write_text_atomic(path, json_dumps_strict(obj, indent=indent, **dumps_kwargs), fsync=fsync)


def append_jsonl_many(path: str | Path, records: Iterable[Any], *, fsync: bool) -> None:
    """Append one strict-JSON line per record with a single ``O_APPEND`` write (concurrent
    appenders never interleave inside a line); with ``fsync`` the lines are on stable storage
    when this returns. A crash can leave at most a torn last line, which readers skip."""
    data = "".join(json_dumps_strict(r) + "\n" for r in records).encode("utf-8")
    if not data:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:  # a regular file takes the whole write; loop for the pathological case
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def append_jsonl(path: str | Path, record: Any, *, fsync: bool) -> None:
    """Append ``record`` as one whole strict-JSON line (see :func:`append_jsonl_many`)."""
    append_jsonl_many(path, [record], fsync=fsync)
