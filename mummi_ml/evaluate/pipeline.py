"""``run_evaluation``: everything ``mummi-ml evaluate`` writes (metrics.json, table.md/json,
figures, report.html) for one model, its baselines and ablations, optional campaign data
(distribution shift) and dense histories (time), plus same-frame pairs of the data (space).

Three stages: compute (:mod:`~mummi_ml.evaluate.compute`: the typed, versioned result of
:mod:`~mummi_ml.evaluate.result` and the arrays behind it), figures
(:mod:`~mummi_ml.evaluate.report_figures`: each a function of the result) and report
(:mod:`~mummi_ml.evaluate.report`: files written from the result)."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from mummi_ml.evaluate.compute import check_histories, compute_evaluation, load_eval_set
from mummi_ml.evaluate.config import EvaluateConfig
from mummi_ml.evaluate.report import write_outputs
from mummi_ml.evaluate.report_figures import draw_figures
from mummi_ml.evaluate.result import METRICS_FORMAT, SCHEMA_VERSION, EvaluationResult

__all__ = ["load_eval_set", "run_evaluation", "METRICS_FORMAT", "SCHEMA_VERSION"]


def _log(msg: str, enabled: bool) -> None:
    if enabled:
        print(f"[evaluate {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_evaluation(
    model_dir: str | Path,
    data: str | Path,
    out_dir: str | Path,
    cfg: EvaluateConfig | None = None,
    campaign: str | Path | None = None,
    histories: str | Path | None = None,
    ablations: dict[str, str | Path] | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate a model directory and write the report into ``out_dir``.

    Args:
        model_dir: trained metric (``Metric.load``).
        data: held-out pre-campaign patch file(s) (not the training data).
        out_dir: output directory (created): metrics.json, table.md, table.json, *.png,
            report.html.
        cfg: the ``evaluate:`` section.
        campaign: campaign-preset patch file: the same criteria under distribution shift.
        histories: dense single-protein histories (``simulate --histories``): d_z vs time.
        ablations: ``{row name: model dir}`` of further models (e.g. trained with loss weights
            set to 0), evaluated like the main model.
        progress: log each stage to stderr.

    Returns:
        The result; ``result.to_dict()`` is the content of metrics.json.
    """
    cfg = cfg or EvaluateConfig()
    if histories is not None:  # checked before hours of work, not after
        check_histories(histories)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    log = lambda m: _log(m, progress)  # noqa: E731
    evaluation = compute_evaluation(model_dir, data, cfg, campaign, histories, ablations, log)
    log("figures")
    figures = draw_figures(evaluation.result, evaluation.arrays, out, cfg)
    result = dataclasses.replace(evaluation.result, seconds=time.perf_counter() - t_start)
    write_outputs(out, result, figures)
    log(f"wrote {out}/report.html ({result.seconds:.0f} s)")
    return result
