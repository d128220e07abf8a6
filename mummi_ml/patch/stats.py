"""Per-channel standardisation statistics, computed in one streaming, numerically stable pass."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mummi_ml.durable import write_json_atomic
from mummi_ml.errors import MummiMLError
from mummi_ml.patch.constants import CHANNEL_NAMES, N_CHANNELS

__all__ = ["ChannelStats"]


@dataclass(frozen=True)
class ChannelStats:
    """Mean and standard deviation of each lipid channel over all pixels of a set of patches.

    Attributes:
        mean: float64 ``[14]`` channel means (concentration units).
        std: float64 ``[14]`` channel standard deviations (population, ddof=0).
        count: number of pixels per channel that went into the statistics.
    """

    mean: np.ndarray
    std: np.ndarray
    count: int

    @staticmethod
    def from_batches(batches: Iterable[np.ndarray]) -> ChannelStats:
        """Accumulate statistics over batches ``x [n, 37, 37, 14]`` (streaming).

        Each batch's mean and sum of squared deviations are computed in float64 and merged with
        Chan et al.'s parallel update, which stays accurate for billions of pixels.
        """
        count = 0
        mean = np.zeros(N_CHANNELS)
        m2 = np.zeros(N_CHANNELS)
        for x in batches:
            x = np.asarray(x)
            if x.ndim < 2 or x.shape[-1] != N_CHANNELS:
                raise ValueError(
                    f"x: expected [..., {N_CHANNELS}] channel-last, got {list(x.shape)}"
                )
            flat = x.reshape(-1, N_CHANNELS).astype(np.float64)
            n_b = len(flat)
            if n_b == 0:
                continue
            mean_b = flat.mean(axis=0)
            m2_b = ((flat - mean_b) ** 2).sum(axis=0)
            delta = mean_b - mean
            total = count + n_b
            mean = mean + delta * (n_b / total)
            m2 = m2 + m2_b + delta**2 * (count * n_b / total)
            count = total
        if count == 0:
            raise ValueError("ChannelStats.from_batches: no data")
        return ChannelStats(mean=mean, std=np.sqrt(m2 / count), count=count)

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / std`` per channel, as float32; channels with std 0 only centred."""
        std = np.where(self.std > 0, self.std, 1.0)
        return ((x - self.mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel_names": list(CHANNEL_NAMES),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "count": int(self.count),
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ChannelStats:
        try:
            mean = np.asarray(d["mean"], dtype=np.float64)
            std = np.asarray(d["std"], dtype=np.float64)
            count = int(d["count"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MummiMLError(f"standardisation statistics: malformed ({exc})") from None
        if mean.shape != (N_CHANNELS,) or std.shape != (N_CHANNELS,):
            raise MummiMLError(
                f"standardisation statistics: expected {N_CHANNELS} channels, got {mean.shape[0]}"
            )
        if not (np.isfinite(mean).all() and np.isfinite(std).all()) or (std < 0).any():
            raise MummiMLError("standardisation statistics: non-finite or negative values")
        return ChannelStats(mean=mean, std=std, count=count)

    def save(self, path: str | Path) -> None:
        """Write as JSON (atomically; not fsynced: derived from the data)."""
        path = Path(path)
        write_json_atomic(path, self.to_dict(), fsync=False, indent=2)

    @staticmethod
    def load(path: str | Path) -> ChannelStats:
        path = Path(path)
        try:
            return ChannelStats.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise MummiMLError(f"{path}: no such file") from None
        except json.JSONDecodeError as exc:
            raise MummiMLError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
