"""Out of space: ``simulate``, ``couple``, ``relax`` and ``select`` on a really full file system
(a small tmpfs, filled up to a few KB) end with exit status 2 and one error line, no segfault,
no HDF5 noise, no temporary file left and no final-named file that looks complete.

They used to print their error and then die of SIGSEGV (rc 139) while h5py closed a file whose
cached chunks could not be flushed. Each case runs as a real ``python -m mummi_ml`` process
(a crash would otherwise take the test runner with it). Mounting needs root: skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mummi_ml.patch import PatchBatch, PatchFile, write_patches

REPO = Path(__file__).resolve().parents[1]
FREE_KB = 16  # left free: enough to create files, not to write a patch (~77 KB)
QUICK_SIM = ["--set", "continuum.equilibration_us=0", "--set", "continuum.domain_pixels=64",
             "--set", "continuum.n_ras=2", "--no-progress"]


@pytest.fixture(scope="module")
def tmpfs(tmp_path_factory) -> Path:
    """A 4 MiB tmpfs of our own, unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (a really full file system)")
    d = tmp_path_factory.mktemp("full")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(d)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=False)


def fill(fs: Path, free_kb: int = FREE_KB, keep: tuple[Path, ...] = ()) -> None:
    """Empty ``fs`` but for ``keep``, then fill it until ``free_kb`` KB are left."""
    for p in fs.iterdir():
        if p not in keep:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    st = os.statvfs(fs)
    with open(fs / ".filler", "wb") as fh:
        fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - free_kb * 1024))


def patch_file(path: Path, n: int = 1) -> Path:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (n, 37, 37, 14)).astype(np.float32)
    return write_patches(path, PatchBatch.from_arrays(x, np.zeros((n, 2), np.int32),
                                                      ids=np.arange(n)))


def run_cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "mummi_ml", *argv], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env=env)


def assert_clean_failure(proc: subprocess.CompletedProcess, command: str) -> str:
    """Exit 2 with exactly one error line (log lines of the selector aside), naming the lack
    of space; no traceback, no h5py noise, no crash."""
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    for noise in ("Traceback", "Exception ignored", "Segmentation", "HDF5-DIAG"):
        assert noise not in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if not ln[:4].isdigit()]  # not log records
    assert len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith(f"mummi-ml {command}: error: ")
    assert "No space left on device" in errors[0]
    return errors[0]


def leftovers(root: Path) -> list[str]:
    """Temporary files under ``root`` (nothing may be left after a failure)."""
    return [str(p) for p in root.rglob("*") if p.is_file() and ".tmp" in p.name]


def test_simulate_on_a_full_disk(tmpfs, tmp_path):
    fill(tmpfs)
    proc = run_cli(["simulate", "--out", str(tmpfs / "s.h5"), "--patches", "4", *QUICK_SIM],
                   tmp_path)
    assert_clean_failure(proc, "simulate")
    assert not (tmpfs / "s.h5").exists()
    assert not leftovers(tmpfs)


def test_relax_on_a_full_disk(tmpfs, tmp_path):
    fill(tmpfs)
    job = tmpfs / "job"
    (tmpfs / ".filler").unlink()
    job.mkdir()
    patch_file(job / "patch.h5")
    fill(tmpfs, keep=(job,))
    proc = run_cli(["relax", str(job), "--duration-us", "0.01"], tmp_path)
    assert_clean_failure(proc, "relax")
    assert not (job / "result.h5").exists()
    assert sorted(job.iterdir()) == [job / "patch.h5"]
    assert not leftovers(tmpfs)


def test_couple_on_a_full_disk(tmpfs, tmp_path):
    fill(tmpfs)
    spool = tmpfs / "spool"
    proc = run_cli(["couple", "--spool", str(spool), "--patches", "4", *QUICK_SIM], tmp_path)
    assert_clean_failure(proc, "couple")
    assert not list(spool.glob("*.h5")) and not leftovers(tmpfs)


def test_select_with_its_state_on_a_full_disk(tmpfs, tmp_path):
    """The spool is elsewhere; the state directory (payloads, checkpoints) runs out of space:
    one line, no temporary file, and every payload segment that exists is complete."""
    fill(tmpfs, 64)
    spool = tmp_path / "spool"
    spool.mkdir()
    patch_file(spool / "p0.h5", n=3)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "selector": {"state_dir": str(tmpfs / "state"), "spool_dir": str(spool),
                     "embedding": "mean_concentrations", "poll_interval_s": 0.02,
                     "wait_timeout_s": 0.5, "status_interval_s": 0.2},
        "jobs": {"slots": 1, "command": ["{python}", "-c", "pass"], "poll_interval_s": 0.01}}))
    proc = run_cli(["select", "--once", "--config", str(cfg)], tmp_path)
    assert_clean_failure(proc, "select")
    assert not leftovers(tmpfs)
    for seg in (tmpfs / "state").rglob("seg-*.h5"):
        PatchFile(seg).close()  # a final name is a complete file
