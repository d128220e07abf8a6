"""Sweeps: run planning, rank assignment, the selection rule, and a real 2-rank sweep."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mummi_ml.config import load_config
from mummi_ml.config_loader import with_overrides
from mummi_ml.errors import ConfigError
from mummi_ml.evaluate.config import SweepConfig
from mummi_ml.evaluate.sweep import (
    ABLATIONS,
    plan_runs,
    runs_of_rank,
    select_model,
)
from mummi_ml.patch import PatchBatch, write_patches


def test_grid_plans_every_combination_then_the_ablations():
    cfg = SweepConfig(parameters={"model.latent_dim": [5, 9, 16], "loss.lambda_rad": [0.05, 0.1]})
    runs = plan_runs(cfg)
    models = [r for r in runs if r.kind == "model"]
    assert len(models) == 6 and len(runs) == 6 + len(ABLATIONS)
    assert {(r.overrides["model.latent_dim"], r.overrides["loss.lambda_rad"]) for r in models} == {
        (d, lam) for d in (5, 9, 16) for lam in (0.05, 0.1)
    }
    assert len({r.name for r in runs}) == len(runs)


def test_random_mode_draws_a_reproducible_subset():
    cfg = SweepConfig(
        mode="random",
        n_samples=3,
        seed=4,
        ablations=False,
        parameters={"model.latent_dim": [4, 8, 12, 16], "loss.alpha_lab": [1, 8]},
    )
    a, b = plan_runs(cfg), plan_runs(cfg)
    assert len(a) == 3 and [r.name for r in a] == [r.name for r in b]


def test_ablations_zero_exactly_the_left_out_loss_weights():
    runs = {r.name: r for r in plan_runs(SweepConfig())}
    assert runs["ablation_L_rad"].overrides == {"loss.w_inv": 0.0, "loss.w_lab": 0.0}
    assert runs["ablation_L_inv+L_lab"].overrides == {"loss.w_rad": 0.0}
    base = load_config(None)
    cfg = with_overrides(base, runs["ablation_L_lab"].overrides)
    assert (cfg.loss.w_inv, cfg.loss.w_rad, cfg.loss.w_lab) == (0.0, 0.0, base.loss.w_lab)


def test_sweep_rejects_an_unknown_parameter():
    with pytest.raises(ConfigError, match="unknown sweep parameter"):
        load_config(None, ['evaluate.sweep.parameters={"train.lr": [1]}'])


def test_rank_r_takes_runs_r_r_plus_R():
    runs = plan_runs(SweepConfig(parameters={"model.latent_dim": [1, 2, 3, 4, 5]}))
    shares = [runs_of_rank(runs, r, 3) for r in range(3)]
    assert [len(s) for s in shares] == [4, 4, 3]
    assert sorted(r.name for s in shares for r in s) == sorted(r.name for r in runs)
    assert shares[1][1] is runs[4]


def _row(name, ov, ms, auc, dim, kind="model"):
    return dict(name=name, kind=kind, overlap_percent=ov, mare_star=ms, auc=auc, dim=dim)


def test_selection_prefers_the_balanced_model_and_ignores_ablations():
    rows = [
        _row("good_overlap_only", 0.01, 9.0, 0.30, 9),
        _row("balanced", 0.05, 2.0, 0.60, 9),
        _row("good_auc_only", 50.0, 8.0, 0.70, 9),
        _row("ablation_L_lab", 0.0, 0.1, 0.99, 9, kind="ablation"),
    ]
    best, scores = select_model(rows)
    assert rows[best]["name"] == "balanced"
    assert np.isnan(scores[3])


def test_selection_breaks_a_tie_with_the_smaller_dimension():
    rows = [_row("d10", 0.05, 2.0, 0.6, 10), _row("d9", 0.05, 2.0, 0.6, 9)]
    assert rows[select_model(rows, dim_weight=0.0)[0]]["name"] == "d9"


@pytest.mark.mpi
def test_sweep_spreads_runs_over_two_mpi_ranks_and_selects(tmp_path, run_mpi, rng):
    def batch(n):
        x = rng.random((n, 37, 37, 14), dtype=np.float32)
        y = np.array([(0, 0), (1, 0), (1, 1), (3, 1)], np.int32)[rng.integers(0, 4, n)]
        return PatchBatch.from_arrays(x, y)

    write_patches(tmp_path / "train.h5", batch(48))
    write_patches(tmp_path / "val.h5", batch(30))
    out = tmp_path / "sweep"
    proc = run_mpi(
        2,
        [
            "-m",
            "mummi_ml",
            "sweep",
            "--data",
            str(tmp_path / "train.h5"),
            "--eval-data",
            str(tmp_path / "val.h5"),
            "--out",
            str(out),
            "--no-progress",
            "--set",
            "train.epochs=1",
            "--set",
            "train.batch_size=16",
            "--set",
            "train.num_threads=1",
            "--set",
            "evaluate.sweep.ablations=false",
            "--set",
            "evaluate.sweep.eval_points=30",
            "--set",
            'evaluate.sweep.parameters={"model.latent_dim": [3, 4]}',
        ],
        timeout=300,
    )
    assert "[sweep rank 0/2] training latent_dim=3" in proc.stderr
    assert "[sweep rank 1/2] training latent_dim=4" in proc.stderr
    summary = json.loads((out / "sweep.json").read_text())
    assert sorted(r["name"] for r in summary["runs"]) == ["latent_dim=3", "latent_dim=4"]
    assert [r["dim"] for r in sorted(summary["runs"], key=lambda r: r["dim"])] == [3, 4]
    assert summary["selected"] in ("latent_dim=3", "latent_dim=4") and not summary["missing"]
    assert (out / "parallel_coordinates.png").stat().st_size > 0
    assert "selected:" in proc.stdout
