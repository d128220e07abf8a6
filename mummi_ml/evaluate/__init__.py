"""mummi_ml.evaluate: the evaluation criteria of a similarity metric (DESIGN.md, "Evaluation
criteria"), baselines and ablations, the report and sweeps (see docs/evaluation.md).

The three criteria are exact over all N(N-1)/2 pairs, computed in row blocks with bounded memory
and vectorised in torch (CPU threads, or the GPU when one is present):

* :func:`overlap_percent` (lower is better),
* :func:`mare` -> (MARE, MARE*, lambda) (lower is better),
* :func:`pr_auc` (higher is better), with the full curves from :func:`pr_curve`.

``run_evaluation`` writes a model's report (``mummi-ml evaluate``) in three stages: compute
(an :class:`EvaluationResult`, the versioned metrics.json schema), figures, report;
``run_sweep`` trains and evaluates a sweep with ablations over MPI ranks (``mummi-ml sweep``).
"""

from mummi_ml.evaluate.config import SWEEP_PARAMETERS, EvaluateConfig, SweepConfig
from mummi_ml.evaluate.errors import EvaluationError
from mummi_ml.evaluate.evaluation import (
    RepresentationResult,
    embed_all,
    evaluate_representation,
    transformation_distances,
)
from mummi_ml.evaluate.histograms import PairHistogram2D, pair_histogram_2d
from mummi_ml.evaluate.mare import MAREResult, fit_lambda, mare
from mummi_ml.evaluate.overlap import (
    OverlapResult,
    count_pairs_within,
    invariance_distances,
    overlap,
    overlap_from_tau,
    overlap_percent,
)
from mummi_ml.evaluate.pairs import pick_device
from mummi_ml.evaluate.pipeline import load_eval_set, run_evaluation
from mummi_ml.evaluate.pr_curve import PRCurve, pr_auc, pr_curve
from mummi_ml.evaluate.report import Figure, write_outputs, write_report
from mummi_ml.evaluate.representations import (
    Representation,
    image_representation,
    model_representation,
    mu_representation,
    upsilon_representation,
)
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
from mummi_ml.evaluate.spacetime import (
    BinnedCurve,
    DecorrelationFit,
    TimeComparison,
    centre_distance_curve,
    compare_times,
    diffusive_decorrelation_time,
    fit_decorrelation,
    time_difference_curve,
)
from mummi_ml.evaluate.sweep import (
    ABLATIONS,
    SweepRun,
    collect_sweep,
    plan_runs,
    run_sweep,
    select_model,
)
from mummi_ml.evaluate.table import TableRow, table_markdown

__all__ = [
    "ABLATIONS",
    "METRICS_FORMAT",
    "SCHEMA_VERSION",
    "CampaignResult",
    "DataInfo",
    "EvaluationResult",
    "GroundTruthTime",
    "ModelInfo",
    "PRSummary",
    "SpaceResult",
    "TimeResult",
    "SWEEP_PARAMETERS",
    "BinnedCurve",
    "DecorrelationFit",
    "TimeComparison",
    "compare_times",
    "EvaluateConfig",
    "EvaluationError",
    "Figure",
    "MAREResult",
    "OverlapResult",
    "PRCurve",
    "PairHistogram2D",
    "Representation",
    "RepresentationResult",
    "SweepConfig",
    "SweepRun",
    "TableRow",
    "centre_distance_curve",
    "collect_sweep",
    "count_pairs_within",
    "diffusive_decorrelation_time",
    "embed_all",
    "evaluate_representation",
    "fit_decorrelation",
    "fit_lambda",
    "image_representation",
    "invariance_distances",
    "load_eval_set",
    "mare",
    "model_representation",
    "mu_representation",
    "overlap",
    "overlap_from_tau",
    "overlap_percent",
    "pair_histogram_2d",
    "pick_device",
    "plan_runs",
    "pr_auc",
    "pr_curve",
    "run_evaluation",
    "run_sweep",
    "select_model",
    "table_markdown",
    "time_difference_curve",
    "transformation_distances",
    "upsilon_representation",
    "write_outputs",
    "write_report",
]
