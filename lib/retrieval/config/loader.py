"""The typed loader: dataclass defaults <- a YAML mapping <- ``--set a.b=v`` overrides (domain-free).

Nothing here knows a section of ours: it reads any tree of dataclasses through their type hints.

- Every key is checked against the fields of the dataclass it lands in, and every value against the
  field's annotation: ``int``, ``float`` (finite), ``bool``, ``str``, ``Literal[...]`` (one of the
  choices), ``list[T]``, ``dict[str, T]``, ``T | None``, ``Any`` (YAML scalars and lists), or a
  nested dataclass (a mapping; or a string where the dataclass names a ``SHORTHAND`` field, so
  ``losses: [neural_ndcg]`` means ``losses: [{name: neural_ndcg}]``). A wrong key or value raises
  :class:`ConfigError` naming the key: a typo never falls back to a default silently.
- A ``dict`` field with ``metadata={"partial_of": SomeDataclass}`` holds a partial copy of that
  dataclass: its keys must be the dataclass's fields and its values their types (a stage's overrides
  of shared settings).
- The root dataclass may declare ``DEPRECATED: ClassVar[dict[str, str | Callable]]``: old dotted keys
  and where they went (a new dotted key, or a function ``(root, value)`` that applies the value).
  Reading an old key warns (:class:`ConfigWarning`) and applies it the new way.
- After loading, :func:`validate` calls ``validate()`` on every dataclass of the tree that has one,
  children first: each section checks itself next to its fields.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import types
import typing
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config file or override names an unknown key or gives a value of the wrong type."""


class ConfigWarning(UserWarning):
    """A deprecated config key was used (it still works, for one release)."""


Alias = str | Callable[[Any, Any], None]


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _field_meta(cls: type, name: str) -> Any:
    return next(f.metadata for f in dataclasses.fields(cls) if f.name == name)


def check_value(key: str, value: Any, annotation: Any) -> Any:
    """``value`` converted to ``annotation`` where that is lossless; raises ConfigError otherwise."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        if isinstance(value, (dict, set)):
            raise ConfigError(f"config key '{key}' must be a scalar or a list; got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number; got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"config key '{key}' must be a finite number; got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer; got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false; got {value!r}")
        return value
    if annotation is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # YAML reads numeric-looking strings as numbers
        if isinstance(value, (datetime.date, datetime.datetime)):
            return value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string; got {value!r}")
        return value
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            raise ConfigError(
                f"config key '{key}' must be one of {', '.join(map(str, choices))}; got {value!r}"
            )
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping; got {value!r}")
        _, vtype = typing.get_args(annotation)
        return {str(k): check_value(f"{key}.{k}", v, vtype) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list; got {value!r}")
        (itype,) = typing.get_args(annotation)
        return [check_value(f"{key}[{i}]", v, itype) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(annotation):
            return None
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return check_value(key, value, inner[0])
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        shorthand = getattr(annotation, "SHORTHAND", None)
        if isinstance(value, str) and shorthand:
            value = {shorthand: value}
        obj = annotation()
        _merge(obj, value, f"{key}.", obj)
        return obj
    raise TypeError(f"unsupported config annotation {annotation!r} for '{key}'")  # a bug in a section


def _check_partial(key: str, value: Any, cls: type) -> dict[str, Any]:
    """A mapping of some of ``cls``'s fields, each value checked against the field's type."""
    if not isinstance(value, dict):
        raise ConfigError(f"config key '{key}' must be a mapping; got {value!r}")
    fields = _fields(cls)
    out = {}
    for name, v in value.items():
        if name not in fields:
            raise ConfigError(f"unknown config key '{key}.{name}' (known keys here: {', '.join(fields)})")
        out[str(name)] = check_value(f"{key}.{name}", v, fields[name])
    return out


def _aliases(root: Any) -> dict[str, Alias]:
    return dict(getattr(type(root), "DEPRECATED", {}))


def _redirect(root: Any, dotted: str, value: Any) -> bool:
    """Applies a deprecated key the new way (True), or says it is not one (False)."""
    aliases = _aliases(root)
    if dotted in aliases:
        target = aliases[dotted]
        where = target if isinstance(target, str) else getattr(target, "__doc__", None) or "its new place"
        warnings.warn(
            f"config key '{dotted}' is deprecated and will be removed; use {where}",
            ConfigWarning,
            stacklevel=4,
        )
        if isinstance(target, str):
            assign(root, target, value)
        else:
            target(root, value)
        return True
    if isinstance(value, dict) and any(a.startswith(f"{dotted}.") for a in aliases):
        for name, v in value.items():
            if not _redirect(root, f"{dotted}.{name}", v):
                known = sorted(a for a in aliases if a.startswith(f"{dotted}."))
                raise ConfigError(
                    f"unknown config key '{dotted}.{name}' (its section moved: {', '.join(known)})"
                )
        return True
    return False


def _merge(obj: Any, data: Any, prefix: str, root: Any) -> None:
    """Applies a nested mapping onto dataclass ``obj`` in place, checking every key and type."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<top>'}' must be a mapping; got {data!r}")
    fields = _fields(type(obj))
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in fields:
            if _redirect(root, key, value):
                continue
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown config key '{key}' (known keys here: {known})")
        annotation = fields[name]
        partial = _field_meta(type(obj), name).get("partial_of")
        if partial is not None:
            setattr(obj, name, {**getattr(obj, name), **_check_partial(key, value, partial)})
        elif dataclasses.is_dataclass(annotation) and not isinstance(value, str):
            _merge(getattr(obj, name), value, f"{key}.", root)
        else:
            setattr(obj, name, check_value(key, value, annotation))


def assign(root: Any, dotted: str, value: Any) -> None:
    """Sets one dotted key of the tree (checked like any other key)."""
    nested: Any = value
    for part in reversed(dotted.split(".")):
        nested = {part: nested}
    _merge(root, nested, "", root)


def merge(root: Any, data: Any, source: str = "") -> None:
    """Applies a whole mapping (a YAML file's) onto ``root``; errors name ``source``."""
    try:
        _merge(root, data, "", root)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}" if source else str(e)) from None


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuilds a tree from ``dataclasses.asdict(obj)`` (or any partial nested mapping)."""
    obj = cls()
    _merge(obj, data, "", obj)
    return obj


def apply_override(root: Any, assignment: str) -> None:
    """Applies one ``section.key=value`` override; the value is parsed as YAML (``3``, ``0.5``, ``true``, ``[a, b]``)."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects section.key=value; got {assignment!r}")
    dotted, raw = assignment.split("=", 1)
    parts = dotted.strip().split(".")
    try:
        value: Any = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw.strip()  # not YAML (e.g. "@file", "*"): the text itself; the type check decides
    # A mapping field takes the rest of the key as one entry, added to what it holds:
    # --set spark.conf.spark.ui.port=4050 sets conf["spark.ui.port"] and keeps the other entries.
    obj: Any = root
    for i, part in enumerate(parts[:-1]):
        fields = _fields(type(obj)) if dataclasses.is_dataclass(obj) else {}
        if part not in fields:
            break
        if typing.get_origin(fields[part]) is dict:
            field_key = ".".join(parts[: i + 1])
            as_text = typing.get_args(fields[part])[1] is str  # spark.conf: the text as written
            entry = {".".join(parts[i + 1 :]): raw.strip() if as_text else value}
            partial = _field_meta(type(obj), part).get("partial_of")
            if partial is not None:
                entry = _check_partial(field_key, entry, partial)
            else:
                entry = check_value(field_key, entry, fields[part])
            setattr(obj, part, {**getattr(obj, part), **entry})
            return
        obj = getattr(obj, part)
    assign(root, dotted.strip(), value)


def load_yaml(path: str) -> Any:
    """The mapping in a YAML file; ConfigError (naming the file and line) when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML ({getattr(e, 'problem', e)})") from None


def _walk(obj: Any) -> Iterator[Any]:
    """Every dataclass in the tree, children before their parent."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if dataclasses.is_dataclass(item):
                yield from _walk(item)
    yield obj


def validate(root: Any) -> None:
    """Calls ``validate()`` of every dataclass in the tree that defines one (children first)."""
    for obj in _walk(root):
        check = getattr(obj, "validate", None)
        if callable(check):
            check()


def to_yaml(obj: Any) -> str:
    """The tree as YAML (what a stage writes next to its output)."""
    return yaml.safe_dump(dataclasses.asdict(obj), sort_keys=False)
