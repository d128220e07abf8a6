"""``mummi-ml demo``: the whole pipeline end to end, at a tiny size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TINY = ["--set", "continuum.domain_pixels=96", "--set", "continuum.n_ras=4",
        "--set", "train.epochs=1",
        "--set", "evaluate.n_points=200", "--set", "evaluate.tsne_points=100",
        "--set", "jobs.duration_us=0.05"]


def _demo(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "mummi_ml", "demo",
         "--config", str(REPO / "configs/quickstart.yaml"), "--out", str(out),
         "--patches", "400", "--no-progress", *TINY, *extra],
        capture_output=True, text=True, timeout=900, env=env, cwd=out.parent,
    )


def test_demo_runs_every_stage_and_a_rerun_continues(tmp_path):
    out = tmp_path / "demo"
    proc = _demo(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "report" / "report.html").stat().st_size > 10_000
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert {r["name"] for r in metrics["table"]} >= {"l2 (mu; mean conc.)"}
    status = json.loads((out / "selector" / "status.json").read_text())
    assert status["state"] == "stopped" and status["selected"] == 2
    assert status["jobs"]["completed"] == 2
    jobs = [p for p in (out / "selector" / "jobs").iterdir() if p.name.isdigit()]
    assert all((j / "result.h5").exists() for j in jobs)
    again = _demo(out)  # finished steps are skipped; the selector picks for the freed slots
    assert again.returncode == 0, again.stderr[-3000:]
    assert "mummi-ml simulate" not in again.stderr and "mummi-ml train" not in again.stderr
    assert json.loads((out / "selector" / "status.json").read_text())["selected"] == 4


def test_demo_rejects_a_too_small_size_in_one_line(tmp_path):
    proc = _demo(tmp_path / "demo", "--patches", "10")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "mummi-ml demo: error: --patches must be at least 200, got 10"]
