"""Reference: the metric's encoder and losses as they were before issue 15 (commit df5fe67).

Kept verbatim (only imports and names adapted) so that tests can check that the faster
implementation gives the same loss values and gradients within float tolerance. Not used by
the package."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mummi_ml.metric.transforms import apply_transform, pixel_permutations
from mummi_ml.patch import TRANSFORM_GROUPS
from mummi_ml.patch.constants import N_CHANNELS, PATCH_SIZE

EPS = 1e-12


def pairwise_distances(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean distances between the rows of ``a`` ``[N, d]`` and ``b`` ``[M, d]`` -> ``[N, M]``.

    Computed from explicit differences (exact, no cancellation), with squared distances floored at
    :data:`EPS` so that the gradient is finite (zero) where two points coincide.
    """
    b = a if b is None else b
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"pairwise_distances: expected [N, d] and [M, d], got {list(a.shape)} "
                         f"and {list(b.shape)}")
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)  # [N, M]
    return torch.sqrt(d2.clamp_min(EPS))


def invariance_loss(z: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Batch-hard triplet loss over patches and their transformations.

    For each patch i (the anchor, its view 0): the hardest positive is its farthest
    transformation, ``d_pos(i) = max_t d(z[i, 0], z[i, t])``; the hardest negative the nearest view
    of any other patch, ``d_neg(i) = min_{j != i, v} d(z[i, 0], z[j, v])``.
    ``L = mean_i max(0, alpha + d_pos(i) - d_neg(i))``.

    Args:
        z: ``[B, 1 + T, d]`` embeddings; view 0 is the untransformed patch.
        alpha: margin alpha_inv (units of d_z).

    Returns:
        Scalar tensor; 0 (with zero gradient) when the batch has a single patch or no
        transformations (no valid triplet).
    """
    if z.dim() != 3:
        raise ValueError(f"invariance_loss: z expected [B, 1+T, d], got {list(z.shape)}")
    b, k, d = z.shape
    if b < 2 or k < 2:
        return z.sum() * 0.0
    anchors = z[:, 0]  # [B, d]
    d_all = pairwise_distances(anchors, z.reshape(b * k, d)).reshape(b, b, k)  # [B, B, 1+T]
    own = torch.eye(b, dtype=torch.bool, device=z.device)  # [B, B]
    d_pos = d_all[own][:, 1:].amax(dim=1)  # [B]
    d_neg = d_all.masked_fill(own[:, :, None], float("inf")).amin(dim=(1, 2))  # [B]
    return torch.relu(alpha + d_pos - d_neg).mean()


def label_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 8.0,
    mining: Literal["batch_hard", "batch_all"] = "batch_hard",
) -> torch.Tensor:
    """Triplet loss over class labels.

    - ``batch_hard``: for each anchor a with at least one positive (same class, p != a) and one
      negative (other class): ``max(0, alpha + max_p d(a, p) - min_n d(a, n))``, averaged over
      those anchors.
    - ``batch_all``: ``max(0, alpha + d(a, p) - d(a, n))`` averaged over every valid triplet
      (y_a == y_p, a != p, y_n != y_a).

    Args:
        z: ``[B, d]`` embeddings (untransformed patches).
        labels: int ``[B]`` class of each patch.
        alpha: margin alpha_lab (units of d_z).
        mining: ``batch_hard`` or ``batch_all``.

    Returns:
        Scalar tensor; 0 (zero gradient) when no valid triplet exists (e.g. a single class).
    """
    if z.dim() != 2 or labels.shape != (z.shape[0],):
        raise ValueError(
            f"label_loss: expected z [B, d] and labels [B], got {list(z.shape)} and "
            f"{list(labels.shape)}"
        )
    if mining not in ("batch_hard", "batch_all"):
        raise ValueError(f"label_loss: mining must be 'batch_hard' or 'batch_all', got {mining!r}")
    dist = pairwise_distances(z)  # [B, B]
    same = labels[:, None] == labels[None, :]  # [B, B]
    eye = torch.eye(len(labels), dtype=torch.bool, device=z.device)
    pos = same & ~eye
    neg = ~same
    if mining == "batch_hard":
        valid = pos.any(1) & neg.any(1)  # [B]
        if not bool(valid.any()):
            return z.sum() * 0.0
        d_pos = dist.masked_fill(~pos, float("-inf")).amax(1)  # [B]
        d_neg = dist.masked_fill(~neg, float("inf")).amin(1)  # [B]
        return torch.relu(alpha + d_pos[valid] - d_neg[valid]).mean()
    triplets = pos[:, :, None] & neg[:, None, :]  # [B(a), B(p), B(n)]
    if not bool(triplets.any()):
        return z.sum() * 0.0
    losses = torch.relu(alpha + dist[:, :, None] - dist[:, None, :])  # [B, B, B]
    return losses[triplets].mean()


def radial_loss(z: torch.Tensor, upsilon: torch.Tensor, lambda_rad: float = 0.1) -> torch.Tensor:
    """``mean over pairs i < j of |d_z(i, j) - lambda_rad * d_Upsilon(i, j)|``.

    Args:
        z: ``[B, d]`` embeddings (untransformed patches).
        upsilon: ``[B, F]`` radial profiles of the same patches (standardised units), F = 38 x
            channels.
        lambda_rad: proportionality factor (units of d_z per unit of d_Upsilon).

    Returns:
        Scalar tensor; 0 (zero gradient) for fewer than two patches.
    """
    if z.dim() != 2 or upsilon.dim() != 2 or upsilon.shape[0] != z.shape[0]:
        raise ValueError(
            f"radial_loss: expected z [B, d] and upsilon [B, F], got {list(z.shape)} and "
            f"{list(upsilon.shape)}"
        )
    b = z.shape[0]
    if b < 2:
        return z.sum() * 0.0
    iu = torch.triu_indices(b, b, offset=1, device=z.device)
    d_z = pairwise_distances(z)[iu[0], iu[1]]  # [B(B-1)/2]
    with torch.no_grad():
        d_u = torch.cdist(upsilon.double(), upsilon.double())[iu[0], iu[1]].to(z.dtype)
    return (d_z - lambda_rad * d_u).abs().mean()


def metric_loss(z_views: torch.Tensor, labels: torch.Tensor, upsilon: torch.Tensor | None,
                cfg) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, inv, rad, lab)`` as ``mummi_ml.metric.losses.combined.metric_loss`` was."""
    z = z_views[:, 0]  # [B, d]
    zero = z.sum() * 0.0
    inv = invariance_loss(z_views, cfg.alpha_inv) if cfg.w_inv > 0 else zero
    rad = radial_loss(z, upsilon, cfg.lambda_rad) if cfg.w_rad > 0 else zero
    lab = label_loss(z, labels, cfg.alpha_lab, cfg.label_mining) if cfg.w_lab > 0 else zero
    total = cfg.w_inv * inv + cfg.w_rad * rad + cfg.w_lab * lab
    return total, inv, rad, lab


# ---- the encoder's training-mode forward pass, on the parameters of a (new) Encoder ------------


def _batch_norm_train(bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """GlobalBatchNorm's training-mode formula on one rank (running statistics untouched)."""
    dims = [0] if x.dim() == 2 else [0, 2, 3]
    shape = [1, -1] + [1] * (x.dim() - 2)
    n = x.numel() // x.shape[1]
    mean = x.sum(dim=dims) / n
    var = ((x - mean.view(shape)) ** 2).sum(dim=dims) / n
    xhat = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
    return xhat * bn.weight.view(shape) + bn.bias.view(shape)


def _first_stage(enc: nn.Module, x: torch.Tensor) -> torch.Tensor:
    c, m = enc.depthwise.shape
    w = (enc.depthwise.reshape(c * m, 1) * enc.pointwise).reshape(c, m, -1).sum(1)  # [C, F]
    w = w / enc.std[:, None]
    b = enc.sep_bias - (enc.mean / enc.std) @ (w * enc.std[:, None])
    return torch.relu(x @ w + b)  # [N, 37, 37, F]


def _rest(enc: nn.Module, h: torch.Tensor) -> torch.Tensor:
    h = _batch_norm_train(enc.bn1, h)
    h = _batch_norm_train(enc.bn2, torch.relu(enc.conv2(h)))
    h = _batch_norm_train(enc.bn3, torch.relu(enc.conv3(h)))
    h = h.permute(0, 2, 3, 1).flatten(1)
    return _batch_norm_train(enc.bn4, enc.dense(h))


def forward_views(enc: nn.Module, x: torch.Tensor, group: str = "paper") -> torch.Tensor:
    """The training-mode ``Encoder.forward_views`` as it was: ``[N, 37, 37, 14]`` ->
    ``[N, 1 + T, d]``, BatchNorm statistics over all N (1 + T) views."""
    assert x.dim() == 4 and tuple(x.shape[1:]) == (PATCH_SIZE, PATCH_SIZE, N_CHANNELS)
    h = _first_stage(enc, x)
    n, f = h.shape[0], h.shape[-1]
    table = pixel_permutations(group, PATCH_SIZE)
    k = table.shape[0]
    v = h.reshape(n, -1, f)[:, table]
    v = v.permute(0, 1, 3, 2).reshape(n * k, f, PATCH_SIZE, PATCH_SIZE)
    return _rest(enc, v).reshape(n, k, -1)


def views_of(x: torch.Tensor, group: str) -> torch.Tensor:
    """``[N, 37, 37, C]`` -> ``[N, 1 + T, 37, 37, C]``: each patch then its transformations."""
    return torch.stack([x] + [apply_transform(x, t) for t in TRANSFORM_GROUPS[group]], 1)


def views_before_bn4(enc: nn.Module, x: torch.Tensor, group: str) -> torch.Tensor:
    """Brute force: every view of every patch, explicitly transformed, through the layers up
    to the Dense output (before BatchNorm 4), statistics over all views: ``[N, 1 + T, d]``."""
    xs = views_of(x, group)
    h = _first_stage(enc, xs.reshape(-1, *x.shape[1:]))
    h = _batch_norm_train(enc.bn1, h.permute(0, 3, 1, 2).contiguous())
    h = _batch_norm_train(enc.bn2, torch.relu(enc.conv2(h)))
    h = _batch_norm_train(enc.bn3, torch.relu(enc.conv3(h)))
    return enc.dense(h.permute(0, 2, 3, 1).flatten(1)).reshape(len(x), xs.shape[1], -1)


def group_forward(enc: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Brute-force training-mode group model: mean over the 8 explicitly transformed views of
    the Dense output, then BatchNorm 4 over the patches: ``[N, d]``."""
    return _batch_norm_train(enc.bn4, views_before_bn4(enc, x, "dihedral").mean(1))


def forward(enc: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The training-mode ``Encoder.forward`` as it was: ``[N, 37, 37, 14]`` -> ``[N, d]``."""
    h = _first_stage(enc, x)
    return _rest(enc, h.permute(0, 3, 1, 2).contiguous())


__all__ = ["pairwise_distances", "invariance_loss", "label_loss", "radial_loss", "metric_loss",
           "forward_views", "forward", "group_forward", "views_before_bn4",
           "views_of"]
