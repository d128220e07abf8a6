"""Summaries of patch files for people: class counts, time span, per-channel statistics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mummi_ml.patch.constants import CHANNEL_NAMES, CLASS_NAMES, N_CLASSES, patch_class
from mummi_ml.patch.h5io import PatchDataset
from mummi_ml.patch.stats import ChannelStats

__all__ = ["summarise_patches", "format_summary"]


def summarise_patches(paths: str | Path | Sequence[str | Path]) -> dict[str, Any]:
    """Stream one or more patch files once and summarise them (JSON-serialisable dict)."""
    with PatchDataset(paths) as ds:
        y = ds.field("y")
        time_us = ds.field("time_us")
        replica = ds.field("replica")
        classes = patch_class(y) if len(y) else np.zeros(0, np.int64)
        counts = np.bincount(classes, minlength=N_CLASSES)
        stats = ChannelStats.from_batches(b.x for b in ds.iter_batches()) if len(ds) else None
        attrs = ds.attrs
        return {
            "files": [str(p) for p in ds.paths],
            "schema_version": attrs.get("schema_version"),
            "created_by": attrs.get("created_by"),
            "n_patches": len(ds),
            "class_counts": {CLASS_NAMES[c]: int(counts[c]) for c in range(N_CLASSES)},
            "max_n_ras": int(y[:, 0].max()) if len(y) else 0,
            "replicas": int(len(np.unique(replica))),
            "time_us": [float(time_us.min()), float(time_us.max())] if len(y) else None,
            "channels": None
            if stats is None
            else {
                name: {"mean": float(m), "std": float(s)}
                for name, m, s in zip(CHANNEL_NAMES, stats.mean, stats.std, strict=True)
            },
            "attrs": {k: v for k, v in attrs.items() if k not in ("channel_names", "description")},
        }


def format_summary(s: dict[str, Any]) -> str:
    """The summary as aligned text lines."""
    lines = [
        f"files:          {', '.join(s['files'])}",
        f"schema version: {s['schema_version']}  ({s['created_by']})",
        f"patches:        {s['n_patches']}  from {s['replicas']} replica(s)",
    ]
    if s["time_us"] is not None:
        lines.append(f"time span:      {s['time_us'][0]:.4g} .. {s['time_us'][1]:.4g} us")
    lines.append(f"max RAS/patch:  {s['max_n_ras']}")
    lines.append("classes:")
    for name, n in s["class_counts"].items():
        pct = 100 * n / max(s["n_patches"], 1)
        lines.append(f"  {name:<12} {n:>10}  ({pct:5.1f}%)")
    if s["channels"]:
        lines.append("channels:       mean        std")
        for name, v in s["channels"].items():
            lines.append(f"  {name:<12} {v['mean']:10.5g} {v['std']:10.5g}")
    shown = ("schema", "schema_version", "created_by")
    for k, v in s["attrs"].items():
        if k in shown:
            continue
        lines.append(f"attr {k}: {v}")
    return "\n".join(lines)
