"""``benchmarks/closed_loop_run.py`` runs end to end and prints the JSON that docs/results.md
quotes: a smoke run at a tiny size (real coupler, selector, local jobs backend, evaluation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

CONFIG = str(REPO / "configs" / "quickstart.yaml")
TINY = ["continuum.domain_pixels=96", "continuum.n_ras=4", "jobs.duration_us=0.05",
        "evaluate.tsne_points=50", "train.val_max_patches=64", "train.val_metric_patches=32"]


def mummi(*argv: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    sets = [x for kv in TINY for x in ("--set", kv)]
    subprocess.run([sys.executable, "-m", "mummi_ml", argv[0], "--config", CONFIG, *sets,
                    *argv[1:]], check=True, capture_output=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def science(tmp_path_factory) -> Path:
    """A science-run directory in miniature: training, held-out and campaign patches, and a
    pre-campaign group model (``group_all``)."""
    d = tmp_path_factory.mktemp("science")
    mummi("simulate", "--no-progress", "--preset", "pre-campaign", "--patches", "300",
          "--out", str(d / "train.h5"))
    mummi("simulate", "--no-progress", "--set", "continuum.seed=1001", "--replica-offset",
          "100", "--preset", "pre-campaign", "--patches", "120", "--out", str(d / "heldout.h5"))
    mummi("simulate", "--no-progress", "--set", "continuum.seed=2002", "--replica-offset",
          "200", "--preset", "campaign", "--patches", "120", "--out", str(d / "campaign.h5"))
    mummi("train", "--no-progress", "--set", "train.epochs=1", "--set", "model.invariance=group",
          "--data", str(d / "train.h5"), "--out", str(d / "group_all"))
    return d


@pytest.mark.slow  # simulations, two trainings, five selector runs, two evaluations: ~2 min
def test_closed_loop_run_swaps_a_retrained_model_and_prints_its_figures(science, tmp_path):
    out = tmp_path / "loop"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/closed_loop_run.py"), "--science", str(science),
         "--out", str(out), "--config", CONFIG, *(x for kv in TINY for x in ("--set", kv)),
         "--pre-patches", "200", "--campaign-patches", "300", "--window", "100",
         "--after-drift", "0", "--reservoir-per-class", "40", "--finetune-epochs", "1",
         "--finetune-switch", "1", "--tasks", "1", "--slots", "2", "--eval-points", "100",
         "--request-if-no-event"],
        capture_output=True, text=True, timeout=900,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    assert res == json.loads((out / "closed_loop.json").read_text())
    models = res["models"]
    assert models["retrained_parent"] == models["pre"] != models["retrained"]
    for key in ("pre_campaign", "campaign_before_swap", "campaign_after_swap",
                "pre_campaign_after_swap"):
        fig = res["figures"][key]
        assert fig["n_points"] == 100 and 0 <= fig["auc"] <= 1 and fig["mare_star"] >= 0
    assert set(res["goal"]) == {"overlap_percent", "mare_star", "auc"}
    sel = res["selector"]
    [swap] = sel["swaps"]
    assert (swap["from"], swap["to"]) == (models["pre"], models["retrained"])
    acc = sel["accounting"]
    assert acc["ingested"] == 500 == acc["pooled"] + acc["selected"] + acc["evicted"] + \
        acc["quarantined"]
    assert sum(sel["picks_by_model"].values()) == acc["selected"]
    assert sel["picks_by_model"][models["retrained"]] > 0  # round 3 picked with the new model


def test_closed_loop_run_on_a_directory_that_is_no_science_run_is_one_line_exit_2(tmp_path):
    (tmp_path / "heldout.h5").write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/closed_loop_run.py"), "--science", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "missing group_all/weights.pt" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heldout.h5"]  # nothing written
