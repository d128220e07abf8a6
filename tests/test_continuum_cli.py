"""``mummi-ml simulate`` and ``mummi-ml couple --spool``, the config section, the rate limiter."""

from __future__ import annotations

import numpy as np
import pytest

from mummi_ml.cli import main
from mummi_ml.config import load_config
from mummi_ml.continuum import ContinuumConfig, ModelParams, RateLimiter
from mummi_ml.errors import ConfigError
from mummi_ml.patch import PatchDataset, PatchFile

SMALL = [
    "--set", "continuum.domain_pixels=48",
    "--set", "continuum.n_ras=4",
    "--set", "continuum.equilibration_us=0.1",
    "--set", "continuum.control_patches_per_frame=1",
]


def test_simulate_writes_the_requested_patches_with_provenance(tmp_path):
    out = tmp_path / "pre.h5"
    assert main(["simulate", "--out", str(out), "--patches", "23", "--no-progress", *SMALL]) == 0
    with PatchFile(out) as f:
        assert len(f) == 23
        assert f.attrs["preset"] == "pre-campaign"
        assert f.attrs["frame_interval_us"] == pytest.approx(0.2)
        batch = f.read()
    assert len(np.unique(batch.ids)) == 23
    assert not list(tmp_path.glob("*.tmp"))


def test_simulate_writes_histories_and_figures(tmp_path):
    out = tmp_path / "camp.h5"
    args = ["simulate", "--out", str(out), "--patches", "10", "--preset", "campaign",
            "--histories", "2", "--plot", str(tmp_path / "fig"), "--no-progress", *SMALL,
            "--set", "continuum.histories.duration_us=0.04",
            "--set", "continuum.histories.interval_us=0.01"]
    assert main(args) == 0
    with PatchFile(tmp_path / "camp.histories.h5") as f:
        assert f.attrs["kind"] == "histories"
        assert len(np.unique(f.field("protein_id"))) == 2
        assert len(f) == 2 * 5
    for name in ("figure1_patches.png", "figure11_drift.png"):
        png = tmp_path / "fig" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "extra",
    [["--patches", "-1"], ["--set", "continuum.domain_pixels=10"],
     ["--set", "continuum.lipids.composition.inner_XYZ=0.1"]],
    ids=["negative-count", "domain-too-small", "unknown-lipid"],
)
def test_simulate_rejects_bad_input_with_exit_status_2(tmp_path, capsys, extra):
    status = main(["simulate", "--out", str(tmp_path / "x.h5"), "--no-progress", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and "error" in err[0]
    assert not (tmp_path / "x.h5").exists()


def test_couple_spool_writes_complete_h5_files_only(tmp_path):
    spool = tmp_path / "spool"
    args = ["couple", "--spool", str(spool), "--patches", "30", "--batch-size", "8",
            "--no-progress", *SMALL]
    assert main(args) == 0
    files = sorted(spool.iterdir())
    assert [f.suffix for f in files] == [".h5"] * 4  # 8 + 8 + 8 + 6, no .tmp left behind
    with PatchDataset(spool) as ds:
        assert len(ds) == 30
        assert len(np.unique(ds.field("ids"))) == 30


def test_rate_limiter_spaces_batches_at_the_requested_rate():
    now = [0.0]
    sleeps = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    limiter = RateLimiter(100.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait(20)  # 20 patches at 100/s: one batch every 0.2 s
    assert now[0] == pytest.approx(0.8)
    assert sleeps == pytest.approx([0.2, 0.2, 0.2, 0.2])


def test_config_section_loads_from_the_project_configs():
    for path in ("configs/quickstart.yaml", "configs/paper.yaml"):
        cfg = load_config(path)
        assert cfg.continuum.lipids.diffusion_nm2_per_us == pytest.approx(43.36)


def test_frame_interval_must_be_a_whole_number_of_steps():
    with pytest.raises(ConfigError, match="frame_interval_us"):
        load_config(None, ["continuum.dt_us=0.05", "continuum.frame_interval_us=0.07"])


def test_campaign_parameters_move_from_the_start_values_to_the_targets():
    cfg = ContinuumConfig(preset="campaign")
    p = ModelParams.from_config(cfg)
    start, mid, end = p.at(0.0), p.at(cfg.campaign.drift_time_us / 2), p.at(1e9)
    pre = ModelParams.from_config(cfg, "pre-campaign")
    assert start.aggregation_kT == pre.aggregation_kT
    np.testing.assert_allclose(start.eps, pre.eps)
    assert end.aggregation_kT == pytest.approx(cfg.campaign.aggregation_kT)
    np.testing.assert_allclose(end.eps, pre.eps * cfg.campaign.lipid_coupling_scale)
    assert start.aggregation_kT < mid.aggregation_kT < end.aggregation_kT
    assert pre.at(1e9).aggregation_kT == pre.aggregation_kT
