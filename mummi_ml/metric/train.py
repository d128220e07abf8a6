"""Training of the metric: Adam, the paper's piecewise-constant learning rate, data parallel.

:func:`train_model` is the library entry point (the CLI ``mummi-ml train`` and the evaluation's
ablations call it). On several ranks (any launcher, see :mod:`mummi_ml.parallel`) it wraps the
encoder in DistributedDataParallel and computes the loss on the GLOBAL batch:

- the global batch is ``train.batch_size`` patches whatever the number of ranks; rank r embeds
  its ``batch_size / size`` patches (and their transformations), the embeddings are gathered
  (:func:`~mummi_ml.parallel.all_gather_with_grad`) and every rank evaluates the same loss;
- BatchNorm statistics span the global batch (:class:`~mummi_ml.metric.batchnorm.GlobalBatchNorm`);
- so P ranks follow the same trajectory as one process on the same global batches, with the
  same learning rate (rule: global batch and learning rate are independent of the rank count;
  more ranks = fewer patches per rank and step).

Run directory ``out_dir``: ``checkpoint.pt`` (every epoch and on SIGTERM/SIGUSR1),
``train_log.csv``, ``training_curve.png``, ``cache/`` (statistics, Upsilon), and at the end the
model (``weights.pt``, ``metric.json``, ``embedding_domain.json``, then the ``COMPLETE`` marker
last; see :mod:`mummi_ml.metric.model_dir`).

Fine-tuning (``init_from``, ``mummi-ml train --init-from MODEL_DIR``): the encoder starts from the
parent model's weights and standardisation, which also standardises Upsilon, the L_rad target,
as evaluation does (its architecture keys must equal this run's
``model:`` section), trains with the ``train.finetune_*`` schedule instead of ``epochs`` /
``learning_rates`` / ``lr_boundaries`` (see :meth:`TrainConfig.finetuning`), and records its
``parent`` and ``lineage`` in metric.json. Data parallel exactly as a run from scratch.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mummi_ml.metric.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from mummi_ml.metric.config import LossConfig, ModelConfig, TrainConfig
from mummi_ml.metric.data import Batch, TrainingData
from mummi_ml.metric.domain import write_training_domain
from mummi_ml.metric.errors import MetricError, TrainingInterrupted
from mummi_ml.metric.history import plot_curves, write_log
from mummi_ml.metric.losses import metric_loss
from mummi_ml.metric.model_dir import (
    Metric,
    build_encoder,
    check_same_architecture,
    clear_complete_marker,
    write_complete_marker,
    write_model_dir,
)
from mummi_ml.metric.quality import mare, overlap_percent
from mummi_ml.metric.schedule import learning_rate_at
from mummi_ml.metric.signals import StopFlag
from mummi_ml.parallel import DistContext, all_gather_with_grad, init_distributed
from mummi_ml.patch import validate_files

__all__ = ["train_model", "Trainer", "RESUME_FREE_KEYS", "keep_freed_memory"]

RESUME_FREE_KEYS = frozenset(
    {"epochs", "num_threads", "device", "cache_mb", "val_max_patches", "val_metric_patches",
     "embed_batch_size", "stream_window", "finetune_epochs", "finetune_learning_rates",
     "finetune_lr_boundaries"}
)
"""``train:`` keys that may change between a run and its resumption (others must match)."""


def train_model(
    model_cfg: ModelConfig,
    loss_cfg: LossConfig,
    train_cfg: TrainConfig,
    data: Sequence[str | Path],
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    ctx: DistContext | None = None,
    init_from: str | Path | None = None,
) -> Path:
    """Train a metric and write its model directory.

    Args:
        model_cfg, loss_cfg, train_cfg: the ``model:``, ``loss:`` and ``train:`` sections.
        data: HDF5 patch files (one dataset, in order).
        out_dir: run and model directory (created).
        resume: continue from ``out_dir/checkpoint.pt`` if it exists (else start afresh).
        progress: show a progress bar (rank 0, stderr).
        ctx: an existing parallel context (default: :func:`init_distributed`, closed at the end).
            Under an MPI launcher the default trains data-parallel over ALL ranks; pass
            ``mummi_ml.parallel.local_context()`` to train on this rank alone.
        init_from: a model directory to fine-tune (same architecture; see the module docstring):
            its weights are the starting point and ``train_cfg.finetune_*`` the schedule.

    Returns:
        ``out_dir``, now a model directory (``Metric.load(out_dir)``).

    Raises:
        MetricError: bad data or configuration, or a checkpoint exists and ``resume`` is False.
        TrainingInterrupted: SIGTERM/SIGUSR1 arrived; a checkpoint was written.
    """
    own = ctx is None
    if ctx is None:
        ctx = init_distributed(train_cfg.device, train_cfg.num_threads)
    try:
        trainer = Trainer(model_cfg, loss_cfg, train_cfg, data, Path(out_dir), ctx, progress,
                          init_from=init_from)
        return trainer.run(resume)
    finally:
        if own:
            ctx.close()


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the system.

    A training step allocates and frees tensors of 10-30 MB; with glibc's defaults many of them
    are fresh ``mmap`` pages whose first touch is a page fault (measured: ~10,000 faults and
    ~20 ms of system time per step of the paper's batch, ~20% of the step). Raising the mmap
    threshold to its 32 MiB maximum and the trim threshold keeps them in the heap. Process-wide
    and harmless elsewhere (memory stays mapped until exit); a no-op returning False when the C
    library is not glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = mallopt(m_mmap_threshold, 32 * 2**20) == 1
    ok &= mallopt(m_trim_threshold, 2**30) == 1
    ok &= mallopt(m_top_pad, 64 * 2**20) == 1
    return bool(ok)


class Trainer:
    """One training run (see :func:`train_model`); one instance per rank."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        loss_cfg: LossConfig,
        train_cfg: TrainConfig,
        data: Sequence[str | Path],
        out_dir: Path,
        ctx: DistContext,
        progress: bool = True,
        init_from: str | Path | None = None,
    ):
        self.parent: Metric | None = None
        if init_from is not None:
            self.parent = self.check_parent(Path(init_from), model_cfg, Path(out_dir))
            train_cfg = train_cfg.finetuning()
        self.model_cfg, self.loss_cfg, self.cfg = model_cfg, loss_cfg, train_cfg
        self.paths = [Path(p) for p in ([data] if isinstance(data, (str, Path)) else data)]
        if not self.paths:
            raise MetricError("data: no patch files given")
        validate_files(self.paths)  # every rank, before any work: same verdict on every rank
        self.out_dir = out_dir
        self.ctx = ctx
        self.progress = progress
        self.ckpt_path = out_dir / CHECKPOINT_NAME
        self.rows: list[dict[str, float]] = []
        self._val: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def check_parent(path: Path, model_cfg: ModelConfig, out_dir: Path) -> Metric:
        """The model to fine-tune from ``path``, loaded on the CPU and checked: a model directory,
        not ``out_dir``, same architecture as ``model_cfg`` (else MetricError, one line)."""
        where = f"--init-from {path}"
        if path.resolve() == out_dir.resolve():
            raise MetricError(f"{where}: the output directory must differ from the parent model")
        try:
            parent = Metric.load(path, device="cpu")
        except MetricError as exc:
            raise MetricError(f"{where}: {exc}") from None
        check_same_architecture(parent.config.get("model", {}), model_cfg, where)
        return parent

    def _lineage(self) -> dict[str, Any]:
        """metric.json entries recording the parent model (empty for a run from scratch)."""
        if self.parent is None:
            return {}
        older = [str(v) for v in self.parent.meta.get("lineage", [])]
        return {"parent": {"version": self.parent.version, "path": str(self.parent.path)},
                "lineage": [*older, self.parent.version]}

    def _config_dict(self) -> dict[str, Any]:
        """What the checkpoint records of this run: the three sections and, when fine-tuning,
        the parent's version (its weights and statistics are the run's start)."""
        return {
            "model": self.model_cfg.model_dump(mode="json"),
            "loss": self.loss_cfg.model_dump(mode="json"),
            "train": self.cfg.model_dump(mode="json"),
            "parent": None if self.parent is None else self.parent.version,
        }

    def _check_resumable(self, saved: dict[str, Any]) -> None:
        now = self._config_dict()
        if saved.get("parent") != now["parent"]:
            raise MetricError(
                f"{self.ckpt_path}: cannot resume fine-tuning from model {now['parent']}, the "
                f"checkpoint started from {saved.get('parent')} (--init-from must be the same)"
            )
        for section in ("model", "loss", "train"):
            for key, value in now[section].items():
                if section == "train" and key in RESUME_FREE_KEYS:
                    continue
                old = saved.get(section, {}).get(key)
                if old != value:
                    raise MetricError(
                        f"{self.ckpt_path}: cannot resume with {section}.{key} = {value!r}, "
                        f"the checkpoint was written with {old!r}"
                    )

    def setup(self, resume: bool) -> None:
        """Build data, encoder (from the parent's weights when fine-tuning, or the checkpoint's
        when resuming) and optimiser; :meth:`run` calls it."""
        ctx, cfg = self.ctx, self.cfg
        keep_freed_memory()  # ~20% of a CPU step was page faults on fresh tensors
        if ctx.is_root:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            clear_complete_marker(self.out_dir)  # the directory is no longer a whole model
        ctx.barrier()
        if self.ckpt_path.exists() and not resume:
            raise MetricError(
                f"{self.out_dir}: holds a checkpoint of an earlier run; resume it (--resume) "
                "or choose another output directory"
            )
        self.data = TrainingData(
            self.paths, self.model_cfg, cfg, self.out_dir / "cache", ctx.rank, ctx.size,
            ctx.barrier if ctx.distributed else None,
            stats=None if self.parent is None else self.parent.stats,  # the L_rad target's
        )
        torch.manual_seed(cfg.seed)
        self.encoder = build_encoder(self.model_cfg)
        stats = self.data.stats
        self.encoder.set_stats(stats.mean, np.where(stats.std > 0, stats.std, 1.0))
        self.epoch, self.step = 0, 0
        self.partial = [0.0] * 6  # loss, inv, rad, lab sums, steps, seconds of an interrupted epoch
        state = None
        if resume and self.ckpt_path.exists():
            state = load_checkpoint(self.ckpt_path)
            self._check_resumable(json.loads(state["config"]))
            self.encoder.load_state_dict(state["model"])
            torch.set_rng_state(state["torch_rng"])
            self.epoch, self.step = int(state["epoch"]), int(state["step"])
            self.rows = [dict(r) for r in state["history"]]
            self.partial = [float(v) for v in state["partial"]]
        elif self.parent is not None:  # fine-tuning: the parent's weights and standardisation
            self.encoder.load_state_dict(self.parent.encoder.state_dict())
        self.dtype = torch.float64 if cfg.precision == "float64" else torch.float32
        self.encoder.to(ctx.device, self.dtype)
        self.optimizer = torch.optim.Adam(self.encoder.parameters(), lr=cfg.learning_rates[0])
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            # buffers (BatchNorm running statistics) are identical on every rank by
            # construction (GlobalBatchNorm): no per-forward broadcast needed
            self.model = DistributedDataParallel(
                self.encoder, device_ids=ids, forward_sync_buffers=False
            )
        else:
            self.model = self.encoder

    # ------------------------------------------------------------------ steps
    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimisation step on a global batch (this rank's share in ``batch.x``)."""
        dev = self.ctx.device
        x = torch.from_numpy(batch.x).to(dev, self.dtype, non_blocking=True)
        views = self.loss_cfg.w_inv > 0
        zv = self.model(x, views=views)  # [b, 1+T, d] or [b, d]
        if not views:
            zv = zv[:, None]
        b, k, d = zv.shape
        z_all = all_gather_with_grad(zv.reshape(b, k * d)).reshape(-1, k, d)  # [B, 1+T, d]
        labels = torch.from_numpy(batch.labels).to(dev)
        ups = None
        if self.loss_cfg.w_rad > 0:
            ups = torch.from_numpy(batch.upsilon).to(dev, self.dtype)
        terms = metric_loss(z_all, labels, ups, self.loss_cfg)
        self.optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        self.optimizer.step()
        return terms.as_floats()

    @torch.no_grad()
    def batch_loss(self, batch: Batch) -> dict[str, float]:
        """The loss terms :meth:`train_step` would optimise on ``batch``, without a step
        (training mode: BatchNorm uses the batch's statistics)."""
        dev = self.ctx.device
        x = torch.from_numpy(batch.x).to(dev, self.dtype)
        views = self.loss_cfg.w_inv > 0
        zv = self.model(x, views=views)
        if not views:
            zv = zv[:, None]
        b, k, d = zv.shape
        z_all = all_gather_with_grad(zv.reshape(b, k * d)).reshape(-1, k, d)
        ups = None
        if self.loss_cfg.w_rad > 0:
            ups = torch.from_numpy(batch.upsilon).to(dev, self.dtype)
        labels = torch.from_numpy(batch.labels).to(dev)
        return metric_loss(z_all, labels, ups, self.loss_cfg).as_floats()

    def _stop_requested(self, flag: StopFlag) -> bool:
        if not self.ctx.distributed:
            return flag.requested
        t = torch.tensor([1.0 if flag.requested else 0.0], device=self.ctx.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def _save(self, epoch: int, step: int) -> None:
        if not self.ctx.is_root:
            return
        save_checkpoint(
            self.ckpt_path,
            {
                "model": {k: v.detach().cpu() for k, v in self.encoder.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "epoch": epoch,
                "step": step,
                "torch_rng": torch.get_rng_state(),
                "history": self.rows,
                "partial": self.partial,
                "config": json.dumps(self._config_dict()),
                "data_hash": self.data.data_hash,
                "world_size": self.ctx.size,
            },
        )

    # ------------------------------------------------------------------ validation (rank 0)
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss terms on up to ``val_max_patches`` validation patches (eval mode, in global-batch
        chunks), overlap % and MARE on the first ``val_metric_patches`` of them."""
        dev, cfg = self.ctx.device, self.cfg
        if self._val is None:
            x, lab, ups = self.data.validation_set(cfg.val_max_patches)
            self._val = (torch.from_numpy(x), torch.from_numpy(lab), torch.from_numpy(ups))
        x, lab, ups = self._val
        self.encoder.eval()
        try:
            zv = torch.cat([
                self.encoder(x[i : i + cfg.embed_batch_size].to(dev, self.dtype), views=True).cpu()
                for i in range(0, len(x), cfg.embed_batch_size)
            ])  # [n, 1+T, d]
        finally:
            self.encoder.train()
        sums, n_chunks = np.zeros(4), 0
        for i in range(0, len(x), cfg.batch_size):
            sl = slice(i, i + cfg.batch_size)
            if len(lab[sl]) < 2:
                continue
            t = metric_loss(zv[sl], lab[sl], ups[sl].to(zv.dtype), self.loss_cfg).as_floats()
            sums += [t["loss"], t["inv"], t["rad"], t["lab"]]
            n_chunks += 1
        sums /= max(n_chunks, 1)
        m = min(cfg.val_metric_patches, len(x))
        return {
            "val_loss": float(sums[0]), "val_inv": float(sums[1]),
            "val_rad": float(sums[2]), "val_lab": float(sums[3]),
            "val_overlap_pct": overlap_percent(zv[:m]),
            "val_mare": mare(zv[:m, 0], ups[:m].numpy(), self.loss_cfg.lambda_rad),
        }

    # ------------------------------------------------------------------ loop
    def run(self, resume: bool = False) -> Path:
        """Train from the start or the checkpoint to ``train.epochs``; write the model."""
        self.setup(resume)
        cfg, ctx = self.cfg, self.ctx
        steps = self.data.steps_per_epoch
        samples_per_step = cfg.batch_size  # a sample = a patch with its transformations
        with StopFlag() as flag:
            for epoch in range(self.epoch, cfg.epochs):
                lr = learning_rate_at(epoch, cfg.learning_rates, cfg.lr_boundaries)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                start = self.step if epoch == self.epoch else 0
                if start == 0:
                    self.partial = [0.0] * 6
                t0 = time.perf_counter() - self.partial[5]
                bar = tqdm(
                    total=steps, initial=start, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                    file=sys.stderr, leave=False, dynamic_ncols=True,
                    disable=not (self.progress and ctx.is_root),
                )
                for batch in self.data.batches(epoch, start):
                    t = self.train_step(batch)
                    self.partial[:5] = [
                        self.partial[0] + t["loss"], self.partial[1] + t["inv"],
                        self.partial[2] + t["rad"], self.partial[3] + t["lab"],
                        self.partial[4] + 1,
                    ]
                    bar.update(1)
                    bar.set_postfix(
                        {k: f"{v:.3g}" for k, v in t.items()}, refresh=False
                    )
                    if self._stop_requested(flag):
                        bar.close()
                        self.partial[5] = time.perf_counter() - t0
                        self._save(epoch, batch.step + 1)
                        ctx.barrier()
                        raise TrainingInterrupted(
                            f"stopped by {flag.signal_name or 'a signal'} at epoch {epoch + 1}, "
                            f"step {batch.step + 1}/{steps}; checkpoint {self.ckpt_path} "
                            "(resume with --resume)",
                            self.ckpt_path, epoch, batch.step + 1,
                        )
                bar.close()
                seconds = time.perf_counter() - t0
                n = max(self.partial[4], 1)
                row = {
                    "epoch": epoch, "lr": lr, "seconds": seconds,
                    "samples_per_s": steps * samples_per_step / max(seconds, 1e-9),
                    "train_loss": self.partial[0] / n, "train_inv": self.partial[1] / n,
                    "train_rad": self.partial[2] / n, "train_lab": self.partial[3] / n,
                }
                if ctx.is_root:
                    row.update(self.validate())
                    self.rows.append(row)
                    self.partial = [0.0] * 6
                    self._save(epoch + 1, 0)
                    write_log(self.out_dir / "train_log.csv", self.rows)
                    plot_curves(self.out_dir / "training_curve.png", self.rows)
                    if self.progress:
                        print(self._summary(row, cfg.epochs), file=sys.stderr)
                else:
                    self.partial = [0.0] * 6
            if ctx.is_root:
                stats = self.parent.stats if self.parent is not None else self.data.stats
                write_model_dir(
                    self.out_dir, self.encoder, stats, self.model_cfg, self.loss_cfg,
                    cfg, self.data.data_hash,
                    extra={"epochs_trained": cfg.epochs, "world_size": ctx.size,
                           "data_files": [str(p) for p in self.paths], **self._lineage()},
                )
                write_training_domain(self.out_dir, self.paths, str(ctx.device))
                version = Metric.load(self.out_dir, device="cpu").version
                write_complete_marker(self.out_dir, version)  # LAST: the model is whole
            ctx.barrier()
        self.data.close()
        return self.out_dir

    @staticmethod
    def _summary(row: dict[str, float], epochs: int) -> str:
        return (
            f"epoch {int(row['epoch']) + 1}/{epochs}: loss {row['train_loss']:.4g} "
            f"(inv {row['train_inv']:.3g} rad {row['train_rad']:.3g} lab {row['train_lab']:.3g}) "
            f"val {row['val_loss']:.4g} overlap {row['val_overlap_pct']:.3g}% "
            f"MARE {row['val_mare']:.3g} | {row['samples_per_s']:.0f} samples/s"
        )
