"""Load YAML configuration files into pydantic models, with ``--set key=value`` overrides.

Every error is a :class:`~mummi_ml.errors.ConfigError` whose one-line message names the file and
the dotted key, e.g. ``configs/quickstart.yaml: train.epochs: Input should be a valid integer
(got 'ten')``.
"""

from __future__ import annotations

import reprlib
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from mummi_ml.errors import ConfigError

__all__ = [
    "StrictModel",
    "load_yaml_model",
    "apply_overrides",
    "with_overrides",
    "parse_override",
    "model_to_yaml",
    "short_repr",
    "shorten",
    "MAX_CONFIG_BYTES",
]

MAX_CONFIG_BYTES = 1 << 20  # a config file is a page of YAML; anything larger is refused
_MAX_NODES = 100_000  # values in a config once YAML aliases are expanded
_MAX_DEPTH = 50  # nesting of YAML mappings/sequences (a config needs 3)
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel = 3


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, the cut marked with ``...``."""
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for an error message: bounded in depth and length whatever the value
    (e.g. a YAML alias bomb), never longer than ``limit`` characters."""
    return shorten(_REPR.repr(value), limit)

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated, and
    float fields refuse NaN and +-inf (a field that means "no limit" says so and uses None)."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False
    )


def _check_size(value: Any, what: str) -> None:
    """Refuse YAML values nested deeper than ``_MAX_DEPTH`` or expanding (through aliases) to
    more than ``_MAX_NODES`` values, without expanding them: shared nodes are counted once per
    reference by memoised recursion over distinct objects, in time linear in the YAML text."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, int, bool]] = [(value, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if not isinstance(node, (dict, list)) or (id(node) in sizes and not done):
            continue
        if depth > _MAX_DEPTH:
            raise ConfigError(f"{what}: nested more than {_MAX_DEPTH} levels deep")
        children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
        if done:
            total = 1 + sum(sizes.get(id(c), 1) for c in children)
            if total > _MAX_NODES:
                raise ConfigError(f"{what}: expands to more than {_MAX_NODES} values "
                                  "(YAML aliases repeated too often?)")
            sizes[id(node)] = total
            continue
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children)


def _safe_load(text: str, what: str) -> Any:
    """``yaml.safe_load`` whose failures (syntax, too deep, too large) are ConfigErrors."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        problem = getattr(exc, "problem", None)
        raise ConfigError(f"{what}: not valid YAML{where}"
                          + (f" ({shorten(str(problem), 80)})" if problem else "")) from None
    except RecursionError:
        raise ConfigError(f"{what}: nested more than {_MAX_DEPTH} levels deep") from None
    _check_size(value, what)
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"section.key=value"`` into its key path and a YAML-typed value.

    ``train.epochs=5`` gives ``(["train", "epochs"], 5)``; ``a.b=[1, 2]`` gives a list.
    """
    shown = f"--set {short_repr(text)}"
    if "=" not in text:
        raise ConfigError(f"{shown}: expected KEY=VALUE, e.g. train.epochs=5")
    key, _, raw = text.partition("=")
    path = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in path):
        raise ConfigError(f"{shown}: empty key")
    value = _safe_load(raw, f"{shown}: value") if raw.strip() else None
    return path, value


def apply_overrides(
    data: dict[str, Any], overrides: Iterable[str] | Mapping[str, Any]
) -> dict[str, Any]:
    """Apply overrides to a nested dict (in place) and return it: ``"key.path=value"`` texts
    (the value read as YAML), or a mapping of dotted keys to values already typed
    (``{"loss.w_inv": 0.0}``)."""
    if isinstance(overrides, Mapping):
        items = ((f"{k}={v!r}", k.split("."), v) for k, v in overrides.items())
    else:
        items = ((text, *parse_override(text)) for text in overrides)
    for text, path, value in items:
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--set {short_repr(text)}: {short_repr(part)} is not a "
                                  "section")
            node = child
        node[path[-1]] = value
    return data


def _format_validation_error(exc: ValidationError, source: str) -> str:
    first = exc.errors()[0]
    loc = shorten(".".join(str(p) for p in first["loc"]), 120) or "(top level)"
    if first["type"] == "extra_forbidden":
        msg = f"{source}: {loc}: unknown key"
    else:
        got = first.get("input")
        shown = "" if isinstance(got, dict) else f" (got {short_repr(got)})"
        msg = f"{source}: {loc}: {shorten(first['msg'], 160)}{shown}"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return msg


def _read_text(p: Path, source: str) -> str:
    """The UTF-8 text of a config file; ConfigError if it is missing, not a regular file,
    larger than :data:`MAX_CONFIG_BYTES`, binary or not UTF-8."""
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the config file ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{source}: not a regular file (a config is a YAML file)")
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: {st.st_size} bytes, larger than a config can be "
                          f"({MAX_CONFIG_BYTES} bytes)")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the config file ({exc.strerror})") from None
    if b"\0" in raw:
        raise ConfigError(f"{source}: a binary file, not YAML text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start})") from None


def load_yaml_model(
    model: type[M], path: str | Path | None, overrides: Iterable[str] = ()
) -> M:
    """Read a YAML file (or nothing: all defaults), apply overrides and validate into ``model``.

    Raises:
        ConfigError: missing or unparsable file, unknown key, wrong type or value.
    """
    source = shorten(str(path), 200) if path is not None else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        loaded = _safe_load(_read_text(Path(path), source), source)
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


def with_overrides(obj: M, overrides: Mapping[str, Any]) -> M:
    """A validated copy of the config model ``obj`` with dotted-key overrides
    (``{"loss.w_inv": 0.0}``), through :func:`apply_overrides`.

    Raises:
        ConfigError: a key that is not a section, or a value the model refuses.
    """
    data = apply_overrides(obj.model_dump(mode="json"), overrides)
    try:
        return type(obj).model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, f"overrides {overrides}")) from None


def model_to_yaml(obj: BaseModel) -> str:
    """Dump a config model as YAML (round-trips through :func:`load_yaml_model`)."""
    return yaml.safe_dump(obj.model_dump(mode="json"), sort_keys=False)
