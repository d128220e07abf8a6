"""Shared fixtures: running code under real ``mpiexec`` ranks, and small patch batches."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
