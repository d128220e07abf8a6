"""``mummi-ml select --once`` on several ranks under real ``mpiexec`` ends collectively: when the
emitted MD jobs are still running at ``wait_timeout_s``, every rank leaves the wait in the same
iteration, checkpoints and exits 0 (no rank left behind in an ``Allreduce``, no ``PMI_Abort``),
and status.json reports the jobs still active. STOP in the state directory ends a serving
selector the same way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, mpiexec_path

from mummi_ml.patch import PatchBatch, write_patches
from mummi_ml.selector import latest_checkpoint, read_status

REPEATS = 3
"""Runs per rank count: the race this guards against showed in about one run of two."""


def _spool(d: Path, n_files: int = 2, per_file: int = 20) -> None:
    rng = np.random.default_rng(3)
    d.mkdir()
    for i in range(n_files):
        x = rng.random((per_file, 37, 37, 14), dtype=np.float32)
        ids = np.arange(per_file * i, per_file * (i + 1), dtype=np.uint64)
        write_patches(d / f"p{i}.h5", PatchBatch.from_arrays(x, np.zeros((per_file, 2), np.int32),
                                                             ids=ids))


def _config(tmp: Path, wait_timeout_s: float, md_seconds: float) -> Path:
    """Two slots; each MD job sleeps ``md_seconds``."""
    body = f"import time; time.sleep({md_seconds})"
    cfg = tmp / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "selector": {"state_dir": str(tmp / "state"), "spool_dir": str(tmp / "spool"),
                     "embedding": "mean_concentrations", "poll_interval_s": 0.02,
                     "wait_timeout_s": wait_timeout_s, "files_per_poll": 1,
                     "status_interval_s": 0.2},
        "jobs": {"slots": 2, "command": ["{python}", "-c", body], "poll_interval_s": 0.01},
    }))
    return cfg


def _kill_md_jobs(state_dir: Path) -> None:
    """Kill the MD stand-ins the test started: each local runner leads its own process group
    (pid in its launched.json), the MD process is in it."""
    for launched in state_dir.rglob("launched.json"):
        try:
            os.killpg(int(json.loads(launched.read_text())["pid"]), signal.SIGKILL)
        except (ProcessLookupError, PermissionError, ValueError, KeyError):
            pass


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_once_with_jobs_running_at_the_deadline_ends_on_every_rank(run_mpi, tmp_path, ranks):
    for rep in range(REPEATS):
        tmp = tmp_path / f"run{rep}"
        tmp.mkdir()
        _spool(tmp / "spool")
        cfg = _config(tmp, wait_timeout_s=0.3, md_seconds=60)
        try:
            proc = run_mpi(ranks, ["-m", "mummi_ml", "select", "--once", "--config", str(cfg)],
                           timeout=120, check=False)
        finally:
            _kill_md_jobs(tmp / "state")
        assert proc.returncode == 0, f"run {rep}: rc {proc.returncode}\n{proc.stderr[-3000:]}"
        assert "jobs still active after" in proc.stderr
        status = read_status(tmp / "state")
        assert status["state"] == "stopped" and status["n_ranks"] == ranks
        assert status["jobs_active"] == 2  # pending or running, as they were at the stop
        _, manifest = latest_checkpoint(tmp / "state")
        assert manifest["n_ranks"] == ranks


@pytest.mark.mpi
def test_stop_file_ends_a_serving_selector_at_once(tmp_path):
    """A selector without --once (serving until stopped) sees STATE/STOP, checkpoints and exits
    0 on every rank within a few poll intervals."""
    exe = mpiexec_path()
    if exe is None:
        pytest.skip("mpiexec not found")
    _spool(tmp_path / "spool")
    cfg = _config(tmp_path, wait_timeout_s=1, md_seconds=60)
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([exe, "-n", "2", sys.executable, "-m", "mummi_ml", "select",
                             "--config", str(cfg)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    state = tmp_path / "state"
    try:
        deadline = time.monotonic() + 90
        while not (state / "status.json").exists() or read_status(state)["selected"] < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.2)
        (state / "STOP").touch()
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_md_jobs(state)
    assert proc.returncode == 0, err[-3000:]
    assert took < 15
    status = read_status(state)
    assert status["state"] == "stopped" and status["jobs_active"] == 2
    assert json.loads((latest_checkpoint(state)[0] / "manifest.json").read_text())["n_ranks"] == 2
