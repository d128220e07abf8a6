"""Strict JSON for every file mummi-ml writes: no ``NaN``, ``Infinity`` or ``-Infinity``.

Python's :mod:`json` writes non-finite floats as the bare words ``NaN`` and ``Infinity``, which
are not JSON (RFC 8259): ``jq``, JavaScript and most other readers reject the file. Every JSON
file and JSON line the package writes goes through :func:`json_dumps_strict`, which writes a
non-finite number as ``null`` and then serialises with ``allow_nan=False`` (so nothing
non-finite can slip through).

What ``null`` means where a number is expected is documented per field; the common cases:

- ``novelty`` in ``job.json`` and ``picks.jsonl``: ``null`` is **infinite** novelty, i.e. the first
  pick of a campaign (nothing was selected before it to measure a distance to);
  :func:`float_or_inf` reads it back as ``inf``;
- metrics and statistics (``metrics.json``, ``status.json``, sweep results): ``null`` means
  "not defined" (e.g. an AUC with one class, a rate over no time).

numpy scalars and arrays are written as plain numbers and lists.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["json_dumps_strict", "finite_or_none", "float_or_inf"]


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    return obj  # left to json (and to its ``default``)


def json_dumps_strict(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes strict JSON: non-finite floats (also numpy ones, also inside
    arrays) become ``null``; any keyword of :func:`json.dumps` but ``allow_nan`` is accepted."""
    kwargs.pop("allow_nan", None)
    default = kwargs.pop("default", None)

    def _default(o: Any) -> Any:
        if default is None:
            raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")
        return _clean(default(o))

    return json.dumps(_clean(obj), allow_nan=False, default=_default, **kwargs)


def finite_or_none(value: float | None) -> float | None:
    """``float(value)`` if it is finite, else None (how a non-finite number is written)."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def float_or_inf(value: float | None) -> float:
    """Read back a novelty written by :func:`finite_or_none`: None (``null``) is ``inf``."""
    return math.inf if value is None else float(value)
