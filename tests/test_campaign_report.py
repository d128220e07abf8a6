"""``mummi-ml report STATE_DIR``: the campaign report from a real ``mummi-ml select --once`` state
directory, with drift events and model versions, and its bad-input refusals."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mummi_ml.campaign import covering_radii, load_campaign
from mummi_ml.cli import main
from mummi_ml.metric.domain import summarise_embeddings
from mummi_ml.patch import write_patches
from mummi_ml.selector.drift import DriftConfig, DriftMonitor, append_drift_log
from tests.test_selector_service import make_batch

REPO = Path(__file__).resolve().parents[1]


def _mummi(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mummi_ml", *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory) -> Path:
    """A state directory written by a real ``mummi-ml select --once`` (local jobs) over a spool
    of three files and one of repeated ids (quarantined)."""
    root = tmp_path_factory.mktemp("campaign")
    rng = np.random.default_rng(0)
    (root / "spool").mkdir()
    for i in range(3):
        write_patches(root / "spool" / f"f{i}.h5", make_batch(rng, 100 * i, 100))
    write_patches(root / "spool" / "dup.h5", make_batch(rng, 250, 20))
    sets = {"selector.state_dir": root / "state", "selector.spool_dir": root / "spool",
            "selector.embedding": "mean_concentrations", "selector.poll_interval_s": 0.05,
            "jobs.slots": 4, "jobs.command": '["{python}", "-c", "pass"]',
            "jobs.poll_interval_s": 0.1, "selector.class_quotas": "[1,1,1,1]"}
    args = ["select", "--once"] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    proc = _mummi(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root / "state"


def _figures(html_text: str) -> int:
    return len(re.findall(r"src='data:image/png;base64,", html_text))


def _report(capsys, *args: str) -> tuple[int, str]:
    """``mummi-ml report ARGS`` in this process: (exit status, stderr)."""
    rc = main(["report", *args])
    return rc, capsys.readouterr().err


def test_report_of_a_real_selector_run_is_self_contained(state_dir, tmp_path, capsys):
    rc, err = _report(capsys, str(state_dir), "--out", str(tmp_path), "--set",
                      "selector.class_quotas=[1,1,1,1]")
    assert rc == 0, err
    text = (tmp_path / "campaign_report.html").read_text()
    assert _figures(text) == 5
    assert "http" not in text.replace("http-equiv", "")  # no external resource
    assert "4 in all" in text and "against the quotas." in text
    assert "id already seen" in text  # the quarantine reason of the repeated ids
    assert "no drift.jsonl" in text


def test_report_marks_drift_events_and_model_versions(state_dir, tmp_path, capsys):
    state = tmp_path / "state"
    shutil.copytree(state_dir, state)
    rng = np.random.default_rng(1)
    dom = summarise_embeddings(rng.normal(size=(500, 3)), "v1", rng.integers(0, 4, 500))
    for version, shift in (("oldmodel0001", 4.0), ("newmodel0002", 0.0)):
        mon = DriftMonitor(dom, DriftConfig(window=100, probe_size=0), version)
        for _ in range(2):
            mon.update(rng.normal(size=(100, 3)) + shift, rng.integers(0, 4, 100),
                       rng.choice(10**9, 100, replace=False))
            append_drift_log(state, mon.close(mon.partial()))
    rc, err = _report(capsys, str(state))
    assert rc == 0, err
    text = (state / "campaign_report.html").read_text()
    assert _figures(text) == 6
    event_rows = re.findall(r"<tr><td>(\d+)</td><td>(\w+)</td>", text)
    assert event_rows == [("0", "oldmodel0001")]  # one event, in the first model's window 0
    assert "oldmodel0001, newmodel0002" in text


def test_covering_radius_never_grows_and_ends_at_the_brute_force_value():
    rng = np.random.default_rng(2)
    pool, picks = rng.normal(size=(200, 3)), rng.normal(size=(6, 3))
    r = covering_radii(picks, pool)
    assert np.all(np.diff(r) <= 0)
    allp = np.concatenate([pool, picks])
    brute = np.linalg.norm(allp[:, None] - picks[None], axis=2).min(1).max()
    assert r[-1] == pytest.approx(brute)


def test_campaign_data_reads_picks_with_times_and_versions(state_dir):
    c = load_campaign(state_dir)
    assert len(c.picks) == 4 and all(p.time is not None for p in c.picks)
    assert {p.model_version for p in c.picks} == {"mean_concentrations"}
    assert c.pool_z.shape == (296, 14)


def test_covering_radius_uses_the_checkpoints_picks_in_the_model_in_use(state_dir):
    """The checkpoint's selected set is re-embedded at every hot swap, so the report takes the
    picks' embeddings from there (one model), not from picks.jsonl (each pick's own model)."""
    c = load_campaign(state_dir)
    assert c.selected_z.shape == (4, 14)
    np.testing.assert_array_equal(c.selected_z, np.stack([p.z for p in c.picks]))


@pytest.mark.parametrize("make, needle", [
    (lambda d: d / "absent", "not a directory"),
    (lambda d: d, "no status.json"),
    (lambda d: (d / "status.json").write_text("{torn") and d, "status.json"),
])
def test_bad_state_directory_is_one_line_exit_2(tmp_path, make, needle, capsys):
    rc, err = _report(capsys, str(make(tmp_path)))
    assert rc == 2
    assert err.count("\n") == 1 and needle in err
