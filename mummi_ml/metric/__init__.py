"""mummi_ml.metric: the paper's metric in PyTorch: encoder, losses, data pipeline, training
(data parallel), checkpoints and the ``Metric`` model directory.

    model_dir = train_model(model_cfg, loss_cfg, train_cfg, [Path("patches.h5")], Path("run"))
    z = Metric.load(model_dir).embed(x)      # raw [N, 37, 37, 14] -> [N, d]
"""

from mummi_ml.metric.batchnorm import GlobalBatchNorm
from mummi_ml.metric.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from mummi_ml.metric.config import LOSS_TERMS, LossConfig, LossTerm, ModelConfig, TrainConfig
from mummi_ml.metric.data import Batch, TrainingData, data_fingerprint
from mummi_ml.metric.encoder import Encoder
from mummi_ml.metric.errors import MetricError, TrainingInterrupted
from mummi_ml.metric.losses import (
    LossTerms,
    invariance_loss,
    label_loss,
    metric_loss,
    pairwise_distances,
    radial_loss,
)
from mummi_ml.metric.model_dir import Metric, build_encoder, weights_hash, write_model_dir
from mummi_ml.metric.quality import mare, overlap_percent
from mummi_ml.metric.schedule import learning_rate_at
from mummi_ml.metric.split import Split, epoch_order, split_indices
from mummi_ml.metric.train import Trainer, train_model
from mummi_ml.metric.transforms import apply_transform, n_transforms, transform_views

__all__ = [
    "Metric",
    "train_model",
    "Trainer",
    "Encoder",
    "GlobalBatchNorm",
    "build_encoder",
    "ModelConfig",
    "LossConfig",
    "TrainConfig",
    "LossTerm",
    "LOSS_TERMS",
    "invariance_loss",
    "label_loss",
    "radial_loss",
    "metric_loss",
    "LossTerms",
    "pairwise_distances",
    "learning_rate_at",
    "TrainingData",
    "Batch",
    "data_fingerprint",
    "Split",
    "split_indices",
    "epoch_order",
    "CHECKPOINT_NAME",
    "save_checkpoint",
    "load_checkpoint",
    "write_model_dir",
    "weights_hash",
    "overlap_percent",
    "mare",
    "apply_transform",
    "transform_views",
    "n_transforms",
    "MetricError",
    "TrainingInterrupted",
]
