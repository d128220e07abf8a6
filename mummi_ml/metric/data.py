"""Training data: split, standardisation statistics, cached radial profiles, and batches.

:class:`TrainingData` prepares once per run (on rank 0; other ranks wait and read the cache):

- the seeded train/validation split (:mod:`mummi_ml.metric.split`);
- per-channel statistics over the TRAINING split only (streamed; files may exceed memory);
- Upsilon (radial profiles of the standardised patches) for every patch, computed once and
  cached as ``.npy`` under ``cache_dir`` (memory-mapped: ranks on a node share the pages).

:meth:`TrainingData.batches` then yields, for each step of an epoch, THIS rank's share of the global
batch (raw ``x``) together with the labels and Upsilon of the whole global batch (cheap; the loss
is computed on the global batch, see :mod:`mummi_ml.parallel.collectives`). Patches are held in
memory when the training split fits in ``cache_mb`` (each rank keeps a copy), else each rank
reads from the HDF5 files only the patches of its share, one window of batches at a time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mummi_ml.durable import atomic_path
from mummi_ml.metric.config import ModelConfig, TrainConfig
from mummi_ml.metric.errors import MetricError
from mummi_ml.metric.split import Split, epoch_order, split_indices
from mummi_ml.patch import (
    PATCH_SHAPE,
    ChannelStats,
    PatchDataset,
    patch_class,
    radial_profiles,
)

__all__ = ["TrainingData", "Batch", "data_fingerprint"]

_READ_BATCH = 1024


def data_fingerprint(dataset: PatchDataset) -> str:
    """Short sha256 of the data files' identity: names, patch counts, ids and labels.

    Cheap (reads no patch pixels) and stable across copies of the files.
    """
    h = hashlib.sha256()
    for f in dataset.files:
        h.update(Path(f.path).name.encode())
        h.update(str(len(f)).encode())
        h.update(np.ascontiguousarray(f.field("ids")).tobytes())
        h.update(np.ascontiguousarray(f.field("y")).tobytes())
    return h.hexdigest()[:16]


@dataclass
class Batch:
    """One training step.

    Attributes:
        step: index of the step within the epoch.
        x: float32 ``[B / size, 37, 37, 14]`` raw patches of THIS rank's share.
        labels: int64 ``[B]`` classes of the whole global batch (rank order).
        upsilon: float32 ``[B, F]`` radial profiles of the global batch.
    """

    step: int
    x: np.ndarray
    labels: np.ndarray
    upsilon: np.ndarray


def _atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path, fsync=False) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr)  # a file object: np.save adds no ".npy"


class TrainingData:
    """The data of one training run.

    Args:
        paths: HDF5 patch files (read as one dataset, in order).
        model_cfg: for the profile channels.
        train_cfg: split, seed, batch size, shuffle and caching options.
        cache_dir: where statistics and Upsilon are cached (created).
        rank, size: this rank and the number of ranks.
        barrier: called between rank 0's preparation and the others' reading (None: one rank).
        stats: a fixed standardisation (fine-tuning: the parent model's, the one it embeds
            with); None: computed from the training split. Upsilon, the L_rad target, is the
            radial profiles of patches standardised with these statistics, as in evaluation.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        model_cfg: ModelConfig,
        train_cfg: TrainConfig,
        cache_dir: Path,
        rank: int = 0,
        size: int = 1,
        barrier=None,
        stats: ChannelStats | None = None,
    ):
        self.cfg = train_cfg
        self._fixed_stats = stats
        self.rank, self.size = rank, size
        if train_cfg.batch_size % size:
            raise MetricError(
                f"train.batch_size: the global batch ({train_cfg.batch_size}) must be a multiple "
                f"of the number of ranks ({size})"
            )
        self.local_batch = train_cfg.batch_size // size
        self.paths = [Path(p) for p in paths]
        self.dataset = PatchDataset(self.paths)
        n = len(self.dataset)
        self.data_hash = data_fingerprint(self.dataset)
        self.classes = patch_class(self.dataset.field("y")) if n else np.zeros(0, np.int64)
        replica = self.dataset.field("replica") if train_cfg.split_by == "replica" else None
        self.split: Split = split_indices(
            n, replica, train_cfg.validation_fraction, train_cfg.split_by, train_cfg.seed
        )
        if len(self.split.train) < train_cfg.batch_size:
            raise MetricError(
                f"data: {len(self.split.train)} training patches, fewer than one global batch "
                f"(train.batch_size = {train_cfg.batch_size})"
            )
        self.channels = [int(c) for c in model_cfg.profile_channels]
        key = hashlib.sha256(
            json.dumps(
                [self.data_hash, train_cfg.seed, train_cfg.validation_fraction,
                 train_cfg.split_by, self.channels]
                + ([] if stats is None else [stats.mean.tolist(), stats.std.tolist()])
            ).encode()
        ).hexdigest()[:12]
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.stats_path = cache_dir / f"stats-{key}.json"
        self.upsilon_path = cache_dir / f"upsilon-{key}.npy"
        if rank == 0:
            self._prepare()
        if barrier is not None:
            barrier()
        self.stats = ChannelStats.load(self.stats_path)
        self.upsilon = np.load(self.upsilon_path, mmap_mode="r")  # [N, F]
        if self.upsilon.shape[0] != n:
            raise MetricError(f"{self.upsilon_path}: cache for {self.upsilon.shape[0]} patches, "
                              f"data has {n}; delete the cache directory")
        patch_bytes = int(np.prod(PATCH_SHAPE)) * 4
        self.in_memory = len(self.split.train) * patch_bytes <= train_cfg.cache_mb * 2**20
        self._x_train: np.ndarray | None = None

    # ---------------------------------------------------------------- preparation (rank 0)
    def _iter_x(self, keep: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream ``(global indices, x)`` of the patches where ``keep`` is True, file order."""
        lo = 0
        for b in self.dataset.iter_batches(_READ_BATCH):
            hi = lo + len(b)
            sel = np.flatnonzero(keep[lo:hi])
            if sel.size:
                yield lo + sel, b.x[sel]
            lo = hi

    def _prepare(self) -> None:
        n = len(self.dataset)
        if not self.stats_path.exists():
            if self._fixed_stats is not None:
                stats = self._fixed_stats
            else:
                is_train = np.zeros(n, dtype=bool)
                is_train[self.split.train] = True
                stats = ChannelStats.from_batches(x for _, x in self._iter_x(is_train))
            stats.save(self.stats_path)
        stats = ChannelStats.load(self.stats_path)
        if not self.upsilon_path.exists():
            n_feat = 2 * (PATCH_SHAPE[0] // 2 + 1) * len(self.channels)
            ups = np.empty((n, n_feat), dtype=np.float32)
            for idx, x in self._iter_x(np.ones(n, dtype=bool)):
                ups[idx] = radial_profiles(stats.standardise(x), self.channels)
            _atomic_save_npy(self.upsilon_path, ups)

    # ---------------------------------------------------------------- batches
    @property
    def steps_per_epoch(self) -> int:
        """Global batches per epoch (the last incomplete batch is dropped)."""
        return len(self.split.train) // self.cfg.batch_size

    def order(self, epoch: int) -> np.ndarray:
        """Dataset indices of the training patches in the order of ``epoch``."""
        c = self.cfg
        pos = epoch_order(
            len(self.split.train), epoch, c.seed, c.shuffle, c.shuffle_block,
            16 * c.shuffle_block,
        )
        return self.split.train[pos]

    def _load_train(self) -> np.ndarray:
        if self._x_train is None:
            x = np.empty((len(self.split.train), *PATCH_SHAPE), dtype=np.float32)
            is_train = np.zeros(len(self.dataset), dtype=bool)
            is_train[self.split.train] = True
            pos = 0
            for _, xb in self._iter_x(is_train):
                x[pos : pos + len(xb)] = xb
                pos += len(xb)
            self._x_train = x
        return self._x_train

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """This rank's batches of ``epoch`` from ``start_step`` on (see :class:`Batch`)."""
        order = self.order(epoch)
        bsz, lb, r = self.cfg.batch_size, self.local_batch, self.rank
        steps = self.steps_per_epoch
        if self.in_memory:
            x_all = self._load_train()
            train_pos = np.empty(len(self.dataset), dtype=np.int64)
            train_pos[self.split.train] = np.arange(len(self.split.train))
        window = self.cfg.stream_window
        for w0 in range(start_step, steps, window):
            w1 = min(w0 + window, steps)
            glob = order[w0 * bsz : w1 * bsz].reshape(w1 - w0, bsz)  # [W, B] dataset indices
            mine = glob[:, r * lb : (r + 1) * lb]  # [W, B/size]
            if self.in_memory:
                xw = x_all[train_pos[mine]]  # [W, b, 37, 37, 14]
            else:
                xw = self.dataset[mine.ravel()].x.reshape(w1 - w0, lb, *PATCH_SHAPE)
            for k in range(w1 - w0):
                g = glob[k]
                yield Batch(
                    step=w0 + k,
                    x=xw[k],
                    labels=self.classes[g],
                    upsilon=np.asarray(self.upsilon[g]),
                )

    def validation_set(self, max_patches: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x [n,37,37,14] raw, labels [n], upsilon [n, F])`` of up to ``max_patches``
        validation patches (a seeded subset when there are more)."""
        val = self.split.val
        if len(val) > max_patches:
            rng = np.random.default_rng([self.cfg.seed, 0x7A1])
            val = np.sort(rng.choice(val, max_patches, replace=False))
        x = self.dataset[val].x
        return x, self.classes[val], np.asarray(self.upsilon[val])

    def close(self) -> None:
        """Close the patch files."""
        self.dataset.close()
