"""The ``flux`` backend against a real Flux instance (the ``flux_instance`` fixture: ``flux
start``, flux-core from ``bash .ci/build-flux.sh``): the user's options in the jobspec, time
limits, Flux's own reasons, unsatisfiable requests failed once, signals, no descriptor leak,
``wait_event``, readable names, and the selector end to end with ``jobs.backend=flux``.

Config validation and the name mapping need no Flux and always run."""

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
from pydantic import ValidationError

from mummi_ml.backends import BackendError, JobEmitter, JobsConfig, JobState, make_backend
from mummi_ml.backends.flux import flux_job_name, mummi_job_name
from mummi_ml.config import load_config
from mummi_ml.errors import ConfigError
from mummi_ml.patch import PatchBatch, write_patches

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def unique(name: str) -> str:
    return f"f{time.time_ns() % 10**12}-{name}"


def wait_terminal(backend, job_id: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while True:
        info = backend.state(job_id)
        if info.state.is_terminal:
            return info
        assert time.monotonic() < deadline, f"job {job_id} still {info.state} after {timeout_s} s"
        time.sleep(0.1)


@pytest.fixture
def flux_backend(flux_instance, tmp_path):
    """Make flux backends with ``jobs.flux`` options; closed at the end of the test."""
    made = []

    def _make(**flux_opts):
        b = make_backend(JobsConfig(backend="flux", flux=flux_opts), tmp_path / "state")
        made.append(b)
        return b

    yield _make
    for b in made:
        b.close()


@pytest.fixture
def job_dir(tmp_path) -> Path:
    d = tmp_path / "job"
    d.mkdir()
    return d


def make_patch(pid: int) -> PatchBatch:
    x = np.random.default_rng(pid).random((1, 37, 37, 14), dtype=np.float32)
    return PatchBatch.from_arrays(x, np.array([[1, 0]]), ids=np.array([pid], np.uint64))


def flux_emitter(state: Path, **flux_opts) -> JobEmitter:
    cfg = JobsConfig(backend="flux", command=["{python}", "-c", "pass"], poll_interval_s=0.1,
                     max_retries=2, name_prefix=f"e{abs(hash(str(state))) % 10**8}-",
                     flux=flux_opts)  # fmt: skip
    em = JobEmitter(make_backend(cfg, state), cfg, state)
    em.recover()
    return em


# ---- config (no Flux needed) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, problem",
    [
        ("time_limit", "ten minutes", "expected a Flux duration"),
        ("time_limit", "0s", "longer than 0 s"),
        ("urgency", "32", "less than or equal to 31"),
        ("queue", "''", "must not be empty"),
        ("nodes", "0", "greater than or equal to 1"),
        ("exclusive", "true", "exclusive: true needs nodes"),
        ("extra_attributes", "{'attributes.x': 1}", "expected 'system.<name>' or 'user.<name>'"),
        ("extra_attributes", "{'system.duration': 60}", "use jobs.flux.time_limit"),
        ("extra_attributes", "{'system.job.name': x}", "use jobs.name_prefix"),
    ],
)
def test_bad_flux_options_are_one_line_config_errors(key, value, problem):
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"jobs.flux.{key}={value}"])
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_more_nodes_than_tasks_is_rejected():
    with pytest.raises(ValidationError, match=r"nodes \(2\) must not exceed num_tasks \(1\)"):
        JobsConfig(flux={"nodes": 2})


@pytest.mark.parametrize("limit", ["90", "30s", "1.5m", "2h", "1d", "500ms"])
def test_flux_durations_are_accepted(limit):
    assert JobsConfig(flux={"time_limit": limit}).flux.time_limit == limit


def test_flux_names_lead_with_patch_and_attempt_and_map_back_exactly():
    assert flux_job_name("mummi-8001a2-42-1", "mummi-") == "42-1@mummi-8001a2"
    assert mummi_job_name("42-1@mummi-8001a2") == "mummi-8001a2-42-1"
    for other in ("t123-find", "mummi-xyz-1-1", "other-8001a2-1-1"):  # not emitter names
        assert flux_job_name(other, "mummi-") == other and mummi_job_name(other) == other


# ---- the jobspec carries the user's options ------------------------------------------------------


def test_options_reach_the_jobspec(flux_instance, flux_backend, job_dir):
    b = flux_backend(nodes=1, exclusive=True, time_limit="5m", bank="ras", urgency=20,
                     extra_attributes={"user.project": "membranes",
                                       "system.shell.options.cpu-affinity": "off"})  # fmt: skip
    job_id = b.submit(unique("opts"), [PY, "-c", "pass"], job_dir)
    assert wait_terminal(b, job_id).state == JobState.COMPLETED
    spec = json.loads(flux_instance.run("job", "info", job_id, "jobspec").stdout)
    system = spec["attributes"]["system"]
    assert system["duration"] == 300.0 and system["bank"] == "ras"
    assert system["shell"]["options"]["cpu-affinity"] == "off"
    assert spec["attributes"]["user"] == {"project": "membranes"}
    node = spec["resources"][0]
    assert node["type"] == "node" and node["count"] == 1 and node["exclusive"] is True
    urgency = flux_instance.run("jobs", "-n", "-o", "{urgency}", job_id).stdout.strip()
    assert urgency == "20"


def test_an_unknown_queue_is_failed_once_with_fluxs_reason(flux_instance, tmp_path):
    em = flux_emitter(tmp_path, queue="nosuchq")
    em.emit(make_patch(1), 0.0, "v")
    em.wait(30)
    (done,) = em.poll()
    assert done["state"] == "failed" and done["attempts"] == 1
    assert "'nosuchq' is not a valid queue" in done["reason"]


def test_job_names_are_readable_in_flux_jobs(flux_instance, tmp_path):
    em = flux_emitter(tmp_path)
    name = em.emit(make_patch(42), 0.0, "v")
    em.wait(30)
    job_id = em.records[42].job_id
    shown = flux_instance.run("jobs", "-a", "-n").stdout  # the default format: 10 characters
    assert any(line.split()[0] == job_id and "42-1@" in line for line in shown.splitlines())
    full = flux_instance.run("jobs", "-n", "-o", "{name}", job_id).stdout.strip()
    assert full == f"42-1@{em.cfg.name_prefix}{em.tag}"
    assert em.backend.find(name).job_id == job_id


# ---- how jobs end: Flux's reasons ----------------------------------------------------------------


def test_a_job_past_its_time_limit_is_failed_with_fluxs_reason(flux_backend, job_dir):
    b = flux_backend(time_limit="1s")
    t0 = time.monotonic()
    job_id = b.submit(unique("long"), [PY, "-c", "import time; time.sleep(60)"], job_dir)
    info = wait_terminal(b, job_id, timeout_s=30)
    assert time.monotonic() - t0 < 20
    assert info.state == JobState.FAILED and info.reason.startswith("Timeout")
    assert not info.permanent


def test_an_unsatisfiable_request_is_failed_once_with_fluxs_reason(flux_instance, tmp_path):
    em = flux_emitter(tmp_path, gpus_per_task=1)  # the test instance has no GPU
    em.emit(make_patch(7), 0.0, "v")
    em.wait(30)
    (done,) = em.poll()
    assert done["state"] == "failed" and done["attempts"] == 1  # not retried max_retries times
    assert "unsatisfiable request" in done["reason"] and "GPU" in done["reason"]
    intents = [json.loads(line) for line in (tmp_path / "jobs.journal").read_text().splitlines()]
    assert [e["attempt"] for e in intents if e["event"] == "intent"] == [1]


def test_a_job_killed_by_a_signal_has_the_negative_signal_as_exit_code(flux_backend, job_dir):
    b = flux_backend()
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    info = wait_terminal(b, b.submit(unique("sig"), [PY, "-c", code], job_dir))
    assert info.state == JobState.FAILED and info.exit_code == -signal.SIGKILL
    assert info.reason == "Killed"


def test_a_cancelled_job_carries_fluxs_reason(flux_backend, job_dir):
    b = flux_backend()
    job_id = b.submit(unique("cancel"), [PY, "-c", "import time; time.sleep(60)"], job_dir)
    b.cancel(job_id)
    info = wait_terminal(b, job_id, timeout_s=30)
    assert info.state == JobState.CANCELLED and info.reason.startswith("Canceled")


# ---- the handle: descriptors, wait_event, close --------------------------------------------------


def test_many_state_queries_leak_no_descriptors(flux_backend, job_dir):
    b = flux_backend()
    done = b.submit(unique("fd"), [PY, "-c", "pass"], job_dir)
    b.wait_event(done, "clean")
    kept = []  # errors kept alive, as a log record keeps them

    def round_trip() -> None:
        assert b.states([done, "f2222222"])["f2222222"].state == JobState.UNKNOWN
        assert b.find(unique("never")) is None
        for bad in (lambda: b.wait_event("f2222222", timeout_s=5), lambda: b.cancel("f3333333"),
                    lambda: b.states(["not-a-flux-id"])):  # fmt: skip
            try:
                bad()
            except BackendError as exc:
                kept.append(exc)

    for _ in range(5):
        round_trip()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(200):
        round_trip()
    assert len(kept) == 615
    assert len(os.listdir("/proc/self/fd")) <= before


def test_wait_event_on_an_unknown_id_is_a_backend_error(flux_backend):
    with pytest.raises(BackendError, match="no such job"):
        flux_backend().wait_event("f2222222", timeout_s=5)


def test_wait_event_times_out_as_a_backend_error(flux_backend, job_dir):
    b = flux_backend()
    job_id = b.submit(unique("slow"), [PY, "-c", "import time; time.sleep(60)"], job_dir)
    with pytest.raises(BackendError, match="no 'clean' event in 0.5 s"):
        b.wait_event(job_id, "clean", timeout_s=0.5)
    b.cancel(job_id)
    b.wait_event(job_id, "clean", timeout_s=30)
    assert b.state(job_id).state == JobState.CANCELLED


def test_close_is_quiet_and_idempotent(flux_backend):
    b = flux_backend()
    b.close()
    b.close()
    with pytest.raises(BackendError, match="closed"):
        b.find(unique("after-close"))


# ---- the selector end to end on Flux -------------------------------------------------------------


def _selector_config(tmp_path: Path, n: int = 60) -> Path:
    spool = tmp_path / "spool"
    spool.mkdir()
    rng = np.random.default_rng(5)
    x = rng.random((n, 37, 37, 14), dtype=np.float32)
    y = np.stack([rng.integers(0, 3, n), np.zeros(n, int)], 1).astype(np.int32)
    write_patches(spool / "a.h5", PatchBatch.from_arrays(x, y, ids=np.arange(n, dtype=np.uint64)))
    run_md = ["{python}", "-c", "import sys; open(sys.argv[1] + '/ran', 'a').write('x')",
              "{job_dir}"]  # fmt: skip
    cfg = {
        "selector": {"state_dir": str(tmp_path / "state"), "spool_dir": str(spool),
                     "embedding": "mean_concentrations", "poll_interval_s": 0.05,
                     "status_interval_s": 0.2, "wait_timeout_s": 60},
        "jobs": {"backend": "flux", "slots": 2, "command": run_md, "poll_interval_s": 0.1},
    }  # fmt: skip
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_select_once_on_flux_finishes_with_completed_jobs(flux_instance, tmp_path):
    cfg = _selector_config(tmp_path)
    t0 = time.monotonic()
    proc = subprocess.run([PY, "-m", "mummi_ml", "select", "--config", str(cfg), "--once"],
                          capture_output=True, text=True, timeout=120, env=flux_instance.env())
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not available" not in proc.stderr and "Traceback" not in proc.stderr
    status = json.loads((tmp_path / "state" / "status.json").read_text())
    assert status["state"] == "stopped" and status["jobs"]["completed"] == 2
    jobs = [p for p in (tmp_path / "state" / "jobs").iterdir() if p.name.isdigit()]
    assert len(jobs) == 2 and all((j / "ran").read_text() == "x" for j in jobs)
    assert took < 45, f"select --once took {took:.0f} s"


def test_the_selector_service_on_flux_stops_on_sigterm_with_status_0(flux_instance, tmp_path):
    cfg = _selector_config(tmp_path)
    t0 = time.time()
    proc = subprocess.Popen([PY, "-m", "mummi_ml", "select", "--config", str(cfg)],
                            stderr=subprocess.PIPE, text=True, env=flux_instance.env())
    try:
        status_file = tmp_path / "state" / "status.json"
        deadline = time.monotonic() + 60
        while True:  # running, with jobs completed
            try:
                status = json.loads(status_file.read_text())
                if status["time"] > t0 and status["jobs"]["completed"] >= 2:
                    break
            except (OSError, ValueError, KeyError):
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "no completed jobs"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert json.loads(status_file.read_text())["state"] == "stopped"
