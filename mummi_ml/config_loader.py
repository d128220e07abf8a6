"""Load YAML configuration files into pydantic models, with ``--set key=value`` overrides.

Every error is a :class:`~mummi_ml.errors.ConfigError` whose one-line message names the file and
the dotted key, e.g. ``configs/quickstart.yaml: train.epochs: Input should be a valid integer
(got 'ten')``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from mummi_ml.errors import ConfigError

__all__ = ["StrictModel", "load_yaml_model", "apply_overrides", "parse_override", "model_to_yaml"]

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"section.key=value"`` into its key path and a YAML-typed value.

    ``train.epochs=5`` gives ``(["train", "epochs"], 5)``; ``a.b=[1, 2]`` gives a list.
    """
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. train.epochs=5")
    key, _, raw = text.partition("=")
    path = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in path):
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({exc})") from None
    return path, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to a nested dict (in place) and return it."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return data


def _format_validation_error(exc: ValidationError, source: str) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        msg = f"{source}: {loc}: unknown key"
    else:
        got = first.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        msg = f"{source}: {loc}: {first['msg']}{shown}"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return msg


def load_yaml_model(
    model: type[M], path: str | Path | None, overrides: Iterable[str] = ()
) -> M:
    """Read a YAML file (or nothing: all defaults), apply overrides and validate into ``model``.

    Raises:
        ConfigError: missing or unparsable file, unknown key, wrong type or value.
    """
    source = str(path) if path is not None else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{source}: config file not found")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            where = f" at line {line + 1}" if line is not None else ""
            raise ConfigError(f"{source}: not valid YAML{where}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: expected a mapping of sections at the top level")
        data = loaded
    overrides = list(overrides)
    apply_overrides(data, overrides)
    if overrides:
        source += " (with --set overrides)"
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def model_to_yaml(obj: BaseModel) -> str:
    """Dump a config model as YAML (round-trips through :func:`load_yaml_model`)."""
    return yaml.safe_dump(obj.model_dump(mode="json"), sort_keys=False)
