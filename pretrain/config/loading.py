"""YAML in, ``Config`` out: files (with ``base:``), dotted overrides, types checked; and back to YAML."""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from pretrain.config.errors import ConfigError
from pretrain.config.tree import Config

__all__ = ["config_from_dict", "config_to_dict", "config_to_yaml", "load_config"]


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config, apply ``section.field=value`` overrides, validate.

    Args:
        path: YAML file with one mapping per section; ``base: other.yaml`` (relative to
            the file) loads that file first and merges this one over it. ``None``: defaults.
        overrides: ``"train.micro_batch_size=4"``-style strings; values are parsed as
            YAML (``true``, ``3e-4``, ``null``, ``[1, 2]``).

    Raises:
        ConfigError: unknown section or field (with the valid names), a value of the
            wrong type, a malformed override, or a failed validation.
    """
    raw = _read_yaml(Path(path)) if path is not None else {}
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = [p.strip() for p in key.split(".")]
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError(f"override {item!r} is not 'section.field=value' (e.g. model.num_layers=4)")
        node = raw
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config section {'.'.join(parts[:depth + 1])!r} must be a mapping")
        try:
            node[parts[-1]] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML "
                              f"({_yaml_problem(exc)}); quote it") from None
    return _build(Config, raw, "")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return problem


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (see pretrain/configs/ for examples)")
    try:
        with path.open() as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        # PyYAML names a tab as the two characters backslash-t.
        hint = (" (YAML indents with spaces, not tabs)"
                if "'\\t'" in str(getattr(exc, "problem", "")) else "")
        raise ConfigError(f"{where}: {_yaml_problem(exc)}{hint}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    base = data.pop("base", None)
    if base is None:
        return data
    merged = _read_yaml(path.parent / base)
    for section, values in data.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(fields)
    if unknown:
        name = sorted(unknown)[0]
        close = difflib.get_close_matches(name, fields, n=1)
        hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown config key {prefix + name!r}{hint}; valid keys: {sorted(fields)}"
        )
    kwargs = {}
    for name, value in raw.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise ConfigError(f"config section {prefix}{name!r} must be a mapping")
            kwargs[name] = _build(kind, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, kind, f"{prefix}{name}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except TypeError as exc:  # a missing required field
        raise ConfigError(f"{prefix or 'config'}: {exc}") from None


def _coerce(value: Any, kind: Any, name: str) -> Any:
    """Check ``value`` against the annotation ``kind``; ints are accepted for floats."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        if value not in typing.get_args(kind):
            raise ConfigError(f"{name}={value!r}; use one of {list(typing.get_args(kind))}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        options = [t for t in options if t is not type(None)]
        if len(options) > 1:
            for option in options:
                try:
                    return _coerce(value, option, name)
                except ConfigError:
                    continue
            raise ConfigError(
                f"{name}={value!r} is a {type(value).__name__}; it must be one of "
                f"{', '.join(getattr(t, '__name__', str(t)) for t in options)}")
        kind = options[0]
    if typing.get_origin(kind) is not None:  # list[Any] and the like: check the container
        kind = typing.get_origin(kind)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        # YAML 1.1 (PyYAML) reads `3e-4` without a dot as a string.
        try:
            return float(value)
        except ValueError:
            pass
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(
            f"{name}={value!r} is a {type(value).__name__}; it must be a {kind.__name__}"
        )
    return value


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict (for checkpoints, logs and fingerprints)."""
    return dataclasses.asdict(config)


def config_from_dict(raw: dict[str, dict[str, Any]]) -> Config:
    """The config a ``config_to_dict`` mapping describes (e.g. the one a checkpoint's
    meta.json records), through the validated loader: JSON is YAML, so every value
    round-trips as an override."""
    return load_config(None, [f"{section}.{key}={json.dumps(value)}"
                              for section, fields in raw.items() for key, value in fields.items()])


def config_to_yaml(config: Config) -> str:
    """The resolved config as YAML that ``load_config`` reads back to an equal ``Config``."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=False)
