"""Configuration of the in situ selector (``selector:``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mummi_ml.config_loader import StrictModel
from mummi_ml.patch.constants import N_CLASSES
from mummi_ml.selector.drift_config import DriftConfig
from mummi_ml.selector.groups import QueuesConfig
from mummi_ml.selector.retrain_config import RetrainConfig

__all__ = ["SelectorConfig"]


class SelectorConfig(StrictModel):
    """The in situ selector: sources, candidate pool, novelty, checkpoints, operations."""

    capacity_per_rank: int = Field(35000, ge=1, description="candidates kept per rank (count)")
    state_dir: str = Field(
        "selector-state",
        description="directory of checkpoints, payload segments, picks journal, status.json "
        "(must be on a file system shared by all selector ranks)",
    )
    sources: list[Literal["spool", "mpi"]] = Field(
        default_factory=lambda: ["spool"],
        description="where patches come from: a spool directory of HDF5 files and/or MPI "
        "messages from coupler ranks of the same MPMD job",
    )
    spool_dir: str = Field(
        "spool", description="directory the coupler writes *.h5 patch files into (atomically)"
    )
    spool_after: Literal["archive", "delete"] = Field(
        "archive",
        description="what happens to a claimed spool file once a checkpoint covers it: moved "
        "to SPOOL/archive/ or deleted",
    )
    files_per_poll: int = Field(
        8, ge=1, description="spool files one rank claims per loop iteration (count)"
    )
    embedding: Literal["model", "mean_concentrations"] = Field(
        "model",
        description="embedding of patches: the trained metric (model_dir) or the 14 mean "
        "concentrations (a model-free fallback for demos and benchmarks)",
    )
    model_dir: str | None = Field(
        None, description="trained metric checkpoint directory (Metric.load); needed for 'model'"
    )
    embed_batch_size: int = Field(1024, ge=1, description="patches per embedding batch (count)")
    ood_guard: bool = Field(
        True,
        description="out-of-domain guard: quarantine (code 6) a patch whose embedding lies more "
        "than ood_threshold times the training q99 distance from the centroid of the model's "
        "training embeddings (model_dir/embedding_domain.json, written by training; a model "
        "without it runs unguarded, with a warning). Off for embedding=mean_concentrations",
    )
    ood_threshold: float = Field(
        3.0,
        gt=1.0,
        allow_inf_nan=False,
        description="distance to the training centroid, in units of the distance within which "
        "99% of the training patches lie, beyond which a patch is out of domain (> 1)",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="device for embedding and torch novelty search (auto: cuda if present)"
    )
    novelty: Literal["nearest", "mean_knn"] = Field(
        "nearest",
        description="novelty of a candidate: distance to the nearest selected patch (d_z units), "
        "or DynIm's mean distance to the knn_k nearest selected patches",
    )
    knn_k: int = Field(10, ge=1, description="neighbours averaged by novelty=mean_knn (count)")
    nn_backend: Literal["auto", "ckdtree", "faiss", "torch"] = Field(
        "auto",
        description="exact nearest-selected search for arriving candidates (auto: torch on a GPU, "
        "else scipy cKDTree, the fastest measured on CPU)",
    )
    class_quotas: list[float] | None = Field(
        None,
        description=f"target fraction of picks per class ({N_CLASSES} non-negative weights, "
        "normalised; null: no quotas, pure farthest-point)",
    )
    queues: QueuesConfig | None = Field(
        None,
        description="MuMMI-style queues (names, shares, patch-type patterns, bins of a per-patch "
        "scalar) instead of the four classes and class_quotas; see docs/coupling.md",
    )
    random_picks: int = Field(
        0, ge=0, description="picks made at random (seeded) while the allowed queue/bin holds "
        "fewer picks than this, before novelty ranking (DynIm's min_rand_b4_importance; count)",
    )
    random_seed: int = Field(0, ge=0, description="seed of the random picks")
    frontier_size: int = Field(
        1024,
        ge=1,
        description="least number of waiting candidates the lazy greedy brings up to date when "
        "it lowers its threshold (count); a tuning knob, never changes which patches are picked",
    )
    checkpoint_interval_s: float = Field(
        300.0, gt=0, description="seconds between periodic checkpoints (also on SIGTERM/SIGUSR1)"
    )
    keep_checkpoints: int = Field(2, ge=1, description="complete checkpoints kept (count)")
    poll_interval_s: float = Field(
        0.5, gt=0, description="seconds to sleep when a loop iteration found no input"
    )
    status_interval_s: float = Field(
        10.0, gt=0, description="seconds between log lines and status.json updates"
    )
    wait_timeout_s: float = Field(
        3600.0, gt=0, description="--once: seconds to wait for emitted jobs before exiting"
    )
    model_updates_dir: str | None = Field(
        None,
        description="hot swap: directory watched for new model directories (<dir>/<name>/ with "
        "metric.json, weights.pt and a COMPLETE marker written last); the running selector "
        "adopts the newest complete one it has not adopted yet, re-embedding its pool and "
        "selected set (docs/selector.md, Hot swap); the retraining jobs write there; null: no "
        "hot swap",
    )
    model_poll_interval_s: float = Field(
        10.0, gt=0, description="seconds between scans of model_updates_dir (rank 0)"
    )
    drift: DriftConfig | None = Field(
        None, description="drift monitor: window of arrivals and thresholds (see "
        "mummi_ml.selector.drift); null: no monitor"
    )
    retrain: RetrainConfig | None = Field(
        None, description="retraining reservoir, snapshot triggers and job (see "
        "mummi_ml.selector.loop); null: none"
    )

    @model_validator(mode="after")
    def _quotas_or_queues(self) -> SelectorConfig:
        if self.queues is not None and self.class_quotas is not None:
            raise ValueError("class_quotas and queues: set one (queues carry their own shares)")
        return self

    @field_validator("class_quotas")
    @classmethod
    def _check_quotas(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if len(v) != N_CLASSES or any(q < 0 for q in v) or sum(v) <= 0:
            raise ValueError(
                f"expected {N_CLASSES} non-negative weights with a positive sum, got {v}"
            )
        return v
