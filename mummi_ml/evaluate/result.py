"""The typed result of an evaluation: the schema of ``metrics.json``, versioned.

:class:`EvaluationResult` is what ``run_evaluation`` computes and what the figures and the
report read; :meth:`EvaluationResult.to_json` writes metrics.json and
:meth:`EvaluationResult.from_json` reads it back (also a file written before
``schema_version`` existed: format 1 is schema version 1). Non-finite numbers are written as
``null`` (strict JSON) and read back as NaN where the field is a number that may be undefined.

Schema history: version 1 (= ``format`` 1): model, data, transform_group, table,
pr_curve_ours, notes, optional campaign, time and space, seconds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from mummi_ml.evaluate.errors import EvaluationError
from mummi_ml.evaluate.spacetime import BinnedCurve, DecorrelationFit
from mummi_ml.evaluate.table import TableRow
from mummi_ml.jsonutil import json_dumps_strict

__all__ = [
    "SCHEMA_VERSION",
    "METRICS_FORMAT",
    "ModelInfo",
    "DataInfo",
    "PRSummary",
    "CampaignResult",
    "GroundTruthTime",
    "TimeResult",
    "SpaceResult",
    "EvaluationResult",
]

SCHEMA_VERSION = 1  # bump when a key changes meaning or goes; adding a key keeps the version
METRICS_FORMAT = 1  # the key ``format`` of older readers; equal to the schema version 1


def _nan(value: Any) -> float:
    """A number of metrics.json that may be undefined: ``null`` reads back as NaN."""
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class ModelInfo:
    """The evaluated model: directory, weights hash, latent dimension d, its lambda_rad."""

    path: str
    version: str
    latent_dim: int
    lambda_rad: float

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class DataInfo:
    """The evaluation subset: file, points, seed and count per class (``CLASS_NAMES`` order)."""

    path: str
    n_points: int
    seed: int
    class_counts: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class PRSummary:
    """The mean precision, recall and accuracy curves of our model at ~200 log-spaced
    neighbourhood sizes k (all lists of one length)."""

    k: list[float]
    precision: list[float]
    recall: list[float]
    accuracy: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PRSummary:
        return cls(*([_nan(v) for v in d[f.name]] for f in fields(cls)))


def _rows(rows: list[dict[str, Any]]) -> list[TableRow]:
    return [TableRow.from_dict(r) for r in rows]


@dataclass(frozen=True)
class CampaignResult:
    """The criteria on campaign-preset data (distribution shift)."""

    path: str
    n_points: int
    table: list[TableRow]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "n_points": self.n_points,
                "table": [r.to_dict() for r in self.table]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CampaignResult:
        return cls(str(d["path"]), int(d["n_points"]), _rows(d["table"]))


@dataclass(frozen=True)
class GroundTruthTime:
    """The decorrelation of the patches' own distance ``distance`` (d_x): fit and curve."""

    distance: str
    fit: DecorrelationFit
    curve: BinnedCurve

    def to_dict(self) -> dict[str, Any]:
        return {"distance": self.distance, "fit": self.fit.to_dict(),
                "curve": self.curve.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GroundTruthTime:
        return cls(str(d["distance"]), DecorrelationFit.from_dict(d["fit"]),
                   BinnedCurve.from_dict(d["curve"]))


@dataclass(frozen=True)
class TimeResult:
    """The time analysis of the histories: d_z against time difference, its fit, the same for
    the ground truth d_x, their ratio (None with ``ratio_reason`` when not determined) and the
    diffusive estimate (us)."""

    path: str
    n_patches: int
    n_histories: int
    diffusive_us: float
    fit: DecorrelationFit
    curve: BinnedCurve
    ground_truth: GroundTruthTime
    ratio_to_ground_truth: float | None
    ratio_reason: str

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        return d | {"fit": self.fit.to_dict(), "curve": self.curve.to_dict(),
                    "ground_truth": self.ground_truth.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TimeResult:
        ratio = d["ratio_to_ground_truth"]
        return cls(
            str(d["path"]), int(d["n_patches"]), int(d["n_histories"]),
            float(d["diffusive_us"]), DecorrelationFit.from_dict(d["fit"]),
            BinnedCurve.from_dict(d["curve"]), GroundTruthTime.from_dict(d["ground_truth"]),
            None if ratio is None else float(ratio), str(d["ratio_reason"]),
        )


@dataclass(frozen=True)
class SpaceResult:
    """d_z against the distance of patch centres within frames: frames and pairs used, the
    periodic domain (nm; None if unknown), Pearson r below/above half a patch, the curve."""

    n_frames: int
    n_pairs: int
    domain_nm: float | None
    pearson_below_half_patch: float
    pearson_above_half_patch: float
    curve: BinnedCurve

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        return d | {"curve": self.curve.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpaceResult:
        domain = d["domain_nm"]
        return cls(
            int(d["n_frames"]), int(d["n_pairs"]), None if domain is None else float(domain),
            _nan(d["pearson_below_half_patch"]), _nan(d["pearson_above_half_patch"]),
            BinnedCurve.from_dict(d["curve"]),
        )


@dataclass(frozen=True)
class EvaluationResult:
    """Everything ``mummi-ml evaluate`` measured (metrics.json).

    Attributes:
        created_by: ``"mummi-ml <version> evaluate"``.
        model, data: what was evaluated on what.
        transform_group: transformations of the overlap criterion.
        table: one row per representation (baselines, ablations, ours last).
        pr_curve_ours: our model's mean curves, decimated.
        notes: shown under the table.
        campaign, time, space: the optional analyses (absent keys in metrics.json when None).
        seconds: wall time of the whole evaluation (s).
        schema_version, format: the schema's version (see the module doc).
    """

    created_by: str
    model: ModelInfo
    data: DataInfo
    transform_group: str
    table: list[TableRow]
    pr_curve_ours: PRSummary
    notes: list[str]
    campaign: CampaignResult | None = None
    time: TimeResult | None = None
    space: SpaceResult | None = None
    seconds: float = math.nan
    schema_version: int = SCHEMA_VERSION
    format: int = METRICS_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)  # keys of a newer minor writer, kept

    @property
    def ours(self) -> TableRow:
        """Our model's row (the last of the table)."""
        return self.table[-1]

    def to_dict(self) -> dict[str, Any]:
        """The content of metrics.json (key order as written)."""
        d: dict[str, Any] = {
            "format": self.format,
            "schema_version": self.schema_version,
            "created_by": self.created_by,
            "model": self.model.to_dict(),
            "data": self.data.to_dict(),
            "transform_group": self.transform_group,
            "table": [r.to_dict() for r in self.table],
            "pr_curve_ours": self.pr_curve_ours.to_dict(),
            "notes": list(self.notes),
        }
        for key in ("campaign", "time", "space"):
            part = getattr(self, key)
            if part is not None:
                d[key] = part.to_dict()
        return d | {"seconds": self.seconds} | self.extra

    def to_json(self) -> str:
        """metrics.json's text: strict JSON (non-finite numbers as null), indent 1."""
        return json_dumps_strict(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvaluationResult:
        """Read the content of metrics.json; EvaluationError names a missing or bad key, or a
        schema version newer than this package reads."""
        version = d.get("schema_version", d.get("format"))
        if version != SCHEMA_VERSION:
            raise EvaluationError(
                f"metrics.json: schema version {version!r}, this mummi-ml reads "
                f"{SCHEMA_VERSION}"
            )
        try:
            return cls._parse(d)
        except KeyError as exc:
            raise EvaluationError(f"metrics.json: missing key {exc}") from None
        except (TypeError, ValueError) as exc:
            raise EvaluationError(f"metrics.json: malformed ({exc})") from None

    @classmethod
    def _parse(cls, d: dict[str, Any]) -> EvaluationResult:
        def optional(key: str, parse):
            return parse(d[key]) if d.get(key) is not None else None

        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(
            created_by=str(d["created_by"]),
            model=ModelInfo(**d["model"]),
            data=DataInfo(**d["data"]),
            transform_group=str(d["transform_group"]),
            table=_rows(d["table"]),
            pr_curve_ours=PRSummary.from_dict(d["pr_curve_ours"]),
            notes=[str(n) for n in d["notes"]],
            campaign=optional("campaign", CampaignResult.from_dict),
            time=optional("time", TimeResult.from_dict),
            space=optional("space", SpaceResult.from_dict),
            seconds=_nan(d["seconds"]),
            schema_version=SCHEMA_VERSION,
            format=int(d.get("format", METRICS_FORMAT)),
            extra={k: v for k, v in d.items() if k not in known},
        )

    @classmethod
    def from_json(cls, text: str) -> EvaluationResult:
        """Parse metrics.json's text (see :meth:`from_dict`)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"metrics.json: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise EvaluationError("metrics.json: expected a JSON object")
        return cls.from_dict(data)
