"""The closed loop of the running selector (issue 16): drift monitor, retraining reservoir,
training snapshots and retraining jobs.

The service calls four hooks (everything else is here):

- :meth:`ClosedLoop.on_accept` for every accepted batch on the rank that ingested it: the
  batch goes into this rank's drift partial (:class:`~mummi_ml.selector.drift.DriftMonitor`)
  and is offered to this rank's :class:`~mummi_ml.selector.reservoir.Reservoir`;
- :meth:`ClosedLoop.step` once per loop iteration on every rank (collective when any rank had
  input): the ranks' partials are gathered to rank 0 and merged there (the other ranks start new
  partials), so after every iteration rank 0 holds the whole loop state. Rank 0 then closes a
  drift window when it has ``drift.window`` arrivals (``STATE/drift.jsonl``, one log line, an
  event logged once with its figures) and writes a training snapshot when one is due;
- :meth:`ClosedLoop.checkpoint` before every checkpoint (collective): the same merge (and window
  close and snapshot), then rank 0 writes ``loop.h5`` into the checkpoint directory (before
  the manifest completes it); its
  :meth:`~ClosedLoop.live_segments` keep the reservoir's payload segments from the garbage
  collection. A restart on any number of ranks loads ``loop.h5`` on rank 0;
- :meth:`ClosedLoop.status` for ``status.json``.

Windows. A window is closed at the first merge point at which the merged arrivals reach
``drift.window``, so it holds at least that many (all arrivals merged by then). Since merges
happen once per loop iteration, the windows' boundaries follow the iterations; the statistics of
a window are those one process would compute from the same arrivals, on any rank count.

Snapshots (``selector.retrain``): on a drift event (``on_drift``), every ``every_picks`` picks,
every ``every_arrivals`` accepted arrivals, or when an operator creates ``STATE/RETRAIN`` (the
service deletes it when it takes the request), rank 0 writes ``STATE/snapshots/NNNN/``
(``reservoir.h5``, ``selected.h5`` as ordinary patch files, ``config.yaml``, then
``snapshot.json``). With ``submit: true`` it then submits, through the jobs backend,
``python -m mummi_ml train --config SNAP/config.yaml --init-from MODEL --data FILES --out
UPDATES/NAME`` (``UPDATES`` = ``selector.model_updates_dir``) as a job of ``retrain.tasks`` tasks
(None: the backend's per-job count), i.e. a data-parallel training of that many MPI ranks;
submissions are recorded in ``STATE/retrain.jsonl``.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mummi_ml.durable import append_jsonl, atomic_path
from mummi_ml.errors import MummiMLError
from mummi_ml.patch import PatchBatch, PatchFile
from mummi_ml.patch.constants import N_CLASSES
from mummi_ml.selector import checkpoint as ck
from mummi_ml.selector.drift import DriftMonitor, DriftRecord, WindowStats, append_drift_log
from mummi_ml.selector.errors import SelectorError
from mummi_ml.selector.reservoir import Reservoir, Snapshot, fetch_from_store, write_snapshot
from mummi_ml.selector.retrain_config import RETRAIN_FILE

__all__ = ["ClosedLoop", "LOOP_FILE", "SNAPSHOTS_DIR", "RETRAIN_LOG", "RETRAIN_FILE",
           "read_retrain_log", "wait_for_retraining"]

log = logging.getLogger("mummi_ml.selector")

LOOP_FILE = "loop.h5"
"""The loop state in a checkpoint directory (rank 0)."""
SNAPSHOTS_DIR = "snapshots"
RETRAIN_LOG = "retrain.jsonl"


def _gather(comm: Any, obj: Any) -> list[Any] | None:
    """``[obj of every rank]`` on rank 0, None elsewhere (``[obj]`` without a communicator)."""
    if comm is None or comm.Get_size() == 1:
        return [obj]
    return comm.gather(obj, root=0)


@dataclass
class _Progress:
    """Rank 0's checkpointed loop counters."""

    events: int = 0
    snapshots: int = 0
    picks_at_snapshot: int = 0
    arrivals_at_snapshot: int = 0
    last_record: dict | None = None
    drift_pending_at: int | None = None  # accepted arrivals at a drift event awaiting its snapshot
    jobs: list[dict] = field(default_factory=list)


class ClosedLoop:
    """Drift monitor, reservoir, snapshots and retraining jobs of one selector rank.

    Args:
        cfg: the whole :class:`mummi_ml.config.Config` (``selector`` and ``jobs`` are used).
        state: this rank's :class:`~mummi_ml.selector.state.SelectorState`.
        embed: raw patches ``[n, 37, 37, 14]`` -> embeddings ``[n, d]`` (for the drift probe).
        model_version: the version of the embedding in use.
        model_dir: the directory of that model (default ``selector.model_dir``; after a hot
            swap and a restart, the swapped-in model's).
        backend_factory: ``state_dir -> JobBackend`` for retraining jobs (default: the
            configured backend).

    Raises:
        SelectorError: ``retrain.submit`` without ``selector.model_updates_dir`` or a model.
    """

    def __init__(self, cfg: Any, state: Any, embed: Any, model_version: str,
                 backend_factory: Any = None, model_dir: str | None = None):
        s = cfg.selector
        self.cfg, self.s, self.state = cfg, s, state
        self.rank = state.rank
        self.state_dir = Path(state.state_dir)
        self.model_dir = (model_dir or s.model_dir) if s.embedding == "model" else None
        self.model_version = model_version
        self.rc = s.retrain
        self.drift = self._make_monitor(embed) if s.drift is not None else None
        self.reservoir = (Reservoir(N_CLASSES, self.rc.reservoir_per_class)
                          if self.rc is not None else None)
        if self.rc is not None and self.rc.submit and (not s.model_updates_dir
                                                        or not self.model_dir):
            raise SelectorError("selector.retrain.submit needs selector.model_updates_dir and "
                                "a model (selector.embedding: model)")
        self._backend_factory = backend_factory
        self._backend: Any = None
        self.progress = _Progress()
        if self.rank == 0 and state.last_checkpoint:
            self._restore(ck.checkpoint_dir(self.state_dir, state.last_checkpoint["seq"]))

    def adopt(self, model_dir: str, model_version: str, embed: Any) -> None:
        """A hot swap (or a restart on a swapped-in model; collective): later snapshots
        fine-tune from ``model_dir``, and the drift monitor is rebuilt against that model's own
        training reference. The open window, measured with the old model, is closed first
        (however few arrivals it holds) and logged with the old version."""
        if self.drift is not None and self._merge() and self.drift.stats.n > 0:
            self._record(self.drift.close(self.drift.stats))
        self.model_dir = model_dir
        self.model_version = model_version
        if self.s.drift is not None:
            self.drift = self._make_monitor(embed)

    @property
    def active(self) -> bool:
        return self.drift is not None or self.reservoir is not None

    def _make_monitor(self, embed: Any) -> DriftMonitor | None:
        from mummi_ml.metric.domain import load_domain

        if not self.s.drift.enabled or self.model_dir is None:
            return None
        dom = load_domain(self.model_dir, self.model_version)
        if dom is None or not dom.has_drift_reference:
            log.warning("drift monitor off: %s has no drift reference in its "
                        "embedding_domain.json (retrain it with this version)", self.model_dir)
            return None
        return DriftMonitor(dom, self.s.drift, self.model_version, N_CLASSES, embed)

    # ---- every rank ----------------------------------------------------------------------------
    def on_accept(self, z: np.ndarray, batch: PatchBatch, loc: np.ndarray) -> None:
        """Accepted arrivals of this rank: embeddings ``z [n, d]``, their patches, payload
        locations int64 ``[n, 3]`` (src, seg, row)."""
        if self.drift is not None:
            self.drift.update(z, batch.classes, batch.ids, batch.x)
        if self.reservoir is not None:
            self.reservoir.offer(batch.ids, batch.classes, loc)

    def _merge(self) -> bool:
        """Gather every rank's partials to rank 0 and merge them there (collective). Returns
        True on rank 0."""
        mine = (None if self.drift is None else self.drift.partial().to_state(),
                None if self.reservoir is None else self.reservoir.to_state())
        parts = _gather(self.state.comm, mine)
        if parts is None:
            if self.drift is not None:
                self.drift.reset()
            if self.reservoir is not None:
                self.reservoir.clear()
            return False
        if len(parts) > 1:
            if self.drift is not None:
                self.drift.stats = WindowStats.merge(
                    [WindowStats.from_state(p[0]) for p in parts], self.s.drift.probe_size)
            if self.reservoir is not None:
                self.reservoir = Reservoir.merge(
                    [self.reservoir] + [Reservoir.from_state(p[1]) for p in parts[1:]])
        return True

    def step(self, had_input: bool) -> None:
        """Once per loop iteration on every rank; ``had_input`` (agreed over the ranks): merge
        (collective), then rank 0 closes a full drift window and writes a due snapshot."""
        if not self.active:
            return
        if had_input and not self._merge():
            return
        if self.rank == 0:
            self._settle()

    def _settle(self) -> None:
        """Rank 0 after a merge: close a full window, write a due snapshot."""
        reasons = []
        if self.drift is not None and self.drift.ready(self.drift.stats):
            rec = self.drift.close(self.drift.stats)
            self._record(rec)
            if rec.event and self.rc is not None and self.rc.on_drift:
                reasons += self._on_drift_event()
        if self.reservoir is not None:
            picks = len(self.state.selected)
            reasons += self._due(picks)
            if reasons:
                self.snapshot(reasons, picks)

    def _record(self, rec: DriftRecord) -> None:
        append_drift_log(self.state_dir, rec)
        self.progress.last_record = asdict(rec)
        if rec.event:
            self.progress.events += 1
            log.warning("%s", rec.summary())
        else:
            log.info("%s", rec.summary())

    def _on_drift_event(self) -> list[str]:
        """``["drift"]`` when the event's snapshot is due now; with ``after_drift_arrivals`` the
        snapshot waits for that many more arrivals (:meth:`_due` writes it then)."""
        p, delay = self.progress, self.rc.after_drift_arrivals
        if delay == 0:
            return ["drift"]
        if p.drift_pending_at is None:
            p.drift_pending_at = int(self.reservoir.seen.sum())
            log.info("drift event: the snapshot waits for %d more arrivals "
                     "(selector.retrain.after_drift_arrivals)", delay)
        return []

    def _due(self, picks: int) -> list[str]:
        rc, p = self.rc, self.progress
        out = []
        request = self.state_dir / RETRAIN_FILE
        if request.exists():
            request.unlink(missing_ok=True)
            log.info("%s: retraining requested by the operator", request)
            out.append("request")
        if rc.every_picks and picks - p.picks_at_snapshot >= rc.every_picks:
            out.append("picks")
        arrivals = int(self.reservoir.seen.sum())
        if p.drift_pending_at is not None and (
                arrivals - p.drift_pending_at >= rc.after_drift_arrivals):
            p.drift_pending_at = None
            out.append("drift")
        if rc.every_arrivals and arrivals - p.arrivals_at_snapshot >= rc.every_arrivals:
            out.append("arrivals")
        return out

    # ---- rank 0: snapshots and jobs ------------------------------------------------------------
    def _selected_batch(self) -> PatchBatch:
        """The selected patches from their payload segments, or their job directories once the
        segment is gone (emitted picks no longer pin their segments)."""
        from mummi_ml.backends.jobdir import PATCH_FILE

        sel, store = self.state.selected, self.state.payloads
        root = Path(self.cfg.jobs.jobs_root)
        jobs_root = root if root.is_absolute() else self.state_dir / root
        out = []
        for q in range(len(sel)):
            src, seg, row = int(sel.src[q]), int(sel.seg[q]), int(sel.row[q])
            if store.path(src, seg).exists():
                out.append(store.get(src, seg, row))
                continue
            path = jobs_root / str(int(sel.ids[q])) / PATCH_FILE
            if path.exists():
                with PatchFile(path) as f:
                    out.append(f[np.arange(len(f))])
            else:
                log.warning("snapshot: the payload of selected patch %d is gone", sel.ids[q])
        return PatchBatch.concat(out) if out else PatchBatch.empty()

    def snapshot(self, reasons: list[str], picks: int) -> Snapshot | None:
        """Rank 0: write the next snapshot (and submit its retraining when configured); an
        error is logged, never raised (the service goes on)."""
        from mummi_ml.config_loader import model_to_yaml

        p = self.progress
        root = self.state_dir / SNAPSHOTS_DIR
        seq = p.snapshots
        while (root / f"{seq:04d}" / "snapshot.json").exists():
            seq += 1
        out = root / f"{seq:04d}"
        try:
            snap = write_snapshot(out, self.reservoir, fetch_from_store(self.state.payloads),
                                  self._selected_batch(),
                                  {"model_version": self.model_version, "reasons": reasons,
                                   "seq": seq, "picks": picks, "time": time.time()})
            (out / "config.yaml").write_text(model_to_yaml(self.cfg))
        except (MummiMLError, OSError, ValueError) as exc:
            log.error("snapshot %s failed: %s", out, exc)
            return None
        p.snapshots = seq + 1
        p.picks_at_snapshot, p.arrivals_at_snapshot = picks, int(self.reservoir.seen.sum())
        log.info("snapshot %d (%s): %d reservoir + %d selected patches in %s", seq,
                 ", ".join(reasons), snap.n_reservoir, snap.n_selected, out)
        if self.rc.submit:
            self._submit(seq, snap)
        return snap

    def _n_train(self, snap: Snapshot) -> int:
        """Training patches of the retraining of ``snap`` (the rest validates)."""
        return int((snap.n_reservoir + snap.n_selected) * (1 - self.cfg.train.validation_fraction))

    def train_argv(self, seq: int, snap: Snapshot, tasks: int = 1) -> tuple[str, list[str]]:
        """``(model output dir, argv)`` of the retraining of snapshot ``seq`` on ``tasks``
        ranks."""
        files = [str(f) for f in snap.files if f.name != "selected.h5" or snap.n_selected]
        if not snap.n_reservoir:
            files = [f for f in files if not f.endswith("reservoir.h5")]
        out = str(Path(self.s.model_updates_dir).absolute() / f"retrain-{seq:04d}")
        argv = [sys.executable, "-m", "mummi_ml", "train",
                "--config", str(snap.dir / "config.yaml"),
                "--init-from", str(Path(self.model_dir).absolute()),
                "--data", *files, "--out", out, "--no-progress"]
        tc = self.cfg.train
        n_train = self._n_train(snap)
        if n_train < tc.batch_size:  # a small snapshot: one global batch of what it holds,
            batch = max(2, n_train)   # a multiple of the ranks (each embeds batch / tasks)
            argv += ["--set", f"train.batch_size={max(tasks, batch - batch % tasks)}"]
        for o in self.rc.train_overrides:
            argv += ["--set", o]
        return out, argv

    def _submit(self, seq: int, snap: Snapshot) -> None:
        from mummi_ml.backends import make_backend

        tag = hashlib.sha1(str(self.state_dir.resolve()).encode()).hexdigest()[:6]
        name = f"retrain-{tag}-{seq:04d}"
        job_dir = (self.state_dir / "retrain" / f"{seq:04d}").absolute()
        try:
            job_dir.mkdir(parents=True, exist_ok=True)
            if self._backend is None:
                self._backend = (self._backend_factory or (
                    lambda d: make_backend(self.cfg.jobs, d)))(self.state_dir)
            tasks = self.rc.tasks or self._backend.default_tasks
            n_train = self._n_train(snap)
            if n_train < max(2, tasks):
                raise SelectorError(f"the snapshot holds {n_train} training patches, too few for "
                                    f"a retraining on {tasks} rank(s)")
            out, argv = self.train_argv(seq, snap, tasks)
            found = self._backend.find(name)
            job_id = found.job_id if found else self._backend.submit(name, argv, job_dir,
                                                                     tasks=tasks)
        except (MummiMLError, OSError) as exc:
            log.error("retraining of snapshot %d not submitted: %s", seq, exc)
            return
        rec = {"seq": seq, "name": name, "job_id": job_id, "out": out, "tasks": tasks,
               "snapshot": str(snap.dir), "time": time.time(), "argv": argv}
        append_jsonl(self.state_dir / RETRAIN_LOG, rec, fsync=True)
        self.progress.jobs.append({k: rec[k] for k in ("seq", "name", "job_id", "out", "tasks")})
        log.info("retraining of snapshot %d submitted as %s (%d task%s): model -> %s", seq,
                 job_id, tasks, "" if tasks == 1 else "s", out)

    # ---- checkpoint ----------------------------------------------------------------------------
    def checkpoint(self, seq: int) -> None:
        """Before checkpoint ``seq`` (collective): merge on rank 0, which writes ``loop.h5``."""
        if not self.active or not self._merge():
            return
        self._settle()
        d = ck.checkpoint_dir(self.state_dir, seq)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / LOOP_FILE, fsync=True) as tmp, h5py.File(tmp, "w") as f:
            f.attrs["model_version"] = self.model_version
            f.attrs["progress"] = _json(self.progress.__dict__)
            if self.drift is not None:
                g = f.create_group("drift")
                for k, v in self.drift.to_state().items():
                    g.create_dataset(k, data=v)
            if self.reservoir is not None:
                g = f.create_group("reservoir")
                for k, v in self.reservoir.to_state().items():
                    g.create_dataset(k, data=v)

    def _restore(self, ckpt: Path) -> None:
        import json

        path = ckpt / LOOP_FILE
        if not path.exists():
            return
        try:
            with h5py.File(path, "r") as f:
                self.progress = _Progress(**json.loads(f.attrs["progress"]))
                same_model = f.attrs["model_version"] == self.model_version
                if self.drift is not None and "drift" in f and same_model:
                    self.drift.restore({k: v[:] for k, v in f["drift"].items()})
                if self.reservoir is not None and "reservoir" in f:
                    res = Reservoir.from_state({k: v[:] for k, v in f["reservoir"].items()})
                    if res.per_class == self.reservoir.per_class:
                        self.reservoir = res
                    else:  # a new sample counts arrivals from 0: so do its triggers
                        self.progress.arrivals_at_snapshot = 0
                        if self.progress.drift_pending_at is not None:
                            self.progress.drift_pending_at = 0
                        log.warning("reservoir: checkpointed with %d per class, the config "
                                    "gives %d: starting a new sample", res.per_class,
                                    self.reservoir.per_class)
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise SelectorError(f"{path}: unreadable loop state ({exc})") from None

    def live_segments(self) -> np.ndarray:
        """int64 ``[m, 2]`` (src, seg) payload segments the reservoir refers to (rank 0 after a
        merge; empty elsewhere): kept by the payload garbage collection."""
        if self.reservoir is None or not len(self.reservoir):
            return np.zeros((0, 2), np.int64)
        return np.array(sorted(self.reservoir.live_segments()), np.int64).reshape(-1, 2)

    # ---- status --------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Rank 0: ``{"drift": ..., "retrain": ...}`` for ``status.json`` ({} when off)."""
        out: dict[str, Any] = {}
        p = self.progress
        if self.drift is not None:
            out["drift"] = {"window_arrivals": int(self.drift.stats.n),
                            "window": self.s.drift.window, "events": p.events,
                            "last_window": p.last_record}
        if self.reservoir is not None:
            out["retrain"] = {"reservoir": int(len(self.reservoir)),
                              "reservoir_seen": int(self.reservoir.seen.sum()),
                              "snapshots": p.snapshots, "jobs": list(p.jobs)}
        return out


def _json(obj: Any) -> str:
    from mummi_ml.jsonutil import json_dumps_strict

    return json_dumps_strict(obj)


def read_retrain_log(state_dir: str | Path) -> list[dict[str, Any]]:
    """The retraining submissions of a state directory, oldest first (``STATE/retrain.jsonl``:
    ``seq``, ``name``, ``job_id``, ``out``, ``tasks``, ``snapshot``, ``time``, ``argv``); [] when
    none was submitted."""
    import json

    path = Path(state_dir) / RETRAIN_LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_retraining(backend: Any, job: dict[str, Any], deadline: float,
                        poll_s: float = 1.0) -> None:
    """Wait through ``backend`` until the retraining ``job`` (a :func:`read_retrain_log` record)
    has ended.

    Args:
        deadline: ``time.monotonic()`` value after which waiting is an error.

    Raises:
        SelectorError: still running at the deadline, or ended without a complete model.
    """
    from mummi_ml.metric.model_dir import is_complete

    while True:
        info = backend.state(job["job_id"])
        if info.state.is_terminal:
            break
        if time.monotonic() > deadline:
            raise SelectorError(f"retraining {job['name']} still {info.state.value} after the "
                                "time allowed")
        time.sleep(poll_s)
    if not is_complete(job["out"]):
        raise SelectorError(f"retraining {job['name']} ended {info.state.value} without a "
                            f"complete model in {job['out']}")
