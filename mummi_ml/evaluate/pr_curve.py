"""AUC of the precision-recall curve of neighbourhoods in the metric space.

For every query point i (all N points), its neighbours (the other N - 1 points) are ranked by
distance; for k = 1 .. N-1 the k nearest are "retrieved" and a neighbour of the query's class is a
true positive. Per query: precision_i(k) = TP_i(k) / k, recall_i(k) = TP_i(k) / (n_c - 1) (n_c:
size of the query's class), accuracy_i(k) = (TP_i(k) + TN_i(k)) / (N - 1). The curves are averaged
over queries, and AUC = sum_k P(k) (R(k) - R(k-1)) with R(0) = 0 (the step-wise area, as in
average precision). Higher is better; about sum_c p_c^2 for a metric that ignores classes.

Ties: neighbours at equal distance are in no particular order, so the criterion takes the
expectation over a uniformly random order of every group of tied neighbours: within a group of
size g holding a positives starting at rank s, each rank s..s+g-1 holds a/g of a true positive.
The result is independent of point order. (Implementation: neighbours are ranked by float64
distance with the class-match flag stored in the key's lowest bit, so distances within one unit
in the last place of a float64 count as tied.)

Queries whose class has no other member (recall undefined) are left out of the averages.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch

from mummi_ml.evaluate.errors import EvaluationError
from mummi_ml.evaluate.pairs import as_points, block_distances, default_block_rows, pick_device
from mummi_ml.evaluate.sorting import sort_rows

__all__ = ["PRCurve", "pr_curve", "pr_auc"]

_INT64_MAX = torch.iinfo(torch.int64).max


@dataclass(frozen=True)
class PRCurve:
    """Neighbourhood retrieval curves, each of length N - 1 (index k-1 is neighbourhood size k).

    Attributes:
        auc: area under the mean precision-recall curve.
        k: neighbourhood sizes 1..N-1.
        precision, recall, accuracy: means over valid queries [N-1].
        class_labels: the distinct class values [C].
        class_precision, class_recall, class_accuracy: means over the queries of each class
            [C, N-1] (NaN for a class with a single member).
        class_counts: points per class [C].
        n_queries: queries averaged (points whose class has another member).
    """

    auc: float
    k: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    accuracy: np.ndarray
    class_labels: np.ndarray
    class_precision: np.ndarray
    class_recall: np.ndarray
    class_accuracy: np.ndarray
    class_counts: np.ndarray
    n_queries: int


def _tie_expectation(sorted_keys: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Replace each flag by the mean flag of its group of equal keys (ignoring the flag bit).

    sorted_keys, flags: [R, M] (rows sorted); returns [R, M] float64.
    """
    r, m = sorted_keys.shape
    g = sorted_keys >> 1
    new_group = torch.ones_like(g, dtype=torch.long)
    new_group[:, 1:] = (g[:, 1:] != g[:, :-1]).long()
    gid = torch.cumsum(new_group, 1) - 1  # [R, M] group index within the row
    flat = (gid + torch.arange(r, device=g.device).unsqueeze(1) * m).reshape(-1)
    sums = torch.zeros(r * m, dtype=torch.float64, device=g.device).index_add_(
        0, flat, flags.reshape(-1)
    )
    sizes = torch.bincount(flat, minlength=r * m).to(torch.float64)
    return (sums[flat] / sizes[flat]).reshape(r, m)


def _positive_rank_counts(
    zt: torch.Tensor, cls: np.ndarray, n_classes: int, block_rows: int
) -> torch.Tensor:
    """H [C, N-1]: for each query class c and rank k, the expected number of true positives at
    rank k summed over the queries of class c.

    Points are reordered by class so that a block of queries of one class has its positives in
    one contiguous column range; the class-match flag goes into the lowest bit of the int64 view
    of each (non-negative float64) distance, the rows are sorted, and the flags summed.
    """
    n = zt.shape[0]
    dev = zt.device
    order = np.argsort(cls, kind="stable")
    zp = zt[torch.from_numpy(order).to(dev)]
    bounds = np.searchsorted(cls[order], np.arange(n_classes + 1))  # class c: [b_c, b_c+1)
    low = 0 if sys.byteorder == "little" else 7  # byte holding the lowest bit of an int64
    hist = torch.zeros(n_classes, n - 1, dtype=torch.float64, device=dev)
    for c in range(n_classes):
        s_c, e_c = int(bounds[c]), int(bounds[c + 1])
        for i0 in range(s_c, e_c, block_rows):
            i1 = min(i0 + block_rows, e_c)
            b = i1 - i0
            d = block_distances(zp[i0:i1], zp).add_(0.0)  # [B, N] float64 >= 0 (+0.0, not -0.0)
            keys = d.view(torch.int64).bitwise_and_(~1)
            keys[:, s_c:e_c].bitwise_or_(1)  # same class
            keys[torch.arange(b, device=dev), torch.arange(i0, i1, device=dev)] = _INT64_MAX
            del d
            keys = sort_rows(keys)[:, : n - 1]  # [B, N-1] by distance; self (last) dropped
            flags = keys.view(torch.uint8)[:, low::8].bitwise_and(1)  # [B, N-1] uint8
            hist[c] += flags.sum(0, dtype=torch.int64).to(torch.float64)
            maybe_tied = (keys[:, 1:] - keys[:, :-1] <= 1).any(1)  # keys sorted: tie => gap <= 1
            if bool(maybe_tied.any()):
                k_t = keys[maybe_tied]
                g = k_t >> 1
                tied = (g[:, 1:] == g[:, :-1]).any(1)
                if bool(tied.any()):
                    k_t = k_t[tied]
                    f_t = (k_t & 1).to(torch.float64)
                    hist[c] += (_tie_expectation(k_t, f_t) - f_t).sum(0)
    return hist


def pr_curve(z, classes, device=None, block_rows: int | None = None) -> PRCurve:
    """Precision, recall and accuracy against neighbourhood size, and the PR AUC.

    Args:
        z: points, array [N, d] (N >= 2).
        classes: class label per point, integer array [N].
        device: torch device (default: CUDA if available, else CPU).
        block_rows: queries per block (default: from a ~0.75 GB working-memory budget).
    """
    dev = pick_device(device)
    zt = as_points(z, "z", dev)
    n = zt.shape[0]
    labels = np.asarray(classes)
    if labels.shape != (n,):
        raise EvaluationError(f"classes: expected shape ({n},) to match z, got {labels.shape}")
    if n < 2:
        raise EvaluationError(f"z: expected at least 2 points, got {n}")
    class_labels, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    c = len(class_labels)
    cls = inverse.astype(np.int64).reshape(-1)
    rows = block_rows or default_block_rows(n, bytes_per_row_entry=64)
    hist = _positive_rank_counts(zt, cls, c, rows).cpu().numpy()  # [C, N-1]

    k = np.arange(1, n, dtype=np.float64)
    tp = np.cumsum(hist, axis=1)  # [C, N-1] summed true positives at k
    counts_f = counts.astype(np.float64)
    valid = counts >= 2
    q_c = np.where(valid, counts_f, 0.0)  # queries averaged per class
    n_pos = np.maximum(counts_f - 1.0, 1.0)
    n_neg = n - counts_f
    q = q_c.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        cls_prec = tp / (k * counts_f[:, None])
        cls_rec = tp / (n_pos * counts_f)[:, None]
        cls_acc = (2 * tp + counts_f[:, None] * (n_neg[:, None] - k)) / (
            (n - 1) * counts_f[:, None]
        )
    for arr in (cls_prec, cls_rec, cls_acc):
        arr[~valid] = np.nan
    if q == 0:
        nan = np.full(n - 1, np.nan)
        return PRCurve(
            float("nan"), k, nan, nan, nan, class_labels, cls_prec, cls_rec, cls_acc, counts, 0
        )
    w = q_c / q  # weight of each class's mean in the all-query mean
    prec = np.nansum(cls_prec * w[:, None], axis=0)
    rec = np.nansum(cls_rec * w[:, None], axis=0)
    acc = np.nansum(cls_acc * w[:, None], axis=0)
    auc = float(np.sum(prec * np.diff(rec, prepend=0.0)))
    return PRCurve(auc, k, prec, rec, acc, class_labels, cls_prec, cls_rec, cls_acc, counts, int(q))


def pr_auc(z, classes, device=None, block_rows: int | None = None) -> float:
    """Area under the neighbourhood precision-recall curve (higher is better); see
    :func:`pr_curve` for the definition and the tie handling."""
    return pr_curve(z, classes, device, block_rows).auc
