"""Crash safety of the selector service: kill -9 at random moments, restart (also on another
number of ranks), and check that every patch is accounted for exactly once, that the books
balance after every restart (ingested = accepted + quarantined, accepted = pooled + selected +
evicted, in status.json and the checkpoint) and that no job is submitted twice. The service
runs as a real subprocess with the real job emitter."""

from __future__ import annotations

import collections
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

from mummi_ml.patch import PatchBatch, write_patches
from mummi_ml.selector import latest_checkpoint, load_rank_state, load_selected

REPO = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path) -> Path:
    cfg = {
        "selector": {
            "state_dir": str(tmp_path / "state"), "spool_dir": str(tmp_path / "spool"),
            "embedding": "mean_concentrations", "capacity_per_rank": 150,
            "checkpoint_interval_s": 0.4, "poll_interval_s": 0.05, "status_interval_s": 0.3,
            "files_per_poll": 1,
        },
        "jobs": {"slots": 2, "command": ["{python}", "-c", "import time; time.sleep(0.3)"],
                 "poll_interval_s": 0.1},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _write_round(spool: Path, rng, r: int) -> set[int]:
    """Four files of 40 patches with fresh ids, one repeating ids, one truncated file."""
    ids: set[int] = set()
    for i in range(4):
        start = 1000 * r + 40 * i
        n = 40
        x = rng.random((n, 37, 37, 14), dtype=np.float32)
        y = np.stack([rng.integers(0, 2, n), np.zeros(n, int)], 1).astype(np.int32)
        ids_i = np.arange(start, start + n, dtype=np.uint64)
        write_patches(spool / f"r{r}-{i}.h5", PatchBatch.from_arrays(x, y, ids=ids_i))
        ids |= set(range(start, start + n))
    x = rng.random((5, 37, 37, 14), dtype=np.float32)
    write_patches(spool / f"r{r}-zdup.h5", PatchBatch.from_arrays(
        x, np.zeros((5, 2), np.int32), ids=np.arange(1000 * r, 1000 * r + 5, dtype=np.uint64)))
    (spool / f"r{r}-trunc.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    return ids


def _wait_running(state: Path, since: float, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            if json.loads((state / "status.json").read_text())["time"] > since:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError("the selector did not start")


def _check_balance(state: Path) -> None:
    """The books balance in the last status.json and in the newest checkpoint's manifest:
    ingested = accepted + quarantined, accepted = pooled + selected + evicted."""
    st = json.loads((state / "status.json").read_text())
    assert st["ingested"] == st["accepted"] + st["quarantined"], st
    assert st["accepted"] == st["pooled"] + st["selected"] + st["evicted"], st
    found = latest_checkpoint(state)
    if found is not None:
        man = found[1]
        c = man["counters"]
        assert c["ingested"] == c["accepted"] + c["quarantined"], man
        assert c["accepted"] == c["pooled"] + man["n_selected"] + c["evicted"], man


def _check_totals(state: Path, written: set[int], rounds: int) -> None:
    """After the final run every written patch was accepted once; the repeated ids (5 a round)
    are the only quarantined patches."""
    st = json.loads((state / "status.json").read_text())
    assert st["accepted"] == len(written)
    assert st["quarantined"] == 5 * rounds
    assert st["ingested"] == len(written) + 5 * rounds


def _check_accounting(tmp_path: Path, written: set[int]) -> None:
    state = tmp_path / "state"
    ckpt, man = latest_checkpoint(state)
    st = load_rank_state(ckpt, man, 0, 1)  # every rank's share, as one rank
    sel, _ = load_selected(ckpt)
    pooled, evicted = st.pool["ids"].tolist(), st.evicted_ids.tolist()
    selected = sel["ids"].tolist()
    every = pooled + evicted + selected
    assert len(every) == len(set(every)), "a patch is in two places"
    assert set(every) == written, "a patch is lost (or invented)"
    assert set(st.quarantined_ids.tolist()) <= written  # the repeated ids
    assert sel["emitted"].all()
    jobs = {int(p.name) for p in (state / "jobs").iterdir() if p.is_dir() and p.name.isdigit()}
    assert jobs == set(selected), "each selected patch has exactly one job directory"
    intents = collections.Counter()
    for line in (state / "jobs.journal").read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == "intent":
            intents[(ev["patch_id"], ev["attempt"])] += 1
    assert intents and max(intents.values()) == 1, "a job was submitted twice"
    assert {pid for pid, _ in intents} == set(selected)
    assert len(list((tmp_path / "spool").glob("*.h5"))) == 0  # all ingested
    assert len(list((tmp_path / "spool" / "quarantine").glob("*.h5"))) > 0


def _kill_rounds(tmp_path: Path, rng, rounds: int) -> set[int]:
    spool = tmp_path / "spool"
    spool.mkdir()
    cfg = _config(tmp_path)
    written: set[int] = set()
    for r in range(rounds):
        written |= _write_round(spool, rng, r)
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "mummi_ml", "select", "--config",
                                 str(cfg)], env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            _wait_running(tmp_path / "state", t0)
            _check_balance(tmp_path / "state")  # as restarted
            time.sleep(rng.uniform(0.05, 1.5))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        _check_balance(tmp_path / "state")  # as killed
    written |= _write_round(spool, rng, rounds)
    return written


def _final_once(run_mpi, tmp_path: Path, ranks: int) -> None:
    run_mpi(ranks, ["-m", "mummi_ml", "select", "--config", str(tmp_path / "cfg.yaml"),
                    "--once"], timeout=240)


@pytest.mark.mpi
def test_kill_9_then_restart_on_two_ranks_loses_and_repeats_nothing(run_mpi, tmp_path):
    rng = np.random.default_rng(2)
    written = _kill_rounds(tmp_path, rng, rounds=2)
    _final_once(run_mpi, tmp_path, 2)
    _check_accounting(tmp_path, written)
    _check_balance(tmp_path / "state")
    _check_totals(tmp_path / "state", written, rounds=3)


@pytest.mark.slow
@pytest.mark.mpi
def test_kill_9_many_rounds_then_restart_on_three_ranks(run_mpi, tmp_path):
    rng = np.random.default_rng(3)
    written = _kill_rounds(tmp_path, rng, rounds=6)
    _final_once(run_mpi, tmp_path, 3)
    _check_accounting(tmp_path, written)
    _check_balance(tmp_path / "state")
    _check_totals(tmp_path / "state", written, rounds=7)


def test_sigusr1_checkpoints_and_sigterm_stops_cleanly(tmp_path):
    rng = np.random.default_rng(4)
    (tmp_path / "spool").mkdir()
    _write_round(tmp_path / "spool", rng, 0)
    cfg = yaml.safe_load(_config(tmp_path).read_text())
    cfg["selector"]["checkpoint_interval_s"] = 3600
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "mummi_ml", "select", "--config",
                             str(tmp_path / "cfg.yaml")], env=_env(),
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_running(tmp_path / "state", t0)
        ckpts = tmp_path / "state" / "checkpoints"
        before = len(list(ckpts.glob("*/manifest.json"))) if ckpts.exists() else 0
        proc.send_signal(signal.SIGUSR1)
        end = time.time() + 30
        while time.time() < end and len(list(ckpts.glob("*/manifest.json"))) <= before:
            time.sleep(0.05)
        assert len(list(ckpts.glob("*/manifest.json"))) > before
        assert proc.poll() is None  # SIGUSR1 does not stop it
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert json.loads((tmp_path / "state" / "status.json").read_text())["state"] == "stopped"
