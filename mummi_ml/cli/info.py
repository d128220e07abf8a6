"""``mummi-ml info FILE.h5 [...]``: what a patch file (or a set of shards) holds."""

from __future__ import annotations

import argparse
import json

from mummi_ml.patch import format_summary, summarise_patches

HELP = "summarise patch files: class counts, time span, per-channel statistics, schema version"
USES_CONFIG = False  # reads no configuration: no --config/--set


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="patch files, shard globs or directories")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    summary = summarise_patches(args.files)
    print(json.dumps(summary, indent=2, default=_jsonable) if args.json
          else format_summary(summary))
    return 0


def _jsonable(value: object) -> object:
    """Attribute values JSON cannot hold natively: arrays as lists, numpy scalars as numbers,
    bytes as text; NaN/inf attribute values print as null (strict JSON)."""
    import math

    import numpy as np

    if isinstance(value, np.ndarray):
        return [_finite(v) for v in value.ravel().tolist()] if value.ndim <= 1 else [
            _jsonable(v) for v in value
        ]
    if isinstance(value, np.generic):
        return _finite(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _finite(v: object) -> object:
    import math

    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return None if isinstance(v, float) and not math.isfinite(v) else v
