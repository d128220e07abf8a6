"""mummi_ml.evaluate: the evaluation criteria of a similarity metric (DESIGN.md, "Evaluation
criteria"), baselines, the report and sweeps.

The three criteria are exact over all N(N-1)/2 pairs, computed in row blocks with bounded memory
and vectorised in torch (CPU threads, or the GPU when one is present):

* :func:`overlap_percent` (lower is better), :func:`mare` (MARE, MARE*, lambda; lower is better),
* :func:`pr_auc` (higher is better), with the full curves from :func:`pr_curve`.
"""

from mummi_ml.evaluate.config import EvaluateConfig
from mummi_ml.evaluate.errors import EvaluationError
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
from mummi_ml.evaluate.pr_curve import PRCurve, pr_auc, pr_curve

__all__ = [
    "EvaluateConfig",
    "EvaluationError",
    "MAREResult",
    "OverlapResult",
    "PRCurve",
    "count_pairs_within",
    "fit_lambda",
    "invariance_distances",
    "mare",
    "overlap",
    "overlap_from_tau",
    "overlap_percent",
    "pick_device",
    "pr_auc",
    "pr_curve",
]
