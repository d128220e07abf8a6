"""Shared fixtures: running code under real ``mpiexec`` ranks, and small patch batches."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def mpiexec_path() -> str | None:
    """The ``mpiexec`` next to this Python (the mpich wheel's), else the one on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


@pytest.fixture
def run_mpi():
    """Run ``python ARGS...`` under ``mpiexec -n N`` and return the CompletedProcess.

    Usage: ``proc = run_mpi(3, ["-m", "mummi_ml.something", ...], timeout=120)``. Fails the test
    with both output streams if the exit status is not 0 (pass ``check=False`` to inspect it).
    """
    exe = mpiexec_path()
    if exe is None:
        pytest.skip("mpiexec not found (pip install mpich, or load the site MPI)")

    def _run(n: int, args: list[str], timeout: float = 300, check: bool = True, cwd=None, env=None):
        full_env = dict(os.environ)
        full_env.setdefault("OMP_NUM_THREADS", "1")
        full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
        if env:
            full_env.update(env)
        cmd = [exe, "-n", str(n), sys.executable, *args]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=full_env
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
                f"\n--- stderr\n{proc.stderr[-4000:]}"
            )
        return proc

    return _run


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator; tests never use the global numpy RNG."""
    return np.random.default_rng(12345)


# ---- Flux: a real single-node instance started by the tests -------------------------------------

FLUX_VERSION = "0.88.0"


def flux_prefix() -> Path | None:
    """Where flux-core is installed: ``$MUMMI_FLUX_PREFIX``, the prefix ``.ci/build-flux.sh``
    builds into (``/opt/mummi-flux-0.88.0``), or the ``flux`` on PATH; None when none is."""
    candidates = [os.environ.get("MUMMI_FLUX_PREFIX"), f"/opt/mummi-flux-{FLUX_VERSION}"]
    on_path = shutil.which("flux")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parents[1]))
    for c in candidates:
        if c and (Path(c) / "bin" / "flux").exists():
            return Path(c)
    return None


def flux_python_path(prefix: Path) -> Path:
    """The directory of the flux Python bindings under ``prefix`` (for this Python version)."""
    return prefix / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"


class FluxInstance:
    """A running ``flux start`` instance: its URI, prefix and the environment to reach it."""

    def __init__(self, prefix: Path, uri: str, proc: subprocess.Popen):
        self.prefix, self.uri, self.proc = prefix, uri, proc
        self.bin = prefix / "bin" / "flux"

    def env(self, base: dict | None = None) -> dict:
        """``base`` (default os.environ) with FLUX_URI, PATH and PYTHONPATH for this instance."""
        env = dict(os.environ if base is None else base)
        env["FLUX_URI"] = self.uri
        env["PATH"] = f"{self.prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        py = [str(REPO), str(flux_python_path(self.prefix)), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in py if p)
        return env

    def run(self, *args: str, timeout: float = 60, check: bool = True):
        """Run ``flux ARGS...`` against this instance; returns the CompletedProcess."""
        proc = subprocess.run([str(self.bin), *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env())
        if check and proc.returncode != 0:
            pytest.fail(f"flux {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc


def _start_flux(tmp: Path) -> FluxInstance:
    prefix = flux_prefix()
    if prefix is None:
        pytest.skip("flux-core is not installed (bash .ci/build-flux.sh builds it from "
                    "../shared/vendor into /opt/mummi-flux-0.88.0)")
    bindings = flux_python_path(prefix)
    if not (bindings / "flux").is_dir():
        pytest.skip(f"flux-core at {prefix} has no Python bindings for this Python ({bindings})")
    uri_file = tmp / "flux-uri"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(bindings), env.get("PYTHONPATH", "")])
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}" + \
        env.get("PATH", "")
    with open(tmp / "flux-start.log", "w") as log:
        # The initial program writes the instance's URI, then holds the instance open until the
        # session ends (_stop_flux) or this process is gone (a killed pytest leaves no instance
        # behind). Its own process group: the stop signals all of it.
        proc = subprocess.Popen(
            [str(prefix / "bin" / "flux"), "start", "sh", "-c",
             f'echo "$FLUX_URI" > {uri_file}.tmp && mv {uri_file}.tmp {uri_file} '
             f"&& while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while not uri_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop_flux_proc(proc)
            text = (tmp / "flux-start.log").read_text()[-2000:]
            pytest.fail(f"flux start did not come up (rc {proc.returncode}): {text}")
        time.sleep(0.05)
    return FluxInstance(prefix, uri_file.read_text().strip(), proc)


def _stop_flux_proc(proc: subprocess.Popen) -> None:
    """SIGTERM to the instance's process group (the broker cancels its jobs and exits), then
    SIGKILL if it is still there after 30 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)


def _stop_flux(inst: FluxInstance) -> None:
    _stop_flux_proc(inst.proc)


@pytest.fixture(scope="session")
def flux_instance(tmp_path_factory, monkeypatch_session_env):
    """A real single-node Flux instance for the whole session (skips without flux-core).

    The test process gets FLUX_URI, PATH and the bindings on ``sys.path``, so
    ``make_backend(JobsConfig(backend="flux"), ...)`` and subprocesses reach it."""
    inst = _start_flux(tmp_path_factory.mktemp("flux"))
    sys.path.insert(0, str(flux_python_path(inst.prefix)))
    monkeypatch_session_env(inst.env())
    yield inst
    _stop_flux(inst)


@pytest.fixture(scope="session")
def monkeypatch_session_env():
    """Set environment variables for the rest of the session; restored at its end."""
    saved = dict(os.environ)

    def _set(env: dict) -> None:
        os.environ.clear()
        os.environ.update(env)

    yield _set
    os.environ.clear()
    os.environ.update(saved)


def train_tiny_model(train, out: Path) -> Path:
    """A 3-D model trained for one epoch (batches of 16, CPU, one thread) on the patches of the
    PatchBatch ``train``, written to ``out/train.h5``; returns its directory ``out/model``."""
    from mummi_ml.metric import LossConfig, ModelConfig, TrainConfig, train_model
    from mummi_ml.patch import write_patches

    write_patches(out / "train.h5", train)
    cfg = TrainConfig(epochs=1, batch_size=16, num_threads=1, device="cpu", val_max_patches=16,
                      val_metric_patches=8)
    return train_model(ModelConfig(latent_dim=3), LossConfig(), cfg, [out / "train.h5"],
                       out / "model", progress=False)


def require_backend(request, name: str) -> None:
    """Skip the test unless job backend ``name`` can run jobs here; for ``flux`` first start the
    session's real instance (``flux_instance``). Used by every backend-parametrised fixture."""
    from mummi_ml.backends import backend_class

    if name == "flux":  # a real instance (flux start), or a skip with the reason
        request.getfixturevalue("flux_instance")
    reason = backend_class(name).unavailable_reason()
    if reason:
        pytest.skip(f"{name} backend unavailable: {reason}")
