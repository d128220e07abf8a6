"""The encoder of the paper (appendix A.2): a patch ``[37, 37, 14]`` to a point ``z`` in R^d.

    X -> SeparableConv2D(6, depth multiplier 6, kernel 1, relu) -> BatchNorm
      -> Conv2D(16, 3, stride 2, relu) -> BatchNorm
      -> Conv2D(16, 3, stride 2, relu) -> BatchNorm
      -> Flatten -> Dense(d) -> BatchNorm -> z

Keras semantics are kept: 'valid' padding (37 -> 37 -> 18 -> 8), the separable convolution is a
depthwise 1x1 (14 -> 84 channels, no bias) followed by a pointwise 1x1 (84 -> 6, bias), Flatten
runs over (rows, cols, channels), BatchNorm eps 1e-3 and momentum 0.99 (Keras convention).

Two exact shortcuts make it fast on channel-last input:

- the depthwise and pointwise 1x1 convolutions (and the per-channel standardisation, held in the
  buffers ``mean``/``std``) are all affine per pixel, so they are one ``[14, 6]`` matrix product
  on the channel-last pixels, computed from the separate parameters on every call (gradients
  reach ``depthwise`` and ``pointwise`` unchanged);
- a per-pixel map commutes with rotations and reflections, so :meth:`Encoder.forward_views`
  applies the transformations to the 6-channel output of that first stage instead of to the
  14-channel input (BatchNorm statistics are the same for any pixel permutation).

The encoder takes RAW concentrations; set the training-set statistics with :meth:`set_stats`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mummi_ml.metric.batchnorm import GlobalBatchNorm
from mummi_ml.metric.transforms import pixel_permutations
from mummi_ml.patch.constants import N_CHANNELS, PATCH_SIZE

__all__ = ["Encoder"]


def _valid(n: int, k: int, s: int) -> int:
    return (n - k) // s + 1


class Encoder(nn.Module):
    """Patches ``[N, 37, 37, 14]`` (float32, raw, channel-last) -> ``z`` ``[N, latent_dim]``.

    Args:
        latent_dim: d, the dimension of the metric space.
        depth_multiplier: outputs per input channel of the depthwise convolution (paper: 6).
        sep_filters: filters of the separable convolution (paper: 6).
        conv_filters: filters of the two strided 3x3 convolutions (paper: 16).
        bn_momentum: BatchNorm momentum, torch convention (Keras' 0.99 is 0.01 here).
        bn_eps: BatchNorm epsilon (Keras default 1e-3).
        transform_group: ``paper`` (5 transformations) or ``dihedral`` (7), for forward_views.
    """

    def __init__(
        self,
        latent_dim: int = 9,
        depth_multiplier: int = 6,
        sep_filters: int = 6,
        conv_filters: int = 16,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-3,
        transform_group: str = "paper",
    ):
        super().__init__()
        c = N_CHANNELS
        self.latent_dim = int(latent_dim)
        self.transform_group = transform_group
        self.register_buffer("mean", torch.zeros(c))
        self.register_buffer("std", torch.ones(c))
        # SeparableConv2D: depthwise [C, M] (no bias) then pointwise [C*M, F] + bias
        self.depthwise = nn.Parameter(torch.empty(c, depth_multiplier))
        self.pointwise = nn.Parameter(torch.empty(c * depth_multiplier, sep_filters))
        self.sep_bias = nn.Parameter(torch.zeros(sep_filters))
        self.bn1 = GlobalBatchNorm(sep_filters, bn_eps, bn_momentum)
        self.conv2 = nn.Conv2d(sep_filters, conv_filters, 3, stride=2)
        self.bn2 = GlobalBatchNorm(conv_filters, bn_eps, bn_momentum)
        self.conv3 = nn.Conv2d(conv_filters, conv_filters, 3, stride=2)
        self.bn3 = GlobalBatchNorm(conv_filters, bn_eps, bn_momentum)
        side = _valid(_valid(PATCH_SIZE, 3, 2), 3, 2)  # 37 -> 18 -> 8
        self.dense = nn.Linear(side * side * conv_filters, latent_dim)
        self.bn4 = GlobalBatchNorm(latent_dim, bn_eps, bn_momentum)
        self._init_keras()
        self._tables: dict = {}

    def _init_keras(self) -> None:
        """Glorot-uniform kernels and zero biases, as Keras initialises these layers."""
        c, m = self.depthwise.shape
        nn.init.uniform_(self.depthwise, -np.sqrt(6 / (1 + m)), np.sqrt(6 / (1 + m)))
        nn.init.xavier_uniform_(self.pointwise)
        for layer in (self.conv2, self.conv3, self.dense):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    @torch.no_grad()
    def set_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Per-channel mean and std ``[14]`` of the training set (raw units) used to standardise."""
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        std_t = torch.as_tensor(np.asarray(std, dtype=np.float32))
        if mean_t.shape != (N_CHANNELS,) or std_t.shape != (N_CHANNELS,):
            raise ValueError(
                f"set_stats: expected mean and std of shape [{N_CHANNELS}], "
                f"got {list(mean_t.shape)} and {list(std_t.shape)}"
            )
        if not bool(torch.all(std_t > 0)):
            raise ValueError(f"set_stats: std must be > 0 in every channel, got {std_t.tolist()}")
        self.mean.copy_(mean_t)
        self.std.copy_(std_t)

    def _first_stage(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise + separable 1x1 conv + relu: ``[N, 37, 37, 14]`` -> ``[N, 37, 37, F]``."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (PATCH_SIZE, PATCH_SIZE, N_CHANNELS):
            raise ValueError(
                f"x: expected [N, {PATCH_SIZE}, {PATCH_SIZE}, {N_CHANNELS}] channel-last, "
                f"got {list(x.shape)}"
            )
        c, m = self.depthwise.shape
        w = (self.depthwise.reshape(c * m, 1) * self.pointwise).reshape(c, m, -1).sum(1)  # [C, F]
        w = w / self.std[:, None]
        b = self.sep_bias - (self.mean / self.std) @ (w * self.std[:, None])
        return torch.relu(x @ w + b)  # [N, 37, 37, F]

    def _rest(self, h: torch.Tensor) -> torch.Tensor:
        """``[N, F, 37, 37]`` (contiguous NCHW) -> ``[N, d]``."""
        h = self.bn1(h)  # [N, F, 37, 37]
        h = self.bn2(torch.relu(self.conv2(h)))  # [N, 16, 18, 18]
        h = self.bn3(torch.relu(self.conv3(h)))  # [N, 16, 8, 8]
        h = h.permute(0, 2, 3, 1).flatten(1)  # Keras Flatten order (rows, cols, channels)
        return self.bn4(self.dense(h))  # [N, d]

    def forward(self, x: torch.Tensor, views: bool = False) -> torch.Tensor:
        """Embed patches: ``x`` float32 ``[N, 37, 37, 14]`` raw, channel-last -> ``[N, d]``,
        or ``[N, 1 + T, d]`` with ``views=True`` (see :meth:`forward_views`)."""
        if views:
            return self.forward_views(x)
        if not self.training and not torch.is_grad_enabled():
            return self._folded_forward(x)
        h = self._first_stage(x)  # [N, 37, 37, F]
        return self._rest(h.permute(0, 3, 1, 2).contiguous())

    @staticmethod
    def _bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode BatchNorm as ``y = a * x + c`` per channel."""
        a = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        return a, bn.bias - bn.running_mean * a

    def _folded_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: each eval-mode BatchNorm folded into the next linear layer (exact up to
        rounding; 'valid' padding keeps the fold exact), convolutions on the channels-last data
        as it comes (no transpose of the input). ``[N, 37, 37, 14]`` -> ``[N, d]``."""
        h = self._first_stage(x).permute(0, 3, 1, 2)  # [N, F, 37, 37] channels-last strides
        for bn, conv in ((self.bn1, self.conv2), (self.bn2, self.conv3)):
            a, c = self._bn_affine(bn)
            w = conv.weight * a[None, :, None, None]
            b = conv.bias + (conv.weight * c[None, :, None, None]).sum((1, 2, 3))
            h = torch.relu_(nn.functional.conv2d(h, w, b, stride=2))  # [N, 16, 18|8, 18|8]
        a, c = self._bn_affine(self.bn3)
        n_pix = self.dense.in_features // a.numel()
        a, c = a.repeat(n_pix), c.repeat(n_pix)  # Flatten order (rows, cols, channels)
        w, b = self.dense.weight * a[None, :], self.dense.bias + self.dense.weight @ c
        z = nn.functional.linear(h.permute(0, 2, 3, 1).flatten(1), w, b)  # [N, d]
        a, c = self._bn_affine(self.bn4)
        return z * a + c

    def forward_views(self, x: torch.Tensor) -> torch.Tensor:
        """Embed every patch and its transformations (online augmentation).

        Args:
            x: float32 ``[N, 37, 37, 14]`` raw, channel-last.

        Returns:
            ``[N, 1 + T, d]``: view 0 is the patch itself, views 1..T its transformations in the
            order of ``TRANSFORM_GROUPS[transform_group]`` (T = 5 or 7).
        """
        h = self._first_stage(x)  # [N, 37, 37, F]
        n, f = h.shape[0], h.shape[-1]
        table = self._pixel_table(h.device)  # [1+T, 37*37]
        k = table.shape[0]
        v = h.reshape(n, -1, f)[:, table]  # [N, 1+T, 37*37, F]: one gather for all views
        v = v.permute(0, 1, 3, 2).reshape(n * k, f, PATCH_SIZE, PATCH_SIZE)  # [N*(1+T), F, 37, 37]
        return self._rest(v).reshape(n, k, -1)

    def _pixel_table(self, device: torch.device) -> torch.Tensor:
        """``[1 + T, 37*37]`` int64: source pixel of each pixel of each view (identity first)."""
        cached = self._tables.get((self.transform_group, device))
        if cached is None:
            cached = pixel_permutations(self.transform_group, PATCH_SIZE).to(device)
            self._tables[(self.transform_group, device)] = cached
        return cached
