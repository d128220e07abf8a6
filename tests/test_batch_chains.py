"""The batch chains of ``jobs/`` on the real single-node Slurm and a real Flux instance.

A chain is a sequence of batch jobs ("links"): each link queues its successor, serves until it is
signalled before its limit, checkpoints and exits 0; the successor restores and goes on. These
tests run two-link chains with short limits and signal the first link themselves (``scancel -s
TERM``; ``flux job kill``), then check that the second link restored and finished, that the
user's submission options reached the second link, that ``STATE_DIR/STOP`` ended the chain at
once, and that the result equals an uninterrupted run (the selector's picks: the single-process
reference over the same arrivals; training: the weights of one uninterrupted ``train_model``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO

from mummi_ml.patch import PatchBatch, mean_concentrations, write_patches
from mummi_ml.selector import (
    latest_checkpoint,
    load_rank_state,
    load_selected,
    read_status,
    reference_select,
)

SLOTS = 2
PER_FILE = 10
MUMMI = str(Path(sys.executable).parent / "mummi-ml")
#: an MD stand-in that runs until the test writes GO into its job directory (at most 300 s)
GATED_MD = ("import os, time\nt = time.time()\n"
            "while not os.path.exists('{job_dir}/GO') and time.time() - t < 300: time.sleep(0.1)")


# ---- shared helpers ------------------------------------------------------------------------------

def _batches(seed: int, n_files: int, start: int) -> list[PatchBatch]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_files):
        x = rng.random((PER_FILE, 37, 37, 14), dtype=np.float32)
        ids = np.arange(start + PER_FILE * i, start + PER_FILE * (i + 1), dtype=np.uint64)
        out.append(PatchBatch.from_arrays(x, np.zeros((PER_FILE, 2), np.int32), ids=ids))
    return out


def _write_spool(spool: Path, batches: list[PatchBatch], prefix: str) -> None:
    spool.mkdir(exist_ok=True)
    for i, b in enumerate(batches):
        write_patches(spool / f"{prefix}{i}.h5", b)


def _selector_config(tmp: Path) -> Path:
    """Spool in, local MD stand-ins gated by GO files, every file claimed in one poll (so what
    a link picks does not depend on timing)."""
    cfg = tmp / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "selector": {"state_dir": str(tmp / "state"), "spool_dir": str(tmp / "spool"),
                     "embedding": "mean_concentrations", "poll_interval_s": 0.05,
                     "files_per_poll": 100, "status_interval_s": 0.2,
                     "checkpoint_interval_s": 3600},
        "jobs": {"slots": SLOTS, "command": ["{python}", "-c", GATED_MD],
                 "poll_interval_s": 0.1},
    }))
    return cfg


def _reference_picks(first: list[PatchBatch], second: list[PatchBatch]) -> list[int]:
    """SLOTS picks from the first files, then SLOTS more after the second files arrived."""
    z = mean_concentrations(np.concatenate([b.x for b in first + second]))
    ids = np.concatenate([b.ids for b in first + second])
    n1 = sum(len(b.ids) for b in first)
    p1, _ = reference_select(z[:n1], ids[:n1], SLOTS)
    rest = np.setdiff1d(np.arange(len(ids)), p1)
    p2, _ = reference_select(z[rest], ids[rest], SLOTS, selected_z=z[p1])
    return ids[p1].tolist() + ids[rest][p2].tolist()


def _release_md(state: Path) -> None:
    for d in (state / "jobs").glob("*"):
        if d.is_dir():
            (d / "GO").touch()


def _kill_md(state: Path) -> None:
    """Kill the MD stand-ins still running (each local runner leads its process group)."""
    for launched in state.rglob("launched.json"):
        try:
            os.killpg(int(json.loads(launched.read_text())["pid"]), signal.SIGKILL)
        except (ProcessLookupError, PermissionError, ValueError, KeyError):
            pass


def _wait(cond, timeout: float, what: str, check=None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if check is not None:
            check()
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def _status(state: Path) -> dict:
    try:
        return read_status(state)
    except Exception:  # noqa: BLE001 - not written yet, or being replaced
        return {}


def _accounting(state: Path) -> tuple[list[int], set[int]]:
    """(selected ids in pick order, pooled ids) of the newest checkpoint."""
    ckpt, man = latest_checkpoint(state)
    pooled: set[int] = set()
    for r in range(man["n_ranks"]):
        pooled |= set(load_rank_state(ckpt, man, r, man["n_ranks"]).pool["ids"].tolist())
    sel, _ = load_selected(ckpt)
    return sel["ids"].tolist(), pooled


# ---- Slurm ---------------------------------------------------------------------------------------

def _slurm_up() -> None:
    if shutil.which("sbatch") is None:
        pytest.skip("Slurm is not installed (bash .ci/setup-slurm.sh sets up a local one)")
    p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if p.returncode != 0 or not p.stdout.strip():
        pytest.skip(f"Slurm is not up: {p.stderr.strip()}")


def _job(job_id: str) -> dict[str, str]:
    """``scontrol show job -o`` as a dict (the fields without spaces); {} once Slurm forgot it."""
    p = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                       text=True, timeout=30)
    if p.returncode != 0:
        return {}
    return dict(f.split("=", 1) for f in p.stdout.split() if "=" in f)


def _successor_of(job_id: str) -> str | None:
    p = subprocess.run(["squeue", "-h", "-o", "%i %E"], capture_output=True, text=True,
                       timeout=30)
    for line in p.stdout.splitlines():
        jid, _, dep = line.partition(" ")
        if f"afterany:{job_id}" in dep:
            return jid
    return None


def _ended(job_id: str) -> bool:
    return _job(job_id).get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                              "NODE_FAIL", "OUT_OF_MEMORY")


class _SlurmJobs:
    """Every job of a test's chain is cancelled at its end (also on failure)."""

    def __init__(self, name: str):
        self.name = name

    def cancel_all(self) -> None:
        subprocess.run(["scancel", "--name", self.name], capture_output=True, timeout=30)


@pytest.fixture
def slurm_chain(tmp_path):
    _slurm_up()
    jobs = _SlurmJobs(f"h3chain-{os.getpid()}-{tmp_path.name}"[:60])
    yield jobs
    jobs.cancel_all()


def _sbatch(script: str, opts: str, env: dict, args: tuple[str, ...] = (),
            cwd: Path = REPO) -> str:
    p = subprocess.run(["sbatch", "--parsable", *opts.split(), script, *args],
                       capture_output=True, text=True, timeout=60, env=env, cwd=cwd)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().split(";")[0]


def _chain_env(tmp: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def test_slurm_selector_chain_signalled_restores_carries_options_and_stops(tmp_path, slurm_chain):
    t0 = time.monotonic()
    first, second = _batches(1, 3, 0), _batches(2, 2, 1000)
    _write_spool(tmp_path / "spool", first, "a")
    cfg = _selector_config(tmp_path)
    state = tmp_path / "state"
    # the options every link must get: two tasks, a 2-minute limit and a name (the successor
    # reads them with scontrol), a late signal and an own output file (SBATCH_OPTS: a running
    # job cannot see them)
    seen = f"--ntasks=2 --time=2 --job-name={slurm_chain.name}"
    unseen = f"--signal=TERM@5 --output={tmp_path}/link-%j.out"
    env = _chain_env(tmp_path, CONFIG=str(cfg), STATE_DIR=str(state), MUMMI=MUMMI,
                     SBATCH_OPTS=unseen, MAX_RESTARTS="5")
    link1 = _sbatch("jobs/select_slurm.sbatch", f"{seen} {unseen}", env)
    out1 = tmp_path / f"link-{link1}.out"

    def alive1():
        if _ended(link1):
            pytest.fail(f"link 1 ended early: {out1.read_text() if out1.exists() else ''}")

    try:
        _wait(lambda: _status(state).get("selected") == SLOTS, 120, "link 1's picks", alive1)
        assert _status(state)["n_ranks"] == 2  # srun --mpi=pmi2: the two ranks see each other
        link2 = _successor_of(link1)
        assert link2 is not None
        subprocess.run(["scontrol", "hold", link2], check=True, timeout=30)
        subprocess.run(["scancel", "-s", "TERM", link1], check=True, timeout=30)
        _wait(lambda: _ended(link1), 60, "link 1 to end")
        assert _job(link1)["ExitCode"] == "0:0", out1.read_text()
        _write_spool(tmp_path / "spool", second, "b")  # arrives while no link runs
        _release_md(state)
        job2 = _job(link2)
        assert job2["NumTasks"] == "2" and job2["TimeLimit"] == "00:02:00"
        assert job2["JobName"] == slurm_chain.name
        # a queued link runs with the task count it has when it starts (no stale SLURM_NTASKS)
        subprocess.run(["scontrol", "update", f"JobId={link2}", "NumTasks=1"], check=True,
                       timeout=30)
        subprocess.run(["scontrol", "release", link2], check=True, timeout=30)
        n_all = PER_FILE * (len(first) + len(second))
        _wait(lambda: _status(state).get("ingested") == n_all
              and _status(state).get("selected") == 2 * SLOTS, 120, "link 2's picks")
        assert _status(state)["n_ranks"] == 1  # restored on another number of ranks
        link3 = _successor_of(link2)
        assert link3 is not None
        (state / "STOP").touch()
        t_stop = time.monotonic()
        _wait(lambda: _ended(link2), 60, "link 2 to stop")
        took = time.monotonic() - t_stop
        out2 = (tmp_path / f"link-{link2}.out").read_text()  # --output came from SBATCH_OPTS
        assert _job(link2)["ExitCode"] == "0:0", out2
        assert "STOP exists: checkpointing and stopping" in out2  # not Slurm's signal
        _wait(lambda: _ended(link3), 30, "link 3 to be cancelled")
        assert _job(link3)["JobState"] == "CANCELLED"
    finally:
        _kill_md(state)
    assert took < 20
    picks, pooled = _accounting(state)
    assert picks == _reference_picks(first, second)
    assert len(pooled) + len(picks) == n_all and not pooled & set(picks)
    status = read_status(state)  # link 2's jobs wait for GO: reported active at the stop
    assert status["state"] == "stopped" and status["jobs_active"] == SLOTS
    print(f"slurm selector chain: {time.monotonic() - t0:.1f} s, STOP -> end {took:.1f} s")


def test_slurm_selector_that_fails_at_once_ends_the_chain_at_the_first_link(tmp_path,
                                                                           slurm_chain):
    """A selector that cannot start (here: a missing config) fails its link visibly and cancels
    the successor instead of burning MAX_RESTARTS links; the script also works when sbatch reads
    it from standard input (no script path)."""
    env = _chain_env(tmp_path, CONFIG=str(tmp_path / "missing.yaml"),
                     STATE_DIR=str(tmp_path / "state"), MUMMI=MUMMI, MAX_RESTARTS="20",
                     SBATCH_OPTS=f"--job-name={slurm_chain.name}")
    with open(REPO / "jobs" / "select_slurm.sbatch") as script:
        # --signal: the header's TERM@180 exceeds a 1-minute limit, so Slurm would signal the
        # selector as it starts, and a slow start (a loaded machine) would read as SIGTERM
        p = subprocess.run(["sbatch", "--parsable", "--ntasks=1", "--time=5", "--signal=TERM@10",
                            f"--job-name={slurm_chain.name}", f"--output={tmp_path}/link-%j.out"],
                           stdin=script, capture_output=True, text=True, timeout=60, env=env,
                           cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    link1 = p.stdout.strip().split(";")[0]
    _wait(lambda: _ended(link1), 60, "link 1 to end")
    out = (tmp_path / f"link-{link1}.out").read_text()
    assert _job(link1)["ExitCode"] == "2:0", out
    assert "successor queued" in out and "cancelling successor" in out
    link2 = out.split("successor queued: job ")[1].split()[0]
    _wait(lambda: _ended(link2), 30, "link 2 to be cancelled")
    assert _job(link2)["JobState"] == "CANCELLED"
    assert _successor_of(link2) is None


def test_slurm_link_that_starts_after_stop_ends_at_once(tmp_path, slurm_chain):
    state = tmp_path / "state"
    state.mkdir()
    (state / "STOP").touch()
    env = _chain_env(tmp_path, CONFIG=str(_selector_config(tmp_path)), STATE_DIR=str(state),
                     MUMMI=MUMMI)
    link = _sbatch("jobs/select_slurm.sbatch",
                   f"--ntasks=1 --time=1 --job-name={slurm_chain.name} "
                   f"--output={tmp_path}/link-%j.out", env)
    _wait(lambda: _ended(link), 60, "the link to end")
    out = (tmp_path / f"link-{link}.out").read_text()
    assert _job(link)["ExitCode"] == "0:0", out
    assert "the chain ends here" in out and "successor queued" not in out
    assert _successor_of(link) is None and not (state / "checkpoints").exists()


# ---- training chains -----------------------------------------------------------------------------

TRAIN = {"epochs": 8, "batch_size": 16, "num_threads": 1, "device": "cpu", "val_max_patches": 32,
         "val_metric_patches": 16, "seed": 3}


@pytest.fixture(scope="module")
def train_data(tmp_path_factory) -> Path:
    """200 random patches with labels of every class (as tests/test_metric_train.py)."""
    path = tmp_path_factory.mktemp("train-data") / "patches.h5"
    rng = np.random.default_rng(0)
    n = 200
    x = np.minimum(rng.gamma(2.0, 0.5, size=(n, 37, 37, 14)), 3.0).astype(np.float32)
    n_ras = rng.integers(0, 3, n)
    n_raf = np.minimum(n_ras, rng.integers(0, 2, n))
    y = np.stack([n_ras, n_raf], 1).astype(np.int32)
    write_patches(path, PatchBatch.from_arrays(x, y, ids=np.arange(n), replica=np.arange(n) % 4))
    return path


def _train_config(tmp: Path) -> Path:
    cfg = tmp / "train.yaml"
    cfg.write_text(yaml.safe_dump({"train": TRAIN}))
    return cfg


def _assert_same_weights_as_uninterrupted(out: Path, data: Path, tmp: Path) -> None:
    import torch

    from mummi_ml.metric import LossConfig, ModelConfig, TrainConfig, train_model

    ref = train_model(ModelConfig(), LossConfig(), TrainConfig(**TRAIN), [data], tmp / "ref",
                      progress=False)
    wa = torch.load(ref / "weights.pt", weights_only=True)
    wb = torch.load(out / "weights.pt", weights_only=True)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6)


def test_slurm_training_chain_signalled_resumes_to_the_same_weights(tmp_path, slurm_chain,
                                                                    train_data):
    t0 = time.monotonic()
    out = tmp_path / "run"
    opts = (f"--nodes=1 --ntasks=1 --cpus-per-task=1 --gpus-per-node=0 --time=2 --signal=USR1@5 "
            f"--job-name={slurm_chain.name} --output={tmp_path}/train-%j.out")
    env = _chain_env(tmp_path, SBATCH_OPTS=opts, PYTHON=sys.executable)
    link1 = _sbatch("jobs/train_slurm.sbatch", opts, env,
                    (str(_train_config(tmp_path)), str(out), str(train_data)))
    out1 = tmp_path / f"train-{link1}.out"
    _wait(lambda: (out / "checkpoint.pt").exists(), 120, "the first epoch of link 1",
          lambda: _ended(link1) and pytest.fail(out1.read_text()))
    link2 = _successor_of(link1)
    assert link2 is not None
    subprocess.run(["scancel", "-s", "USR1", link1], check=True, timeout=30)
    _wait(lambda: _ended(link1), 60, "link 1 to end")
    text1 = out1.read_text()
    assert _job(link1)["ExitCode"] == "0:0", text1
    assert "stopped" in text1 and "1 thread(s) per rank" in text1  # -c 1, not nproc
    assert not (out / "metric.json").exists()
    job2 = _job(link2)
    assert job2["NumTasks"] == "1" and job2["CPUs/Task"] == "1" and job2["TimeLimit"] == "00:02:00"
    _wait(lambda: _ended(link2), 120, "link 2 to finish")
    text2 = (tmp_path / f"train-{link2}.out").read_text()
    assert _job(link2)["ExitCode"] == "0:0", text2
    assert (out / "metric.json").is_file()
    link3 = _successor_of(link2) or text2.split("successor queued: job ")[1].split()[0]
    _wait(lambda: _ended(link3), 30, "link 3 to be cancelled")
    assert _job(link3)["JobState"] == "CANCELLED"
    _assert_same_weights_as_uninterrupted(out, train_data, tmp_path)
    print(f"slurm training chain: {time.monotonic() - t0:.1f} s")


# ---- Flux ----------------------------------------------------------------------------------------

def _flux(inst, *args: str, uri: str | None = None, timeout: float = 60) -> str:
    env = inst.env()
    if uri:
        env["FLUX_URI"] = uri
    p = subprocess.run([str(inst.bin), *args], capture_output=True, text=True, timeout=timeout,
                       env=env)
    assert p.returncode == 0, f"flux {' '.join(args)}: {p.stderr}"
    return p.stdout.strip()


def _flux_state(inst, job: str) -> tuple[str, str]:
    """(state, result) of a job of the test's instance, e.g. ("INACTIVE", "COMPLETED")."""
    out = _flux(inst, "jobs", "-no", "{state} {result}", job).split()
    return out[0], (out[1] if len(out) > 1 else "")


def _flux_successor(inst, job: str) -> str | None:
    """The job that waits for ``job`` to end (afterany), if one is queued."""
    dec = _flux(inst, "job", "id", "--to=dec", job)
    for line in _flux(inst, "jobs", "-no", "{id} {dependencies}").splitlines():
        jid, _, deps = line.partition(" ")
        if dec in deps or job in deps:
            return jid
    return None


def _flux_batch(inst, opts: list[str], env: dict, cwd: Path, args: tuple[str, ...] = (),
                script: str = "jobs/select_flux.sh") -> str:
    p = subprocess.run([str(inst.bin), "batch", *opts, str(REPO / script), *args],
                       capture_output=True, text=True, timeout=60, env=env, cwd=cwd)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def _flux_ended(inst, job: str) -> bool:
    return _flux_state(inst, job)[0] == "INACTIVE"


def _flux_env(inst, **extra: str) -> dict:
    env = inst.env(_chain_env(Path(".")))
    env.update(extra)
    return env


def test_flux_selector_chain_signalled_restores_carries_options_and_stops(tmp_path,
                                                                          flux_instance):
    t0 = time.monotonic()
    fx = flux_instance
    first, second = _batches(1, 3, 0), _batches(2, 2, 1000)
    _write_spool(tmp_path / "spool", first, "a")
    cfg = _selector_config(tmp_path)
    state = tmp_path / "state"
    env = _flux_env(fx, CONFIG=str(cfg), STATE_DIR=str(state), MUMMI=MUMMI, STOP_BEFORE="30",
                    MAX_RESTARTS="5")
    name = f"h3chain-{tmp_path.name}"[:40]
    opts = ["-N1", "-n2", "-t", "2m", f"--job-name={name}", "--urgency=15",
            "--setattr=user.campaign=h3", f"--output={tmp_path}/link-{{{{id}}}}.out"]
    link1 = _flux_batch(fx, opts, env, tmp_path)

    def out(job):
        f = tmp_path / f"link-{job}.out"
        return f.read_text() if f.exists() else ""

    def alive1():
        if _flux_ended(fx, link1):
            pytest.fail(f"link 1 ended early: {out(link1)}")

    try:
        _wait(lambda: _status(state).get("selected") == SLOTS, 120, "link 1's picks", alive1)
        link2 = _flux_successor(fx, link1)
        assert link2 is not None
        assert _flux(fx, "jobs", "-no", "{urgency}", link2) == "15"
        _flux(fx, "job", "urgency", link2, "hold")
        # signal link 1's selector (a job of the link's own instance), as the link's timer would
        inner = _flux(fx, "uri", "--local", link1)
        selector = _flux(fx, "jobs", "-no", "{id}", "--name=mummi-selector", uri=inner)
        _flux(fx, "job", "kill", "--signal=SIGTERM", selector, uri=inner)
        _wait(lambda: _flux_ended(fx, link1), 60, "link 1 to end")
        assert _flux_state(fx, link1)[1] == "COMPLETED", out(link1)
        _write_spool(tmp_path / "spool", second, "b")  # arrives while no link runs
        _release_md(state)
        # the successor is this link's jobspec: same resources, limit, name, output, attributes
        spec1 = json.loads(_flux(fx, "job", "info", link1, "jobspec"))
        spec2 = json.loads(_flux(fx, "job", "info", link2, "jobspec"))
        assert spec2["resources"] == spec1["resources"]
        assert spec2["attributes"]["system"]["duration"] == 120
        assert spec2["attributes"]["system"]["job"]["name"] == name
        assert spec2["attributes"]["user"] == {"campaign": "h3"}
        assert spec2["attributes"]["system"]["shell"]["options"]["output"] == \
            spec1["attributes"]["system"]["shell"]["options"]["output"]
        _flux(fx, "job", "urgency", link2, "15")
        n_all = PER_FILE * (len(first) + len(second))
        _wait(lambda: _status(state).get("ingested") == n_all
              and _status(state).get("selected") == 2 * SLOTS, 120, "link 2's picks")
        link3 = _flux_successor(fx, link2)
        assert link3 is not None
        (state / "STOP").touch()
        t_stop = time.monotonic()
        _wait(lambda: _flux_ended(fx, link2), 60, "link 2 to stop")
        took = time.monotonic() - t_stop
        assert _flux_state(fx, link2)[1] == "COMPLETED", out(link2)
        assert "STOP exists: checkpointing and stopping" in out(link2)
        _wait(lambda: _flux_ended(fx, link3), 30, "link 3 to be cancelled")
        assert _flux_state(fx, link3)[1] == "CANCELED"
    finally:
        _kill_md(state)
    assert took < 20
    assert "1 core(s) left to MD jobs" in out(link1)
    picks, pooled = _accounting(state)
    assert picks == _reference_picks(first, second)
    assert len(pooled) + len(picks) == n_all and not pooled & set(picks)
    status = read_status(state)
    assert status["state"] == "stopped" and status["jobs_active"] == SLOTS
    print(f"flux selector chain: {time.monotonic() - t0:.1f} s, STOP -> end {took:.1f} s")


def test_flux_link_stops_its_selector_before_the_instance_expires(tmp_path, flux_instance):
    """The link's own timer (`flux job timeleft` - STOP_BEFORE) sends the selector SIGTERM: it
    checkpoints and the link exits 0 before its time limit."""
    fx = flux_instance
    _write_spool(tmp_path / "spool", _batches(1, 1, 0), "a")
    state = tmp_path / "state"
    env = _flux_env(fx, CONFIG=str(_selector_config(tmp_path)), STATE_DIR=str(state),
                    MUMMI=MUMMI, STOP_BEFORE="25", MAX_RESTARTS="0")
    link = _flux_batch(fx, ["-n1", "-t", "45s", f"--output={tmp_path}/link.out"], env, tmp_path)
    try:
        _wait(lambda: _flux_ended(fx, link), 90, "the link to end")
    finally:
        _kill_md(state)
    out = (tmp_path / "link.out").read_text()
    assert _flux_state(fx, link)[1] == "COMPLETED", out
    assert "25 s left: stopping the selector" in out and "no successor" in out
    assert "0 core(s) left to MD jobs" in out
    assert read_status(state)["state"] == "stopped" and latest_checkpoint(state) is not None


def test_flux_selector_that_fails_at_once_ends_the_chain_at_the_first_link(tmp_path,
                                                                          flux_instance):
    fx = flux_instance
    env = _flux_env(fx, CONFIG=str(tmp_path / "missing.yaml"), STATE_DIR=str(tmp_path / "st"),
                    MUMMI=MUMMI, MAX_RESTARTS="20", STOP_BEFORE="10")
    with open(REPO / "jobs" / "select_flux.sh") as script:  # `flux batch < script` works too
        p = subprocess.run([str(fx.bin), "batch", "-n1", "-t", "1m",
                            f"--output={tmp_path}/link.out"], stdin=script, capture_output=True,
                           text=True, timeout=60, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    link = p.stdout.strip()
    _wait(lambda: _flux_ended(fx, link), 60, "link 1 to end")
    out = (tmp_path / "link.out").read_text()
    assert _flux_state(fx, link)[1] == "FAILED", out
    assert "successor queued" in out and "cancelling successor" in out
    link2 = out.split("successor queued: job ")[1].split()[0]
    _wait(lambda: _flux_ended(fx, link2), 30, "link 2 to be cancelled")
    assert _flux_state(fx, link2)[1] == "CANCELED"


def test_flux_link_that_starts_after_stop_ends_at_once(tmp_path, flux_instance):
    fx = flux_instance
    state = tmp_path / "state"
    state.mkdir()
    (state / "STOP").touch()
    env = _flux_env(fx, CONFIG=str(_selector_config(tmp_path)), STATE_DIR=str(state),
                    MUMMI=MUMMI)
    link = _flux_batch(fx, ["-n1", "-t", "1m", f"--output={tmp_path}/link.out"], env, tmp_path)
    _wait(lambda: _flux_ended(fx, link), 60, "the link to end")
    out = (tmp_path / "link.out").read_text()
    assert _flux_state(fx, link)[1] == "COMPLETED", out
    assert "the chain ends here" in out and "successor queued" not in out
    assert _flux_successor(fx, link) is None


def test_flux_training_chain_signalled_resumes_to_the_same_weights(tmp_path, flux_instance,
                                                                   train_data):
    t0 = time.monotonic()
    fx = flux_instance
    out = tmp_path / "run"
    env = _flux_env(fx, PYTHON=sys.executable, SIGNAL_BEFORE="10s")
    link1 = _flux_batch(fx, ["-N1", "-n1", "-t", "2m", f"--output={tmp_path}/train-{{{{id}}}}.out"],
                        env, REPO, (str(_train_config(tmp_path)), str(out), str(train_data)),
                        script="jobs/train_flux.sh")

    def text(job):
        f = tmp_path / f"train-{job}.out"
        return f.read_text() if f.exists() else ""

    _wait(lambda: (out / "checkpoint.pt").exists(), 120, "the first epoch of link 1",
          lambda: _flux_ended(fx, link1) and pytest.fail(text(link1)))
    link2 = _flux_successor(fx, link1)
    assert link2 is not None
    _flux(fx, "job", "kill", "--signal=SIGUSR1", link1)  # the instance forwards it to training
    _wait(lambda: _flux_ended(fx, link1), 60, "link 1 to end")
    assert _flux_state(fx, link1)[1] == "COMPLETED", text(link1)
    assert "stopped" in text(link1) and "1 thread(s) per rank" in text(link1)
    assert not (out / "metric.json").exists()
    _wait(lambda: _flux_ended(fx, link2), 120, "link 2 to finish")
    assert _flux_state(fx, link2)[1] == "COMPLETED", text(link2)
    assert (out / "metric.json").is_file()
    link3 = text(link2).split("successor queued: job ")[1].split()[0]
    _wait(lambda: _flux_ended(fx, link3), 30, "link 3 to be cancelled")
    assert _flux_state(fx, link3)[1] == "CANCELED"
    _assert_same_weights_as_uninterrupted(out, train_data, tmp_path)
    print(f"flux training chain: {time.monotonic() - t0:.1f} s")


# ---- launchers -----------------------------------------------------------------------------------

def _once_config(tmp: Path) -> Path:
    _write_spool(tmp / "spool", _batches(4, 2, 0), "a")
    cfg = tmp / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "selector": {"state_dir": str(tmp / "state"), "spool_dir": str(tmp / "spool"),
                     "embedding": "mean_concentrations", "poll_interval_s": 0.05},
        "jobs": {"slots": SLOTS, "command": ["{python}", "-c", "pass"], "poll_interval_s": 0.1},
    }))
    return cfg


def test_launch_select_srun_wires_mpi_for_mpich_without_flags(tmp_path, slurm_chain):
    """launch/select_srun.sh in a 2-task allocation on a cluster with MpiDefault=none: the two
    ranks form one MPI world (SLURM_MPI_TYPE=pmi2 chosen for PyPI's MPICH)."""
    cfg = _once_config(tmp_path)
    env = _chain_env(tmp_path, MUMMI=MUMMI, PYTHON=sys.executable)
    env.pop("SLURM_MPI_TYPE", None)
    p = subprocess.run(["sbatch", "--wait", "--parsable", "-n2", "-t1",
                        f"--job-name={slurm_chain.name}", f"--output={tmp_path}/out.txt",
                        "--wrap", f"launch/select_srun.sh --config {cfg} --once"],
                       capture_output=True, text=True, timeout=180, env=env, cwd=REPO)
    out = (tmp_path / "out.txt").read_text() if (tmp_path / "out.txt").exists() else ""
    assert p.returncode == 0, p.stderr + out
    status = read_status(tmp_path / "state")
    assert status["n_ranks"] == 2 and status["selected"] == SLOTS
    assert status["jobs"]["completed"] == SLOTS


def test_launch_select_flux_runs_one_rank_by_default(tmp_path, flux_instance):
    cfg = _once_config(tmp_path)
    env = _flux_env(flux_instance, MUMMI=MUMMI)
    p = subprocess.run(["launch/select_flux.sh", "--config", str(cfg), "--once"],
                       capture_output=True, text=True, timeout=180, env=env, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    status = read_status(tmp_path / "state")
    assert status["n_ranks"] == 1 and status["selected"] == SLOTS
    assert status["jobs"]["completed"] == SLOTS


def test_slurm_training_link_whose_successor_is_rejected_fails_visibly(tmp_path, slurm_chain,
                                                                       train_data):
    out = tmp_path / "run"
    opts = (f"--nodes=1 --ntasks=1 --cpus-per-task=1 --gpus-per-node=0 --time=2 "
            f"--signal=USR1@5 --job-name={slurm_chain.name} --output={tmp_path}/train-%j.out")
    env = _chain_env(tmp_path, SBATCH_OPTS="--partition=no-such-partition",
                     PYTHON=sys.executable)
    link = _sbatch("jobs/train_slurm.sbatch", opts, env,
                   (str(_train_config(tmp_path)), str(out), str(train_data)))
    _wait(lambda: (out / "checkpoint.pt").exists() or _ended(link), 120, "the first epoch")
    subprocess.run(["scancel", "-s", "USR1", link], check=True, timeout=30)
    _wait(lambda: _ended(link), 60, "the link to end")
    text = (tmp_path / f"train-{link}.out").read_text()
    assert "rejected the successor" in text
    assert _job(link)["ExitCode"] == "1:0", text
    assert (out / "checkpoint.pt").exists() and not (out / "metric.json").exists()
