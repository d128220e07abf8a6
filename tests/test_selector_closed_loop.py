"""The closed loop in the running selector (issue 16): drift windows and one event in drift.jsonl,
the log, status.json and ``mummi-ml status``; the reservoir checkpointed and restored; training
snapshots on a schedule, an operator's request (``STATE/RETRAIN``) and a drift event, as
readable patch files of the reservoir and the selected ids; the retraining job submitted through
the local backend produces a complete model, on one rank or (``retrain.tasks: 2``) as one MPI
program of two ranks; the same drift record and reservoir on 1 and 2
ranks (real ``mpiexec``)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import require_backend, train_tiny_model

from mummi_ml.config import load_config
from mummi_ml.errors import ConfigError
from mummi_ml.metric.model_dir import is_complete
from mummi_ml.patch import PatchBatch, PatchFile, write_patches
from mummi_ml.selector import SelectorService
from mummi_ml.selector.drift import read_drift_log
from mummi_ml.selector.errors import SelectorError
from mummi_ml.selector.loop import wait_for_retraining
from mummi_ml.selector.reservoir import read_manifest

REPO = Path(__file__).resolve().parents[1]
TRAIN_SETS = ["train.finetune_epochs=1", "train.batch_size=16", "train.num_threads=1",
              "train.device=cpu", "train.val_max_patches=16", "train.val_metric_patches=8"]


def patches(start: int, n: int, scale: float = 1.0) -> PatchBatch:
    """Physical patches of all four classes; ``scale`` 5 moves them away from training
    (concentrations up to the cap of 3 per pixel: median nearest-reference distance ~2.6 x the
    training median with the fixture's model)."""
    rng = np.random.default_rng(start)
    x = np.minimum(scale * rng.gamma(2.0, 0.5, size=(n, 37, 37, 14)), 3.0).astype(np.float32)
    n_ras = rng.integers(0, 3, n)
    y = np.stack([n_ras, np.minimum(n_ras, rng.integers(0, 2, n))], 1).astype(np.int32)
    return PatchBatch.from_arrays(x, y, ids=np.arange(start, start + n, dtype=np.uint64))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return train_tiny_model(patches(0, 64), tmp_path_factory.mktemp("loop-model"))


def config(tmp_path: Path, model: Path, top: dict | None = None, **sel):
    """The test's selector config; ``sel``: ``selector.`` keys, ``top``: any other keys."""
    over = {"selector.state_dir": tmp_path / "state", "selector.spool_dir": tmp_path / "spool",
            "selector.embedding": "model", "selector.model_dir": model, "selector.device": "cpu",
            "selector.ood_guard": False, "selector.files_per_poll": 1, "model.latent_dim": 3,
            "jobs.slots": 2, "jobs.command": '["{python}", "-c", "pass"]',
            "jobs.poll_interval_s": 0.05, **{f"selector.{k}": v for k, v in sel.items()},
            **(top or {})}
    return load_config(None, [f"{k}={v}" for k, v in over.items()])


def spool(tmp_path: Path, *batches: PatchBatch) -> None:
    (tmp_path / "spool").mkdir(parents=True, exist_ok=True)
    for b in batches:
        write_patches(tmp_path / "spool" / f"b{int(b.ids[0]):06d}.h5", b)


def run_once(cfg) -> dict:
    svc = SelectorService(cfg)
    assert svc.run(once=True) == 0
    return json.loads((Path(cfg.selector.state_dir) / "status.json").read_text())


def snapshot_ids(snap: Path) -> tuple[np.ndarray, np.ndarray]:
    """(reservoir ids, selected ids) read back with the patch API."""
    with PatchFile(snap / "reservoir.h5") as r, PatchFile(snap / "selected.h5") as s:
        return r[np.arange(len(r))].ids, s[np.arange(len(s))].ids


def test_drift_event_is_logged_once_with_its_figures_and_shown_in_status(model, tmp_path,
                                                                         caplog):
    spool(tmp_path, patches(1000, 40), *(patches(2000 + 40 * i, 40, 5.0) for i in range(3)))
    cfg = config(tmp_path, model, **{"drift.window": 40})
    with caplog.at_level(logging.INFO, logger="mummi_ml.selector"):
        status = run_once(cfg)
    recs = read_drift_log(tmp_path / "state" / "drift.jsonl")
    assert [r.n for r in recs] == [40, 40, 40, 40]
    assert not recs[0].exceeded  # the training distribution
    assert [r.event for r in recs] == [False, True, False, False]  # once, while still drifting
    assert recs[2].exceeded and recs[1].far_fraction > 0.25
    assert caplog.text.count("DRIFT EVENT") == 1 and "far " in caplog.text
    assert status["drift"]["events"] == 1 and status["drift"]["last_window"]["window"] == 3
    out = subprocess.run([sys.executable, "-m", "mummi_ml", "status", str(tmp_path / "state")],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert "drift        1 events" in out.stdout and "window 3: far" in out.stdout


def test_drift_state_and_reservoir_survive_a_restart(model, tmp_path):
    spool(tmp_path, patches(1000, 30), patches(1030, 30))
    cfg = config(tmp_path, model, **{"drift.window": 50, "retrain.reservoir_per_class": 5})
    first = run_once(cfg)
    assert first["drift"]["window_arrivals"] == 0  # 60 arrivals closed window 0
    spool(tmp_path, patches(1060, 30))
    second = run_once(cfg)
    assert second["retrain"]["reservoir_seen"] == 90  # the first run's arrivals were restored
    assert second["retrain"]["reservoir"] == 20  # 5 per class
    windows = [r.window for r in read_drift_log(tmp_path / "state" / "drift.jsonl")]
    assert windows == list(range(len(windows))) and sum(
        r.n for r in read_drift_log(tmp_path / "state" / "drift.jsonl")) + \
        second["drift"]["window_arrivals"] == 90


def test_snapshots_on_schedule_and_operator_request_hold_reservoir_and_selected(model,
                                                                                 tmp_path):
    spool(tmp_path, patches(1000, 30), patches(1030, 30))
    cfg = config(tmp_path, model, **{"retrain.reservoir_per_class": 6, "retrain.every_picks": 2,
                                     "retrain.on_drift": False})
    run_once(cfg)  # 2 picks at the end: the schedule's snapshot at the final checkpoint
    snap0 = tmp_path / "state" / "snapshots" / "0000"
    man = read_manifest(snap0)
    assert man["reasons"] == ["picks"] and man["n_selected"] == 2
    res_ids, sel_ids = snapshot_ids(snap0)
    picks = [json.loads(x)["id"] for x in (tmp_path / "state" / "picks.jsonl").read_text()
             .splitlines()]
    assert sorted(sel_ids.tolist()) == sorted(picks)
    with h5py.File(tmp_path / "state" / "checkpoints" / "ckpt-00000000" / "loop.h5") as f:
        sampled = f["reservoir/ids"][:]
    assert set(res_ids.tolist()) == set(sampled.tolist()) - set(picks)
    classes = np.concatenate([patches(1000, 30).classes, patches(1030, 30).classes])
    assert len(sampled) <= 24 and man["seen"] == np.bincount(classes, minlength=4).tolist()

    (tmp_path / "state" / "RETRAIN").touch()
    spool(tmp_path, patches(1060, 10))
    run_once(config(tmp_path, model, **{"retrain.reservoir_per_class": 6,
                                        "retrain.on_drift": False}))
    assert not (tmp_path / "state" / "RETRAIN").exists()  # consumed
    man1 = read_manifest(tmp_path / "state" / "snapshots" / "0001")
    assert man1["reasons"] == ["request"] and sum(man1["seen"]) == 70


def test_drift_snapshot_waits_for_after_drift_arrivals_more_arrivals(model, tmp_path):
    # windows of 40: the event closes window 1 (arrival 80); the snapshot waits for 60 more
    spool(tmp_path, patches(1000, 40), *(patches(2000 + 40 * i, 40, 5.0) for i in range(3)))
    cfg = config(tmp_path, model, **{"drift.window": 40, "retrain.reservoir_per_class": 64,
                                     "retrain.after_drift_arrivals": 60})
    status = run_once(cfg)
    man = read_manifest(tmp_path / "state" / "snapshots" / "0000")
    assert man["reasons"] == ["drift"]
    assert sum(man["seen"]) == 160  # written at the first merge 60 arrivals after the event
    assert status["retrain"]["snapshots"] == 1


def test_drift_snapshot_still_pending_when_the_stream_ends_is_written_after_a_restart(
        model, tmp_path):
    spool(tmp_path, patches(1000, 40), patches(2000, 40, 5.0))
    cfg = config(tmp_path, model, **{"drift.window": 40, "retrain.reservoir_per_class": 64,
                                     "retrain.after_drift_arrivals": 60})
    assert run_once(cfg)["retrain"]["snapshots"] == 0  # the event; 0 of 60 arrivals since
    spool(tmp_path, patches(2040, 40, 5.0), patches(2080, 40, 5.0))
    assert run_once(cfg)["retrain"]["snapshots"] == 1  # the pending event was checkpointed
    assert sum(read_manifest(tmp_path / "state" / "snapshots" / "0000")["seen"]) == 160


def wait_complete(out: Path, job_dir: Path, timeout_s: float = 240) -> None:
    """Wait for the retraining's model directory ``out`` to be complete (its job's stderr on
    failure)."""
    deadline = time.monotonic() + timeout_s
    while not is_complete(out) and time.monotonic() < deadline:
        time.sleep(1)
    err = next(job_dir.glob("*.err"), None)
    assert is_complete(out), err.read_text()[-3000:] if err else "no job output"


def test_drift_event_snapshot_submits_a_retraining_that_completes(model, tmp_path):
    spool(tmp_path, patches(1000, 40), patches(2000, 40, 5.0))
    updates = tmp_path / "updates"
    cfg = config(tmp_path, model, **{"drift.window": 40, "retrain.submit": True,
                                     "retrain.reservoir_per_class": 16,
                                     "retrain.train_overrides": json.dumps(TRAIN_SETS),
                                     "model_updates_dir": updates})
    status = run_once(cfg)
    man = read_manifest(tmp_path / "state" / "snapshots" / "0000")
    assert man["reasons"] == ["drift"]
    [job] = status["retrain"]["jobs"]
    out = Path(job["out"])
    assert out.parent == updates
    wait_complete(out, tmp_path / "state" / "retrain" / "0000")
    meta = json.loads((out / "metric.json").read_text())
    parent = json.loads((model / "metric.json").read_text())
    assert meta["parent"]["version"] == parent["version"]
    assert meta["world_size"] == 1 and job["tasks"] == 1  # the local backend's one task


@pytest.mark.parametrize("bad", ["0", "-2", "two"])
def test_retrain_tasks_below_one_or_not_a_count_is_a_config_error(bad):
    with pytest.raises(ConfigError, match=r"selector\.retrain\.tasks"):
        load_config(None, [f"selector.retrain.tasks={bad}"])


@pytest.mark.parametrize("sets, why", [
    (["selector.retrain.tasks=3"], r"train\.batch_size \(128\) must be a multiple of its 3"),
    (["selector.retrain.tasks=2", 'selector.retrain.train_overrides=["train.batch_size=33"]'],
     r"train\.batch_size \(33\)"),
    (['selector.retrain.train_overrides=["train.epoch=2"]'],
     r"train_overrides: train\.epoch: Extra inputs"),
    (["jobs.backend=flux", "jobs.flux.num_tasks=3"], r"3 ranks .*null: jobs\.flux\.num_tasks"),
])
def test_a_retraining_that_could_not_run_is_a_config_error(sets, why):
    with pytest.raises(ConfigError, match=why):
        load_config(None, ["selector.retrain.submit=true", *sets])


def test_after_drift_arrivals_without_on_drift_is_a_config_error():
    with pytest.raises(ConfigError, match="after_drift_arrivals .* needs on_drift: true"):
        load_config(None, ["selector.retrain.on_drift=false",
                           "selector.retrain.after_drift_arrivals=10"])


def test_a_snapshot_too_small_for_the_ranks_is_not_submitted(model, tmp_path, caplog):
    spool(tmp_path, patches(1000, 2))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "RETRAIN").touch()
    cfg = config(tmp_path, model, **{"retrain.submit": True, "retrain.tasks": 2,
                                     "retrain.on_drift": False,
                                     "model_updates_dir": tmp_path / "updates"})
    with caplog.at_level(logging.ERROR, logger="mummi_ml.selector"):
        status = run_once(cfg)
    assert status["retrain"]["snapshots"] == 1 and status["retrain"]["jobs"] == []
    assert "too few for a retraining on 2 rank(s)" in caplog.text
    assert not (tmp_path / "state" / "retrain.jsonl").exists()


def _local_job(tmp_path: Path, code: str):
    """(local backend, retraining record) of a job that runs ``python -c CODE``, no model."""
    from mummi_ml.backends import JobsConfig, make_backend

    backend = make_backend(JobsConfig(), tmp_path / "state")
    (tmp_path / "job").mkdir()
    job_id = backend.submit("retrain-x-0000", [sys.executable, "-c", code], tmp_path / "job")
    return backend, {"name": "retrain-x-0000", "job_id": job_id, "out": str(tmp_path / "none")}


def test_waiting_for_a_retraining_that_left_no_model_is_an_error(tmp_path):
    backend, job = _local_job(tmp_path, "pass")
    with pytest.raises(SelectorError, match="ended completed without a complete model"):
        wait_for_retraining(backend, job, time.monotonic() + 60, poll_s=0.1)


def test_waiting_for_a_retraining_past_its_deadline_is_an_error(tmp_path):
    backend, job = _local_job(tmp_path, "import time; time.sleep(30)")
    with pytest.raises(SelectorError, match="still (pending|running) after the time allowed"):
        wait_for_retraining(backend, job, time.monotonic() + 0.5, poll_s=0.1)
    backend.cancel(job["job_id"])


@pytest.mark.mpi
def test_a_retraining_job_of_two_tasks_trains_on_two_ranks(model, tmp_path):
    spool(tmp_path, patches(1000, 40), patches(2000, 40, 5.0))
    cfg = config(tmp_path, model, **{"drift.window": 40, "retrain.submit": True,
                                     "retrain.reservoir_per_class": 16, "retrain.tasks": 2,
                                     "retrain.train_overrides": json.dumps(TRAIN_SETS),
                                     "model_updates_dir": tmp_path / "updates"})
    [job] = run_once(cfg)["retrain"]["jobs"]
    [logged] = [json.loads(x) for x in (tmp_path / "state" / "retrain.jsonl").read_text()
                .splitlines()]
    assert job["tasks"] == logged["tasks"] == 2
    job_dir = tmp_path / "state" / "retrain" / "0000"
    wait_complete(Path(job["out"]), job_dir)
    assert json.loads((Path(job["out"]) / "metric.json").read_text())["world_size"] == 2
    assert "mummi-ml train: 2 rank(s)" in next(job_dir.glob("*.err")).read_text()


@pytest.mark.mpi
@pytest.mark.parametrize("backend, sets", [
    ("flux", {"jobs.flux.num_tasks": 2}),  # retrain.tasks null: the backend's task count
    ("slurm", {"selector.retrain.tasks": 2}),  # Slurm's per-job count is 1: asked for
])
def test_a_retraining_through_a_scheduler_trains_on_the_backends_ranks(model, tmp_path, request,
                                                                        backend, sets):
    require_backend(request, backend)
    spool(tmp_path, patches(1000, 40), patches(2000, 40, 5.0))
    cfg = config(tmp_path, model, top={"jobs.backend": backend, "jobs.poll_interval_s": 0.2,
                                       **sets},
                 **{"drift.window": 40, "retrain.submit": True,
                    "retrain.reservoir_per_class": 16,
                    "retrain.train_overrides": json.dumps(TRAIN_SETS),
                    "model_updates_dir": tmp_path / "updates"})
    [job] = run_once(cfg)["retrain"]["jobs"]
    assert job["tasks"] == 2
    job_dir = tmp_path / "state" / "retrain" / "0000"
    wait_complete(Path(job["out"]), job_dir, timeout_s=180)
    assert json.loads((Path(job["out"]) / "metric.json").read_text())["world_size"] == 2


@pytest.mark.mpi
@pytest.mark.slow  # two mpiexec runs, each rank loading torch: ~40 s
def test_one_and_two_ranks_give_the_same_drift_record_and_reservoir(model, tmp_path, run_mpi):
    got = {}
    for n in (1, 2):
        d = tmp_path / f"n{n}"
        spool(d, *(patches(3000 + 20 * i, 20, 0.5 + 0.1 * i) for i in range(4)))
        sets = {"selector.state_dir": d / "state", "selector.spool_dir": d / "spool",
                "selector.embedding": "model", "selector.model_dir": model,
                "selector.device": "cpu", "selector.ood_guard": False,
                "selector.files_per_poll": 2, "selector.drift.window": 80,
                "selector.retrain.reservoir_per_class": 4, "jobs.slots": 1,
                "jobs.command": '["{python}", "-c", "pass"]', "jobs.poll_interval_s": 0.05}
        argv = ["-m", "mummi_ml", "select", "--once"]
        for k, v in sets.items():
            argv += ["--set", f"{k}={v}"]
        run_mpi(n, argv, timeout=240)
        [rec] = read_drift_log(d / "state" / "drift.jsonl")
        ckpt = sorted((d / "state" / "checkpoints").glob("ckpt-*"))[-1]
        with h5py.File(ckpt / "loop.h5") as f:
            got[n] = ({k: v for k, v in rec.__dict__.items() if k != "time"},
                      f["reservoir/ids"][:].tolist(), f["reservoir/seen"][:].tolist())
    assert got[1] == got[2]
