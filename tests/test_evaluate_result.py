"""The typed evaluation result: metrics.json's schema, versioned, read back exactly as written
(also a metrics.json written before ``schema_version`` existed)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mummi_ml.evaluate import EvaluateConfig, EvaluationError, run_evaluation
from mummi_ml.evaluate.report import write_outputs
from mummi_ml.evaluate.result import (
    METRICS_FORMAT,
    SCHEMA_VERSION,
    CampaignResult,
    DataInfo,
    EvaluationResult,
    GroundTruthTime,
    ModelInfo,
    PRSummary,
    SpaceResult,
    TimeResult,
)
from mummi_ml.evaluate.spacetime import BinnedCurve, DecorrelationFit, fit_decorrelation
from mummi_ml.evaluate.table import TableRow
from mummi_ml.metric import LossConfig, ModelConfig, TrainConfig, build_encoder, write_model_dir
from mummi_ml.patch import ChannelStats, PatchBatch, write_patches


def _row(name: str, kind: str, auc: float = 0.5) -> TableRow:
    return TableRow(name, kind, 9, 0.25, 1.5, 0.3, 3.0, 0.1, False, auc, 100)  # seconds: NaN


def _curve(t: np.ndarray, y: np.ndarray) -> BinnedCurve:
    return BinnedCurve(t, y, np.full_like(t, 0.1), np.full_like(t, 4.0))


def _result() -> EvaluationResult:
    t = np.round(np.arange(0.0, 2.0001, 0.1), 6)
    rising = _curve(t, 0.1 + 0.5 * t)  # never levels off: time not determined
    saturating = _curve(t, 0.3 + 2.0 * (1 - np.exp(-t / 0.4)))
    fit, gt_fit = fit_decorrelation(rising, 0.53), fit_decorrelation(saturating, 0.53)
    return EvaluationResult(
        created_by="mummi-ml test evaluate",
        model=ModelInfo("runs/m", "0123456789ab", 9, 0.1),
        data=DataInfo("val.h5", 100, 0, [25, 25, 25, 25]),
        transform_group="paper",
        table=[_row("l2 (mu; mean conc.)", "baseline", auc=math.nan), _row("ours", "model")],
        pr_curve_ours=PRSummary([1.0, 2.0], [1.0, 0.75], [0.1, 0.2], [0.9, 0.8]),
        notes=["a note"],
        campaign=CampaignResult("camp.h5", 40, [_row("ours", "model")]),
        time=TimeResult("hist.h5", 24, 3, 0.53, fit, rising,
                        GroundTruthTime("l2 of the standardised patches (d_x)", gt_fit,
                                        saturating),
                        None, "d_z time not determined"),
        space=SpaceResult(5, 30, None, 0.4, math.nan, _curve(t[:3], t[:3])),
        seconds=12.5,
    )


def test_result_round_trips_through_its_json():
    text = _result().to_json()
    back = EvaluationResult.from_json(text)
    assert back.to_json() == text


def test_round_trip_restores_types_and_undefined_numbers():
    back = EvaluationResult.from_json(_result().to_json())
    assert isinstance(back.table[-1], TableRow) and back.ours.name == "ours"
    assert math.isnan(back.table[0].auc) and math.isnan(back.table[0].seconds)
    assert isinstance(back.time.fit, DecorrelationFit)
    assert not back.time.fit.determined and back.time.fit.tau_us is None
    assert back.time.ground_truth.fit.tau_us == pytest.approx(0.4, rel=1e-3)
    assert back.time.ratio_to_ground_truth is None
    np.testing.assert_array_equal(back.time.curve.x, _result().time.curve.x)
    assert back.space.domain_nm is None and math.isnan(back.space.pearson_above_half_patch)


def test_metrics_json_states_its_schema_version_and_format():
    data = json.loads(_result().to_json())
    assert data["schema_version"] == SCHEMA_VERSION == 1
    assert data["format"] == METRICS_FORMAT == 1


def test_absent_analyses_are_absent_keys():
    r = _result()
    bare = EvaluationResult(r.created_by, r.model, r.data, r.transform_group, r.table,
                            r.pr_curve_ours, r.notes)
    data = json.loads(bare.to_json())
    assert not {"campaign", "time", "space"} & set(data)
    assert data["seconds"] is None  # NaN (not measured) is written as null
    back = EvaluationResult.from_json(bare.to_json())
    assert back.campaign is None and back.time is None and back.space is None


def test_a_metrics_json_from_before_schema_version_reads_as_version_1():
    data = json.loads(_result().to_json())
    del data["schema_version"]  # as written by mummi-ml before the key existed: format 1
    back = EvaluationResult.from_dict(data)
    assert back.schema_version == SCHEMA_VERSION
    assert back.to_json() == _result().to_json()


def test_a_newer_schema_version_is_refused():
    data = json.loads(_result().to_json()) | {"schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(EvaluationError, match="schema version 2"):
        EvaluationResult.from_dict(data)


def test_a_missing_key_is_named():
    data = json.loads(_result().to_json())
    del data["transform_group"]
    with pytest.raises(EvaluationError, match="missing key 'transform_group'"):
        EvaluationResult.from_dict(data)


def test_keys_added_by_a_newer_writer_are_kept():
    data = json.loads(_result().to_json()) | {"energy_kwh": 0.2}
    assert EvaluationResult.from_dict(data).to_dict()["energy_kwh"] == 0.2


def test_the_report_stage_writes_metrics_json_and_tables_from_the_result(tmp_path):
    result = _result()
    write_outputs(tmp_path, result, figures=[])
    assert (tmp_path / "metrics.json").read_text() == result.to_json()
    tables = json.loads((tmp_path / "table.json").read_text())
    assert [r["name"] for r in tables["pre_campaign"]] == ["l2 (mu; mean conc.)", "ours"]
    assert tables["campaign"][0]["n_points"] == 100
    assert "**Campaign (40 points)**" in (tmp_path / "table.md").read_text()
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Time</h2>" in html and "metric (d_z): not determined" in html


@pytest.mark.slow  # ~10 s alone, ~30 s on a loaded machine (t-SNE, eight figures)
def test_written_metrics_json_is_the_returned_result(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    stats = ChannelStats.from_batches([rng.random((20, 37, 37, 14), dtype=np.float32)])
    model = write_model_dir(tmp_path / "m", build_encoder(ModelConfig()).eval(), stats,
                            ModelConfig(), LossConfig(), TrainConfig(), "test")
    x = rng.random((30, 37, 37, 14), dtype=np.float32)
    y = np.array([(0, 0), (1, 0), (1, 1), (3, 1)], np.int32)[rng.integers(0, 4, 30)]
    write_patches(tmp_path / "val.h5", PatchBatch.from_arrays(x, y))
    cfg = EvaluateConfig(baselines=False, tsne_points=10, device="cpu")
    result = run_evaluation(model, tmp_path / "val.h5", tmp_path / "out", cfg, progress=False)
    text = (tmp_path / "out" / "metrics.json").read_text()
    assert text == result.to_json()
    assert EvaluationResult.from_json(text).to_json() == text
    assert result.ours.lam == 0.1 and not result.ours.lam_fitted


@pytest.mark.parametrize("model, loss, name", [
    ({}, {}, "L_inv + L_rad + L_lab (ours)"),
    ({"invariance": "group"}, {"w_inv": 0.0}, "L_rad + L_lab, group-invariant (ours)"),
    ({"invariance": "group"}, {}, "L_inv + L_rad + L_lab, group-invariant (ours)"),
])
def test_our_row_is_named_by_the_models_losses_and_invariance(model, loss, name):
    from types import SimpleNamespace

    from mummi_ml.evaluate.compute import ours_name
    from mummi_ml.metric.config import LossConfig, ModelConfig

    metric = SimpleNamespace(model_cfg=ModelConfig(**model), loss_cfg=LossConfig(**loss))
    assert ours_name(metric) == name
