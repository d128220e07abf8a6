"""Job directories: the one module that decides where a job's files are and how they are written.

``<jobs_root>/<patch id>/`` holds ``patch.h5`` (the picked patch, via the patch API),
``job.json`` (patch id, class, novelty, model version, time, attempt, backend), the command's
output ``<job name>.out``/``.err``, and whatever the MD command writes (``result.h5`` for
``mummi-ml relax``). A directory is built under ``<jobs_root>/.tmp-<id>-<random>`` and renamed
into place, so it exists whole or not at all, and an existing one is never made again.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from mummi_ml.durable import fsync_dir, fsync_file, rename, write_json_atomic
from mummi_ml.errors import MummiMLError
from mummi_ml.jsonutil import finite_or_none, json_dumps_strict
from mummi_ml.patch import PatchBatch, write_patches

__all__ = ["JobDirs", "JobDirError", "PATCH_FILE", "JOB_JSON"]

log = logging.getLogger(__name__)

PATCH_FILE = "patch.h5"
JOB_JSON = "job.json"
_TMP_PREFIX = ".tmp-"


class JobDirError(MummiMLError, ValueError):
    """A bad patch id for a job directory, or a job directory that already exists."""


class JobDirs:
    """The job directories under one root (created if missing).

    Args:
        root: absolute directory of the job directories.
    """

    def __init__(self, root: Path):
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, patch_id: int | np.integer) -> Path:
        """``<root>/<patch id>/``; the id must be an integer in [0, 2**64) (no traversal)."""
        if isinstance(patch_id, (bool, np.bool_)) or not isinstance(patch_id, (int, np.integer)):
            raise JobDirError(f"patch_id: expected an integer, got {patch_id!r}")
        pid = int(patch_id)
        if not 0 <= pid < 2**64:
            raise JobDirError(f"patch_id: expected 0 <= id < 2**64, got {pid}")
        path = self.root / str(pid)
        if path.parent != self.root or not path.name.isdigit():  # internal invariant, kept cheap
            raise JobDirError(f"patch_id {pid}: job dir {path} is not directly under {self.root}")
        return path

    def create(self, patch: PatchBatch, meta: dict[str, Any]) -> Path:
        """Build the job directory of the single patch in ``patch`` with ``job.json`` = ``meta``.

        Raises JobDirError if it exists already.
        """
        pid = int(patch.ids[0])
        final = self.path(pid)
        if final.exists():
            raise JobDirError(f"job dir {final} exists already: a job directory is made once")
        tmp = self.root / f"{_TMP_PREFIX}{pid}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            write_patches(tmp / PATCH_FILE, patch, attrs={"created_by": "mummi-ml job emitter"})
            (tmp / JOB_JSON).write_text(json_dumps_strict({"patch_id": pid, **meta}, indent=1))
            for name in (PATCH_FILE, JOB_JSON):  # data on disk before the rename publishes it
                fsync_file(tmp / name)
            fsync_dir(tmp)
            rename(tmp, final, fsync=True)  # atomic; the new entry survives a node crash
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def update_meta(self, patch_id: int, **changes: Any) -> None:
        """Rewrite fields of a job's ``job.json`` atomically (a warning if it is unreadable)."""
        path = self.path(patch_id) / JOB_JSON
        try:
            meta = json.loads(path.read_text())
            meta.update(changes)
            write_json_atomic(path, meta, fsync=True, indent=1)
        except (OSError, ValueError) as exc:
            log.warning("cannot update %s: %s", path, exc)

    def read_meta(self, patch_id: int) -> dict[str, Any] | None:
        """A job's ``job.json``, or None if it is missing or unreadable."""
        try:
            meta = json.loads((self.path(patch_id) / JOB_JSON).read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def remove_half_built(self) -> int:
        """Delete directories left half-built by a crash; returns how many."""
        n = 0
        for tmp in self.root.glob(f"{_TMP_PREFIX}*"):
            log.warning("removing half-built job directory %s", tmp)
            shutil.rmtree(tmp, ignore_errors=True)
            n += 1
        return n

    def patch_ids(self) -> list[int]:
        """Patch ids of every complete job directory, sorted."""
        return sorted(int(p.name) for p in self.root.iterdir()
                      if p.is_dir() and p.name.isascii() and p.name.isdigit())  # not '²'

    @staticmethod
    def meta(patch: PatchBatch, novelty: float, model_version: str, backend: str) -> dict:
        """The ``job.json`` of a new job (attempt 1), with the time in UTC ISO 8601."""
        return {
            "class": int(patch.classes[0]),
            "name": str(patch.field_or_default("names")[0]),  # the producer's name ("": none)
            "novelty": finite_or_none(novelty),  # null: infinite (the first pick)
            "model_version": str(model_version),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "attempt": 1,
            "backend": backend,
        }
