"""The model directory, a stable interface: ``weights.pt`` + ``metric.json``, and :class:`Metric`.

Layout of a model directory (also the training run directory)::

    metric.json     format, package version, config (model/loss/train), standardisation,
                    profile channels, lambda_rad, latent_dim, data fingerprint, weights hash
    weights.pt      the encoder's state dict (tensors only; torch.load(weights_only=True))

``Metric.load(DIR).embed(x)`` maps RAW patches ``[N, 37, 37, 14]`` to ``[N, d]``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mummi_ml import __version__
from mummi_ml.durable import atomic_path, write_json_atomic
from mummi_ml.metric.config import LossConfig, ModelConfig, TrainConfig
from mummi_ml.metric.encoder import Encoder
from mummi_ml.metric.errors import MetricError
from mummi_ml.parallel.distributed import best_device
from mummi_ml.patch import CHANNEL_NAMES, PATCH_SHAPE, ChannelStats

__all__ = ["Metric", "write_model_dir", "weights_hash", "build_encoder", "MODEL_FORMAT"]

MODEL_FORMAT = 1
_META, _WEIGHTS = "metric.json", "weights.pt"


def build_encoder(model_cfg: ModelConfig) -> Encoder:
    """A fresh encoder with the architecture of ``model_cfg``."""
    return Encoder(
        latent_dim=model_cfg.latent_dim,
        depth_multiplier=model_cfg.depth_multiplier,
        sep_filters=model_cfg.sep_filters,
        conv_filters=model_cfg.conv_filters,
        bn_momentum=model_cfg.bn_momentum,
        bn_eps=model_cfg.bn_eps,
        transform_group=model_cfg.transform_group,
        invariance=model_cfg.invariance,
    )


def weights_hash(state: dict[str, torch.Tensor]) -> str:
    """12-hex-digit sha256 of a state dict's names, shapes and values (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:12]


def write_model_dir(
    out_dir: Path,
    encoder: Encoder,
    stats: ChannelStats,
    model_cfg: ModelConfig,
    loss_cfg: LossConfig,
    train_cfg: TrainConfig,
    data_hash: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``weights.pt`` and ``metric.json`` (each atomically; metric.json last)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {  # float32 whatever the training precision
        k: (v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu().clone())
        for k, v in encoder.state_dict().items()
    }
    with atomic_path(out_dir / _WEIGHTS, fsync=True) as tmp:
        torch.save(state, tmp)
    meta = {
        "format": MODEL_FORMAT,
        "package_version": __version__,
        "version": weights_hash(state),
        "latent_dim": model_cfg.latent_dim,
        "lambda_rad": loss_cfg.lambda_rad,
        "profile_channels": list(model_cfg.profile_channels),
        "profile_channel_names": [CHANNEL_NAMES[c] for c in model_cfg.profile_channels],
        "channel_names": list(CHANNEL_NAMES),
        "standardisation": stats.to_dict(),
        "data_hash": data_hash,
        "config": {
            "model": model_cfg.model_dump(mode="json"),
            "loss": loss_cfg.model_dump(mode="json"),
            "train": train_cfg.model_dump(mode="json"),
        },
        **(extra or {}),
    }
    write_json_atomic(out_dir / _META, meta, fsync=True, indent=2)
    return out_dir


def _usable_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device that exists here, or MetricError naming it."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise MetricError(
            f"device: expected cpu, cuda or cuda:K, got {str(device)[:60]!r}"
        ) from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise MetricError(f"device {str(device)!r}: no CUDA device on this machine")
        if dev.index is not None and dev.index >= n:
            raise MetricError(f"device {str(device)!r}: only {n} CUDA device(s) here")
    elif dev.type != "cpu":
        raise MetricError(f"device: expected cpu, cuda or cuda:K, got {str(device)[:60]!r}")
    return dev


class Metric:
    """A trained metric: embeds raw patches into R^d.

    Attributes:
        latent_dim: d.
        lambda_rad: the proportionality factor it was trained with.
        stats: per-channel standardisation (training split).
        profile_channels: channels of Upsilon.
        version: 12-hex-digit hash of the weights (tags selections and jobs).
        config: ``{"model": ..., "loss": ..., "train": ...}`` as plain dicts.
        path: the model directory.
        device: where it computes.
    """

    def __init__(self, encoder: Encoder, meta: dict[str, Any], path: Path, device: torch.device):
        self.encoder = encoder.to(device).eval()
        self.meta = meta
        self.path = path
        self.device = device
        self.latent_dim: int = int(meta["latent_dim"])
        self.lambda_rad: float = float(meta["lambda_rad"])
        self.stats: ChannelStats = ChannelStats.from_dict(meta["standardisation"])
        self.profile_channels: list[int] = [int(c) for c in meta["profile_channels"]]
        self.version: str = str(meta["version"])
        self.config: dict[str, Any] = meta["config"]
        self.batch_size = int(self.config.get("train", {}).get("embed_batch_size", 4096))

    @classmethod
    def load(cls, model_dir: str | Path, device: str | torch.device | None = None) -> Metric:
        """Load a model directory written by training.

        Args:
            model_dir: directory with ``metric.json`` and ``weights.pt``.
            device: None = best present (GPU if any), or e.g. ``"cpu"``.

        Raises:
            MetricError: missing or malformed files, or weights that do not fit the config.
        """
        path = Path(model_dir)
        meta_path, w_path = path / _META, path / _WEIGHTS
        if not meta_path.is_file() or not w_path.is_file():
            raise MetricError(f"{path}: not a model directory (expected {_META} and {_WEIGHTS})")
        try:
            meta = json.loads(meta_path.read_text())
            model_cfg = ModelConfig.model_validate(meta["config"]["model"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise MetricError(f"{meta_path}: malformed ({type(exc).__name__}: {exc})") from None
        if meta.get("format") != MODEL_FORMAT:
            raise MetricError(
                f"{meta_path}: format {meta.get('format')!r}, expected {MODEL_FORMAT}"
            )
        try:
            state = torch.load(w_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a corrupt file
            raise MetricError(f"{w_path}: unreadable weights ({type(exc).__name__})") from None
        encoder = build_encoder(model_cfg)
        try:
            encoder.load_state_dict(state)
        except RuntimeError as exc:
            raise MetricError(f"{w_path}: weights do not match the config ({exc})") from None
        dev = best_device() if device is None else _usable_device(device)
        try:
            metric = cls(encoder, meta, path, dev)
            if metric.latent_dim != model_cfg.latent_dim or len(metric.stats.mean) != 14:
                raise ValueError("latent_dim or standardisation disagree with the weights")
            return metric
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MetricError(f"{meta_path}: malformed ({type(exc).__name__}: "
                              f"{str(exc)[:120]})") from None

    @torch.inference_mode()
    def embed(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Embed raw patches.

        Args:
            x: float32 ``[N, 37, 37, 14]`` RAW (unstandardised) concentrations, channel-last.
            batch_size: patches per forward pass (default: the training config's embed size).

        Returns:
            float32 ``[N, latent_dim]``.
        """
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1:] != PATCH_SHAPE:
            raise MetricError(f"x: expected [N, {', '.join(map(str, PATCH_SHAPE))}], "
                              f"got {list(x.shape)}")
        bs = int(batch_size or self.batch_size)
        out = np.empty((len(x), self.latent_dim), dtype=np.float32)
        for lo in range(0, len(x), bs):
            xb = torch.from_numpy(np.ascontiguousarray(x[lo : lo + bs], dtype=np.float32))
            out[lo : lo + len(xb)] = self.encoder(xb.to(self.device)).float().cpu().numpy()
        return out
