"""``mummi-ml relax JOB_DIR``: the MD stand-in command of the default job template."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mummi_ml.backends import JobEmitter, JobsConfig, make_backend
from mummi_ml.cli import main
from mummi_ml.patch import PatchBatch, read_patches, write_patches

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[1]


def membrane_patch(pid: int = 17) -> PatchBatch:
    rng = np.random.default_rng(pid)
    x = (1.0 + 0.2 * rng.standard_normal((1, 37, 37, 14))).astype(np.float32)
    return PatchBatch.from_arrays(
        x, np.array([[1, 1]]), ids=np.array([pid], np.uint64), time_us=3.0
    )


@pytest.fixture
def job_dir(tmp_path) -> Path:
    d = tmp_path / "17"
    d.mkdir()
    write_patches(d / "patch.h5", membrane_patch())
    return d


def test_relax_writes_an_evolved_result_with_the_same_ids(job_dir):
    assert main(["relax", str(job_dir), "--duration-us", "0.2"]) == 0
    before, after = read_patches(job_dir / "patch.h5"), read_patches(job_dir / "result.h5")
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_array_equal(after.y, before.y)
    assert after.time_us[0] == pytest.approx(3.2)
    assert after.x.shape == before.x.shape and np.all(np.isfinite(after.x))
    assert not np.allclose(after.x, before.x)  # it evolved
    # lipids are conserved: each species' total stays
    np.testing.assert_allclose(after.x.sum(axis=(1, 2)), before.x.sum(axis=(1, 2)), rtol=1e-4)
    with h5py.File(job_dir / "result.h5") as f:
        assert f.attrs["created_by"] == "mummi-ml relax"
    assert not list(job_dir.glob("*.tmp"))


def test_relax_is_reproducible_for_a_patch(job_dir):
    main(["relax", str(job_dir), "--duration-us", "0.1", "--output", "a.h5"])
    main(["relax", str(job_dir), "--duration-us", "0.1", "--output", "b.h5"])
    np.testing.assert_array_equal(
        read_patches(job_dir / "a.h5").x, read_patches(job_dir / "b.h5").x
    )


def test_relax_duration_comes_from_the_config(job_dir):
    assert main(["relax", str(job_dir), "--set", "jobs.duration_us=0.3"]) == 0
    assert read_patches(job_dir / "result.h5").time_us[0] == pytest.approx(3.3)


def test_relax_of_a_missing_patch_exits_2_with_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["relax", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert "patch.h5: patch file not found" in err and len(err.splitlines()) == 1


def test_relax_of_a_corrupt_patch_exits_2_with_one_line_error(tmp_path, capsys):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "patch.h5").write_bytes(b"not hdf5 at all")
    assert main(["relax", str(d)]) == 2
    err = capsys.readouterr().err.strip()
    assert "patch.h5" in err and len(err.splitlines()) == 1
    assert not (d / "result.h5").exists()


def test_relax_as_a_subprocess_exits_nonzero_for_a_missing_dir(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mummi_ml", "relax", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 2 and "job directory not found" in proc.stderr


def test_the_default_job_command_relaxes_the_emitted_patch(tmp_path):
    cfg = JobsConfig(duration_us=0.1, poll_interval_s=0.1)  # default command: relax
    em = JobEmitter(make_backend(cfg, tmp_path), cfg, tmp_path)
    em.recover()
    em.emit(membrane_patch(5), novelty=1.0, model_version="v")
    em.wait(90)
    assert [d["state"] for d in em.poll()] == ["completed"]
    result = read_patches(tmp_path / "jobs" / "5" / "result.h5")
    assert result.ids.tolist() == [5] and result.time_us[0] == pytest.approx(3.1)
