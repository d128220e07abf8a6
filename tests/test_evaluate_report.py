"""The evaluation report: representations, table, histograms, time/space analyses and the
``mummi-ml evaluate`` command end to end (on a freshly initialised model, no training)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mummi_ml.cli import main
from mummi_ml.evaluate.histograms import pair_histogram_2d
from mummi_ml.evaluate.report import markdown_tables_to_html
from mummi_ml.evaluate.representations import (
    image_representation,
    mu_representation,
    upsilon_representation,
)
from mummi_ml.evaluate.spacetime import (
    BinnedCurve,
    centre_distance_curve,
    diffusive_decorrelation_time,
    fit_decorrelation,
    time_difference_curve,
)
from mummi_ml.evaluate.table import TableRow, table_markdown
from mummi_ml.metric import LossConfig, ModelConfig, TrainConfig, build_encoder, write_model_dir
from mummi_ml.patch import ChannelStats, PatchBatch, apply_transforms, write_patches


def _patches(rng, n, **meta) -> PatchBatch:
    x = rng.random((n, 37, 37, 14), dtype=np.float32)
    y = np.array([(0, 0), (1, 0), (1, 1), (3, 1)], np.int32)[rng.integers(0, 4, n)]
    return PatchBatch.from_arrays(x, y, **meta)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    out = tmp_path_factory.mktemp("model")
    stats = ChannelStats.from_batches([rng.random((50, 37, 37, 14), dtype=np.float32)])
    enc = build_encoder(ModelConfig()).eval()
    return write_model_dir(out, enc, stats, ModelConfig(), LossConfig(), TrainConfig(), "test")


def test_diffusive_decorrelation_time_matches_the_paper():
    assert diffusive_decorrelation_time(30.0, 43.36) == pytest.approx(0.5258, abs=1e-3)


def test_decorrelation_fit_recovers_a_known_time():
    t = np.linspace(0.0, 5.0, 60)
    y = 0.2 + 1.5 * (1 - np.exp(-t / 0.6))
    curve = BinnedCurve(t, y, np.zeros_like(t), np.full_like(t, 10.0))
    fit = fit_decorrelation(curve, 0.53)
    assert fit.ok
    assert fit.tau_us == pytest.approx(0.6, rel=1e-3)
    assert fit.ratio == pytest.approx(0.6 / 0.53, rel=1e-3)


def test_time_curve_pairs_only_patches_of_one_history(rng):
    z = rng.normal(size=(6, 3))
    pid = np.array([0, 0, 0, 1, 1, 2])
    t = np.array([0.0, 0.1, 0.2, 0.0, 0.2, 0.0])
    curve = time_difference_curve(z, pid, t)
    assert curve.x.tolist() == [0.1, 0.2]
    assert curve.count.tolist() == [2, 2]  # (0,1), (1,2) | (0,2), (3,4)
    want = np.mean([np.linalg.norm(z[0] - z[2]), np.linalg.norm(z[3] - z[4])])
    assert curve.mean[1] == pytest.approx(want)


def test_centre_distance_uses_the_minimum_image():
    z = np.zeros((2, 2))
    centres = np.array([[1.0, 0.0], [99.0, 0.0]])
    _, dist, _ = centre_distance_curve(z, centres, np.zeros(2), domain_nm=100.0)
    assert dist.tolist() == pytest.approx([2.0])


def test_pair_histogram_counts_every_pair_once(rng):
    a, b = rng.normal(size=(30, 2)), rng.normal(size=(30, 4))
    h = pair_histogram_2d(a, b, (7, 5), block_rows=4)
    assert h.counts.sum() == 30 * 29 / 2
    iu = np.triu_indices(30, 1)
    da = np.linalg.norm(a[:, None] - a[None], axis=-1)[iu]
    db = np.linalg.norm(b[:, None] - b[None], axis=-1)[iu]
    ix = np.minimum((da * (7 / h.x_edges[-1])).astype(int), 6)
    for b in np.unique(ix):  # running mean of d_b per d_a bin
        assert h.y_mean[b] == pytest.approx(db[ix == b].mean())


def test_baselines_have_the_papers_dimensions(rng):
    stats = ChannelStats.from_batches([rng.random((5, 37, 37, 14), dtype=np.float32)])
    x = rng.random((3, 37, 37, 14), dtype=np.float32)
    for rep, dim in (
        (image_representation(stats), 19166),
        (mu_representation(), 14),
        (upsilon_representation(stats, list(range(8))), 304),
    ):
        assert rep.dim == dim and rep.embed(x).shape == (3, dim) and rep.lam is None


def test_upsilon_baseline_is_invariant_to_the_transformations(rng):
    stats = ChannelStats.from_batches([rng.random((5, 37, 37, 14), dtype=np.float32)])
    rep = upsilon_representation(stats, list(range(8)))
    x = rng.random((2, 37, 37, 14), dtype=np.float32)
    xt = apply_transforms(x, "paper").reshape(10, 37, 37, 14)
    u, ut = rep.embed(x), rep.embed(xt).reshape(2, 5, -1)
    np.testing.assert_allclose(ut, np.repeat(u[:, None], 5, axis=1), atol=1e-5)


def test_table_markdown_groups_rows_like_table_1():
    row = dict(
        dim=9,
        overlap_percent=0.05,
        tau=1.0,
        mare=0.26,
        mare_star=2.6,
        lam=0.1,
        lam_fitted=False,
        auc=0.61,
        n_points=100,
    )
    md = table_markdown(
        [
            TableRow("l2 (mu)", "baseline", **row),
            TableRow("L_rad", "ablation", **row),
            TableRow("ours", "model", **row),
        ]
    )
    lines = md.splitlines()
    assert lines[2].startswith("| Standard | l2 (mu) | 9 | 0.05 | 2.60 | 0.61 |")
    assert lines[3].startswith("| Ablations | L_rad")
    assert lines[4].startswith("| Our metric | ours")
    assert "<th>Metric</th>" in markdown_tables_to_html(md)


def test_evaluate_command_writes_metrics_figures_and_a_self_contained_report(
    tmp_path, model_dir, rng
):
    data, camp, hist = tmp_path / "val.h5", tmp_path / "camp.h5", tmp_path / "hist.h5"
    frames = rng.integers(0, 5, 60)
    write_patches(
        data,
        _patches(
            rng,
            60,
            time_us=frames.astype(float),
            centre_nm=rng.random((60, 2)).astype(np.float32) * 90,
        ),
    )
    write_patches(camp, _patches(rng, 40))
    write_patches(
        hist,
        _patches(
            rng, 24, protein_id=np.repeat([0, 1, 2], 8), time_us=np.tile(np.arange(8) * 0.1, 3)
        ),
        attrs={"kind": "histories"},
    )
    out = tmp_path / "report"
    status = main(
        [
            "evaluate",
            "--model",
            str(model_dir),
            "--data",
            str(data),
            "--campaign",
            str(camp),
            "--histories",
            str(hist),
            "--ablation",
            f"L_rad={model_dir}",
            "--out",
            str(out),
            "--no-progress",
            "--set",
            "evaluate.tsne_points=20",
        ]
    )
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    names = [r["name"] for r in metrics["table"]]
    assert names[:3] == ["l2 (x; images)", "l2 (mu; mean conc.)", "l2 (Upsilon; radial profiles)"]
    assert names[3] == "L_rad" and metrics["table"][-1]["kind"] == "model"
    assert metrics["table"][2]["mare_star"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["table"][-1]["lam"] == 0.1 and not metrics["table"][-1]["lam_fitted"]
    assert all(0 <= r["auc"] <= 1 and 0 <= r["overlap_percent"] <= 100 for r in metrics["table"])
    assert metrics["campaign"]["table"][-1]["n_points"] == 40
    assert math.isfinite(metrics["time"]["fit"]["diffusive_us"])
    for fit in (metrics["time"]["fit"], metrics["time"]["ground_truth"]["fit"]):
        # a time inside the sampled range, or none with the reason
        if fit["determined"]:
            assert fit["t_min_us"] <= fit["tau_us"] <= fit["t_max_us"]
        else:
            assert fit["tau_us"] is None and fit["reason"]
    assert metrics["space"]["n_pairs"] > 0
    html = (out / "report.html").read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {
        "tsne.png",
        "distance_histograms.png",
        "dz_vs_dupsilon.png",
        "precision_recall.png",
        "dz_vs_dmu.png",
        "dz_vs_time.png",
        "dz_vs_centre_distance.png",
    } <= set(pngs)
    assert html.count("data:image/png;base64,") == len(pngs)
    assert html.count("<figcaption>") == len(pngs)
    assert "http://" not in html and "https://" not in html
    assert "<h2>Time</h2>" in html and "ground truth" in html
    assert "| Our metric |" in (out / "table.md").read_text()


def test_evaluate_command_reports_a_missing_data_file(tmp_path, model_dir, capsys):
    status = main(
        [
            "evaluate",
            "--model",
            str(model_dir),
            "--data",
            str(tmp_path / "nope.h5"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert status == 2
    assert "--data" in capsys.readouterr().err


def test_evaluate_command_refuses_a_patch_file_given_as_histories(tmp_path, model_dir, rng,
                                                                   capsys):
    data = tmp_path / "val.h5"
    write_patches(data, _patches(rng, 30), attrs={"kind": "frames"})
    status = main(["evaluate", "--model", str(model_dir), "--data", str(data), "--histories",
                   str(data), "--out", str(tmp_path / "o"), "--no-progress", "--no-baselines",
                   "--set", "evaluate.tsne_points=20"])
    assert status == 2
    assert "not a histories file (kind='frames')" in capsys.readouterr().err
