"""The three losses of the metric, as plain functions on tensors, and their weighted sum."""

from mummi_ml.metric.losses.combined import LossTerms, metric_loss
from mummi_ml.metric.losses.distances import pairwise_distances
from mummi_ml.metric.losses.invariance import invariance_loss
from mummi_ml.metric.losses.label import label_loss
from mummi_ml.metric.losses.radial import radial_loss

__all__ = [
    "invariance_loss",
    "label_loss",
    "radial_loss",
    "metric_loss",
    "LossTerms",
    "pairwise_distances",
]
