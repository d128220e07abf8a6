"""Physical validation of patches, shared by the writer, the selector and training: finite
concentrations in [0, MAX_CONCENTRATION] (within a small tolerance below 0), consistent protein
counts with a physical maximum, unique ids."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from mummi_ml.cli import main
from mummi_ml.config import load_config
from mummi_ml.errors import PatchValidationError
from mummi_ml.metric import LossConfig, ModelConfig, TrainConfig, train_model
from mummi_ml.patch import (
    MAX_CONCENTRATION,
    MAX_PROTEINS_PER_PATCH,
    PIXEL_SIZE_NM,
    PatchBatch,
    check_patches,
    validate_batch,
    validate_files,
    write_patches,
)
from mummi_ml.patch.constants import (
    MIN_AREA_PER_LIPID_NM2,
    NEGATIVE_CONCENTRATION_TOLERANCE,
)
from mummi_ml.selector import SelectorService, read_status


def good(n: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 37, 37, 14), dtype=np.float32)
    y = np.array([[0, 0], [1, 0], [1, 1], [3, 2]] * (n // 4 + 1), np.int32)[:n]
    return x, y


def test_bound_is_a_pixel_over_the_densest_packing_of_lipid_chains():
    assert MAX_CONCENTRATION == pytest.approx(PIXEL_SIZE_NM**2 / MIN_AREA_PER_LIPID_NM2)
    assert 3.5 < MAX_CONCENTRATION < 3.8  # ~3.6 lipids per pixel; fluid membranes hold ~1
    assert MAX_PROTEINS_PER_PATCH == 154


def test_every_concentration_minus_half_is_refused():
    """The patch the selector used to pick 15th with novelty 88."""
    x, y = good()
    x[1] = -0.5
    with pytest.raises(PatchValidationError, match=r"patch 1: negative concentration") as info:
        validate_batch(x, y)
    assert info.value.index == 1


def test_tiny_negative_round_off_is_accepted():
    x, y = good()
    x[0, 3, 3, 3] = -0.5 * NEGATIVE_CONCENTRATION_TOLERANCE
    validate_batch(x, y)


def test_concentration_above_the_bound_is_refused():
    x, y = good()
    x[2, 0, 0, 5] = MAX_CONCENTRATION * 1.01
    with pytest.raises(PatchValidationError, match=r"patch 2: concentration above the physical"):
        validate_batch(x, y)


def test_bytes_of_a_text_file_read_as_float32_are_refused():
    text = (b"root:x:0:0:root:/root:/bin/bash\n" * 3000)[: 37 * 37 * 14 * 4]
    x = np.frombuffer(text, dtype=np.float32).reshape(1, 37, 37, 14).copy()
    assert np.isfinite(x).all()  # finite: the old validation passed it
    with pytest.raises(PatchValidationError, match="above the physical bound"):
        validate_batch(x, np.zeros((1, 2), np.int32))


def test_more_proteins_than_fit_are_refused():
    x, y = good()
    y[3] = (MAX_PROTEINS_PER_PATCH + 1, 0)
    with pytest.raises(PatchValidationError, match="more proteins than fit"):
        validate_batch(x, y)
    y[3] = (MAX_PROTEINS_PER_PATCH, MAX_PROTEINS_PER_PATCH)
    validate_batch(x, y)


def test_check_patches_gives_one_problem_code_per_patch():
    x, y = good(6)
    x[0, 0, 0, 0] = np.nan
    x[1] = -0.5
    x[2, 1, 1, 1] = 100.0
    y[3] = (-1, 0)
    y[4] = (0, 1)
    check = check_patches(x, y)
    assert check.problem.tolist() == [1, 2, 3, 4, 5, 0]
    assert [r.split(":")[0] for r in check.reasons] == [f"patch {i}" for i in range(5)]


def test_writer_refuses_unphysical_patches(tmp_path):
    x, y = good()
    x[0] = -0.5
    with pytest.raises(PatchValidationError):
        write_patches(tmp_path / "p.h5", PatchBatch.from_arrays(x, y))
    assert not (tmp_path / "p.h5").exists()


def test_continuum_patches_are_physical(tmp_path):
    """What the synthetic continuum model writes passes (through the validating writer)."""
    out = tmp_path / "sim.h5"
    assert main(["simulate", "--patches", "60", "--out", str(out),
                 "--set", "continuum.domain_pixels=64", "--set", "continuum.n_ras=4"]) == 0
    assert validate_files(out) >= 60


# ---- training refuses what it must not learn from -----------------------------------------------


def _file(path: Path, n: int = 64, id0: int = 0) -> Path:
    x, y = good(n, seed=id0)
    write_patches(path, PatchBatch.from_arrays(x, y, ids=np.arange(id0, id0 + n)))
    return path


def _spoil(path: Path, dataset: str, index, value) -> Path:
    """Change a written file behind the writer's back (as a foreign producer could)."""
    with h5py.File(path, "r+") as f:
        f[dataset][index] = value
    return path


def _train(tmp_path: Path, *files: Path) -> int:
    return main(["train", "--data", *map(str, files), "--out", str(tmp_path / "run"),
                 "--no-progress", "--set", "train.epochs=1", "--set", "train.batch_size=16"])


def _last_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.splitlines()[-1]


def test_train_refuses_duplicate_ids_across_files(tmp_path, capsys):
    a, b = _file(tmp_path / "a.h5"), _file(tmp_path / "b.h5", id0=32)
    assert _train(tmp_path, a, b) == 2
    line = _last_line(capsys)
    assert "patch id 32 appears more than once" in line and "a.h5" in line and "b.h5" in line
    assert not (tmp_path / "run" / "weights.pt").exists()


def test_train_refuses_negative_counts(tmp_path, capsys):
    path = _spoil(_file(tmp_path / "a.h5"), "y", 7, [-1, 0])
    assert _train(tmp_path, path) == 2
    assert "a.h5: patch 7: negative protein count" in _last_line(capsys)


def test_train_refuses_nan_patches(tmp_path, capsys):
    path = _spoil(_file(tmp_path / "a.h5"), "x", (40, 1, 2, 3), np.nan)
    assert _train(tmp_path, path) == 2
    line = _last_line(capsys)
    assert "a.h5: patch 40: x has 1 non-finite" in line and "(id 40)" in line


def test_train_model_refuses_unphysical_patches_before_any_work(tmp_path):
    path = _spoil(_file(tmp_path / "a.h5"), "x", 3, -0.5)
    with pytest.raises(PatchValidationError, match="patch 3: negative concentration"):
        train_model(ModelConfig(latent_dim=3), LossConfig(), TrainConfig(epochs=1, batch_size=16),
                    [path], tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# ---- the selector quarantines them with a reason code -------------------------------------------


def test_selector_quarantines_unphysical_patches_with_code_5_and_never_picks_them(tmp_path):
    spool = tmp_path / "spool"
    path = _file(spool / "a.h5", n=12)
    _spoil(path, "x", 5, -0.5)
    _spoil(path, "x", (6, 0, 0, 0), 1e30)
    over = {"selector.state_dir": str(tmp_path / "state"), "selector.spool_dir": str(spool),
            "selector.embedding": "mean_concentrations", "jobs.slots": 12,
            "jobs.command": '["{python}", "-c", "pass"]', "jobs.poll_interval_s": 0.05}
    cfg = load_config(None, [f"{k}={v}" for k, v in over.items()])
    assert SelectorService(cfg).run(once=True) == 0
    lines = (tmp_path / "state" / "quarantine-rank-00000.jsonl").read_text().splitlines()
    log = {e["id"]: e for e in map(json.loads, lines)}
    assert set(log) == {5, 6} and {e["code"] for e in log.values()} == {5}
    assert "negative concentration" in log[5]["reason"]
    assert "above the physical bound" in log[6]["reason"]
    status = read_status(tmp_path / "state")
    assert status["selected"] == 10 and status["quarantined"] == 2  # every valid patch, only
    jobs = {int(p.name) for p in (tmp_path / "state" / "jobs").iterdir() if p.name.isdigit()}
    assert jobs == set(range(12)) - {5, 6}
