"""Drift monitor: per window of arrivals, does the stream leave the metric's training distribution?

Pure computation (numpy), fed by the ranks that ingest. Reference: the optional ``drift`` summary
of the model's ``embedding_domain.json`` (:mod:`mummi_ml.metric.domain`): a reference sample of
training embeddings, the training set's own nearest-reference distance quantiles ``nn_q50`` /
``nn_q95``, its class shares, and ``tau`` (max d(x, rho(x)) over training patches).

Figures of a window (a :class:`DriftRecord`; all dimensionless):

- ``far_fraction``: fraction of arrivals whose nearest-reference distance exceeds the training
  ``nn_q95`` (in distribution ~0.05);
- ``median_ratio``: median nearest-reference distance / training ``nn_q50`` (~1 in distribution),
  read off a fixed log-spaced histogram (bins 2**(1/8) wide: the median is known to +-4.5 %);
- ``class_shift``: total variation distance between the window's class shares and the training
  shares, 0.5 * sum |p - q| in [0, 1];
- ``invariance_ratio``: max over a probe sample of the window of max_rho d(x, rho(x)) / ``tau``
  (> 1: arrivals on which the metric is less invariant than on any probed training patch). The
  probe sample is the ``probe_size`` arrivals of smallest hash priority (reservoir hash of the id),
  embedded patch by patch, so it is the same on any rank count.

Ranks and windows. Every rank accumulates a :class:`WindowStats` of its own arrivals
(:meth:`DriftMonitor.update`): integer counts, a histogram, and the probe candidates. Partials
combine by :meth:`WindowStats.merge` (counts add; probe = the ``probe_size`` smallest priorities
of the union), which is EXACT: the merged statistics equal those of one process that saw the same
arrivals, whatever the rank count and order. A window is GLOBAL: at each merge point (a round or
checkpoint), rank 0 merges the gathered partials; once ``n >= window`` it closes the window
(:meth:`DriftMonitor.close`), every rank :meth:`~DriftMonitor.reset`s its partial, and the record
is appended to ``drift.jsonl``. Until then ranks keep their partials (rank 0 only peeks). For a
checkpoint, rank 0 stores the merged partial (:meth:`DriftMonitor.to_state`) and the other ranks
reset; a restart on any rank count loads it on rank 0 (:meth:`DriftMonitor.from_state`).

Events: a figure above its threshold for ``patience`` consecutive windows emits ONE event (the
record's ``event`` is True); no further event until :meth:`DriftMonitor.rearm` (after a model
swap: :meth:`DriftMonitor.for_model` builds a fresh monitor for the new model anyway).

``drift.jsonl`` (one strict-JSON object per closed window, :meth:`DriftRecord.to_json`)::

    {"window": 3, "time": 1764770000.1, "model_version": "3f2a...", "n": 5000,
     "far_fraction": 0.31, "median_ratio": 1.9, "class_shares": [..4..],
     "train_class_shares": [..4..], "class_shift": 0.12, "invariance_ratio": 0.8,
     "probe_n": 16, "exceeded": ["far_fraction"], "event": true}

``median_ratio`` is null for an empty window, ``invariance_ratio`` null without a probe (no
embedder or no ``tau``), ``train_class_shares``/``class_shift`` null without training shares.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mummi_ml.jsonutil import json_dumps_strict
from mummi_ml.metric.domain import EmbeddingDomain, invariance_distances, nearest_distance
from mummi_ml.selector.drift_config import DriftConfig
from mummi_ml.selector.errors import SelectorError
from mummi_ml.selector.reservoir import hash_priority

__all__ = ["DriftConfig", "WindowStats", "DriftRecord", "DriftMonitor", "read_drift_log",
           "append_drift_log", "DRIFT_LOG", "HIST_EDGES"]

DRIFT_LOG = "drift.jsonl"
HIST_EDGES = 2.0 ** (np.arange(-64, 65) / 8.0)
"""Edges of the histogram of nearest-reference distance / training nn_q50 (2**-8 .. 2**8, 128
bins of factor 2**(1/8)); bin 0 and the last take everything below / above."""
_N_BINS = len(HIST_EDGES) + 1


@dataclass
class WindowStats:
    """Mergeable statistics of the arrivals of one window (see the module docstring).

    Attributes:
        n: arrivals.
        far: arrivals beyond the training nn_q95.
        hist: int64 ``[129]`` counts of nearest distance / nn_q50 over :data:`HIST_EDGES`.
        class_counts: int64 ``[n_classes]``.
        probe_prio: uint64 ``[<= probe_size]`` hash priorities of the probe sample (sorted).
        probe_ids: uint64, their patch ids.
        probe_value: float64, their max_rho d(x, rho(x)) (d_z units).
    """

    n: int
    far: int
    hist: np.ndarray
    class_counts: np.ndarray
    probe_prio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    probe_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    probe_value: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))

    @classmethod
    def empty(cls, n_classes: int) -> WindowStats:
        return cls(0, 0, np.zeros(_N_BINS, np.int64), np.zeros(n_classes, np.int64))

    @staticmethod
    def merge(parts: list[WindowStats], probe_size: int) -> WindowStats:
        """Exact combination of the partials of disjoint arrivals (order-independent)."""
        if not parts:
            raise SelectorError("drift: nothing to merge")
        prio = np.concatenate([p.probe_prio for p in parts])
        ids = np.concatenate([p.probe_ids for p in parts])
        val = np.concatenate([p.probe_value for p in parts])
        keep = np.lexsort((ids, prio))[:probe_size]
        return WindowStats(
            n=sum(p.n for p in parts), far=sum(p.far for p in parts),
            hist=np.sum([p.hist for p in parts], axis=0).astype(np.int64),
            class_counts=np.sum([p.class_counts for p in parts], axis=0).astype(np.int64),
            probe_prio=prio[keep], probe_ids=ids[keep], probe_value=val[keep],
        )

    def to_state(self) -> dict[str, np.ndarray]:
        """As numpy arrays (checkpoint)."""
        return {"n": np.array([self.n, self.far], np.int64), "hist": self.hist.copy(),
                "class_counts": self.class_counts.copy(), "probe_prio": self.probe_prio.copy(),
                "probe_ids": self.probe_ids.copy(), "probe_value": self.probe_value.copy()}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> WindowStats:
        try:
            nf = np.asarray(state["n"], np.int64)
            out = cls(int(nf[0]), int(nf[1]), np.asarray(state["hist"], np.int64),
                      np.asarray(state["class_counts"], np.int64),
                      np.asarray(state["probe_prio"], np.uint64),
                      np.asarray(state["probe_ids"], np.uint64),
                      np.asarray(state["probe_value"], np.float64))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise SelectorError(f"drift state: malformed ({type(exc).__name__}: {exc})") from None
        if out.hist.shape != (_N_BINS,) or int(out.hist.sum()) != out.n:
            raise SelectorError("drift state: histogram inconsistent with the count")
        return out

    def median_ratio(self) -> float | None:
        """Median of nearest distance / nn_q50 from the histogram (geometric interpolation in
        the median's bin), None for an empty window."""
        if self.n == 0:
            return None
        cum = np.cumsum(self.hist)
        half = self.n / 2.0
        b = int(np.searchsorted(cum, half))
        lo = HIST_EDGES[b - 1] if b > 0 else HIST_EDGES[0] / 2 ** 0.125
        hi = HIST_EDGES[b] if b < len(HIST_EDGES) else HIST_EDGES[-1] * 2 ** 0.125
        before = cum[b - 1] if b > 0 else 0
        frac = (half - before) / max(self.hist[b], 1)
        return float(lo * (hi / lo) ** frac)


@dataclass(frozen=True)
class DriftRecord:
    """One closed window (a line of ``drift.jsonl``, see the module docstring)."""

    window: int
    time: float
    model_version: str
    n: int
    far_fraction: float
    median_ratio: float | None
    class_shares: list[float]
    train_class_shares: list[float] | None
    class_shift: float | None
    invariance_ratio: float | None
    probe_n: int
    exceeded: list[str]
    event: bool

    def to_json(self) -> str:
        return json_dumps_strict(asdict(self))

    def summary(self) -> str:
        """One log line with the figures."""
        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.3g}"
        head = "DRIFT EVENT" if self.event else "drift"
        return (f"{head}: window {self.window} ({self.n} arrivals, model {self.model_version}): "
                f"far {f(self.far_fraction)}, median ratio {f(self.median_ratio)}, class shift "
                f"{f(self.class_shift)}, invariance {f(self.invariance_ratio)}"
                + (f"; above threshold: {', '.join(self.exceeded)}" if self.exceeded else ""))


class DriftMonitor:
    """Drift statistics of one model's stream on one rank (see the module docstring).

    Args:
        domain: the model's EmbeddingDomain WITH the drift reference.
        cfg: the ``selector.drift`` section.
        model_version: the model's version (recorded in each record).
        n_classes: classes of the stream (the selector's 4 classes or its queues).
        embed: raw patches ``[n, 37, 37, 14]`` -> embeddings ``[n, d]`` (for the probe), or None.
    """

    def __init__(self, domain: EmbeddingDomain, cfg: DriftConfig, model_version: str,
                 n_classes: int = 4,
                 embed: Callable[[np.ndarray], np.ndarray] | None = None):
        if not domain.has_drift_reference:
            raise SelectorError("drift: the model's embedding_domain.json has no drift "
                                "reference (retrain it with this version)")
        self.domain, self.cfg, self.model_version = domain, cfg, model_version
        self.n_classes, self.embed = int(n_classes), embed
        self.group = domain.transform_group or "paper"
        self.window_index = 0
        self.streak = 0
        self.fired = False
        self.stats = WindowStats.empty(self.n_classes)

    @classmethod
    def for_model(cls, metric: object, cfg: DriftConfig, n_classes: int = 4) -> DriftMonitor | None:
        """A monitor for a loaded :class:`~mummi_ml.metric.Metric` (its domain and embed), or
        None when it has no drift reference or ``cfg.enabled`` is False."""
        from mummi_ml.metric.domain import load_domain

        if not cfg.enabled:
            return None
        version = str(metric.version)  # type: ignore[attr-defined]
        dom = load_domain(metric.path, version)  # type: ignore[attr-defined]
        if dom is None or not dom.has_drift_reference:
            return None
        return cls(dom, cfg, version, n_classes, metric.embed)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ per rank
    def update(self, z: np.ndarray, classes: np.ndarray, ids: np.ndarray,
               x: np.ndarray | None = None) -> None:
        """Add accepted arrivals: embeddings ``z [n, d]`` (d_z), classes int ``[n]``, ids uint64
        ``[n]``, and their raw patches ``x [n, 37, 37, 14]`` (needed only for the probe)."""
        z = np.asarray(z, np.float64).reshape(len(ids), -1)
        classes = np.asarray(classes, np.int64)
        ids = np.asarray(ids, np.uint64)
        if not len(z) == len(classes) == len(ids):
            raise SelectorError("drift.update: z, classes, ids of different lengths")
        if len(ids) == 0:
            return
        dom = self.domain
        nn = nearest_distance(z, dom.reference)
        hist = np.bincount(np.searchsorted(HIST_EDGES, nn / max(dom.nn_q50, 1e-12)),
                           minlength=_N_BINS)
        part = WindowStats(len(ids), int((nn > dom.nn_q95).sum()), hist.astype(np.int64),
                           np.bincount(classes, minlength=self.n_classes).astype(np.int64))
        if x is not None and self.embed is not None and self.cfg.probe_size > 0 and dom.tau:
            prio = hash_priority(ids)
            have = self.stats.probe_prio
            k = self.cfg.probe_size
            bar = have[k - 1] if len(have) >= k else np.uint64(2**64 - 1)
            cand = np.flatnonzero(prio <= bar)
            cand = cand[np.lexsort((ids[cand], prio[cand]))][:k]
            if len(cand):
                part.probe_prio, part.probe_ids = prio[cand], ids[cand]
                part.probe_value = invariance_distances(self.embed, np.asarray(x)[cand],
                                                        self.group)
        self.stats = WindowStats.merge([self.stats, part], self.cfg.probe_size)

    def partial(self) -> WindowStats:
        """This rank's statistics since the last close/reset (gather these to rank 0)."""
        return self.stats

    def reset(self) -> None:
        """Start a new partial (after a close, or after handing the partial to rank 0)."""
        self.stats = WindowStats.empty(self.n_classes)

    # ------------------------------------------------------------------ rank 0
    def ready(self, merged: WindowStats) -> bool:
        """Whether the merged statistics fill a window."""
        return merged.n >= self.cfg.window

    def close(self, merged: WindowStats, now: float | None = None) -> DriftRecord:
        """The record of a full window (merged over ranks); advances the window count and the
        event state, and makes ``merged``'s arrivals leave this monitor's partial (reset)."""
        dom, cfg = self.domain, self.cfg
        n = max(merged.n, 1)
        far = merged.far / n
        med = merged.median_ratio()
        shares = merged.class_counts / n
        train = None if dom.class_shares is None else np.asarray(dom.class_shares, np.float64)
        shift = None
        if train is not None and len(train) == len(shares):
            shift = float(0.5 * np.abs(shares - train).sum())
        inv = None
        if len(merged.probe_value) and dom.tau:
            inv = float(merged.probe_value.max() / dom.tau)
        exceeded = [name for name, v, t in (
            ("far_fraction", far, cfg.max_far_fraction),
            ("median_ratio", med, cfg.max_median_ratio),
            ("class_shift", shift, cfg.max_class_shift),
            ("invariance_ratio", inv, cfg.max_invariance_ratio),
        ) if v is not None and math.isfinite(v) and v > t]
        self.streak = self.streak + 1 if exceeded else 0
        event = bool(exceeded) and self.streak >= cfg.patience and not self.fired
        self.fired = self.fired or event
        rec = DriftRecord(
            window=self.window_index, time=time.time() if now is None else float(now),
            model_version=self.model_version, n=merged.n, far_fraction=float(far),
            median_ratio=med, class_shares=[float(s) for s in shares],
            train_class_shares=None if train is None else [float(s) for s in train],
            class_shift=shift, invariance_ratio=inv, probe_n=len(merged.probe_value),
            exceeded=exceeded, event=event,
        )
        self.window_index += 1
        self.reset()
        return rec

    def rearm(self) -> None:
        """Allow a new event (e.g. after a retraining was started for the last one)."""
        self.fired, self.streak = False, 0

    def to_state(self) -> dict[str, np.ndarray]:
        """Checkpoint state: the (merged, on rank 0) partial plus the window/event counters."""
        st = {f"stats_{k}": v for k, v in self.stats.to_state().items()}
        st["counters"] = np.array([self.window_index, self.streak, int(self.fired)], np.int64)
        return st

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`to_state` (on a monitor built for the same model)."""
        try:
            c = np.asarray(state["counters"], np.int64)
            self.window_index, self.streak, self.fired = int(c[0]), int(c[1]), bool(c[2])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise SelectorError(f"drift state: malformed ({type(exc).__name__})") from None
        stats = WindowStats.from_state({k[6:]: v for k, v in state.items()
                                        if k.startswith("stats_")})
        if stats.class_counts.shape != (self.n_classes,):
            raise SelectorError("drift state: another number of classes")
        self.stats = stats


def append_drift_log(state_dir: str | Path, record: DriftRecord) -> None:
    """Append a record to ``STATE/drift.jsonl`` (flushed; a torn last line is skipped on read)."""
    with open(Path(state_dir) / DRIFT_LOG, "a") as fh:
        fh.write(record.to_json() + "\n")
        fh.flush()


def read_drift_log(path: str | Path) -> list[DriftRecord]:
    """Every complete record of a ``drift.jsonl`` (malformed lines skipped); [] if absent."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(DriftRecord(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return out
