"""The config keys a job reads, with their defaults and what each means, for the job's ``--help``.

A key's meaning is the trailing comment of its field in ``sections.py`` (every field has one, by that
module's rule), read from the source so that the help and the code cannot drift apart.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import tokenize
from functools import cache
from typing import Any

from retrieval.config import sections

COMMON = ("paths", "spark", "tracking")  # what every job reads: where, on what, tracked where


@cache
def _comments() -> dict[tuple[str, str], str]:
    """(class name, field) -> the field's trailing comment (or the comment block right above it), for
    every dataclass of ``sections``."""
    source = inspect.getsource(sections)
    lines = source.splitlines()
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    # the comment on any line of the field (a long default wraps over several)
                    span = range(item.lineno, (item.end_lineno or item.lineno) + 1)
                    text = " ".join(comments[n] for n in span if n in comments)
                    above: list[str] = []
                    n = item.lineno - 1
                    while not text and n >= 1 and lines[n - 1].strip().startswith("#"):  # a block above it
                        above.insert(0, comments[n])
                        n -= 1
                    out[(node.name, item.target.id)] = text or " ".join(above)
    return out


def _doc(cls: type, name: str) -> str:
    for klass in cls.__mro__:  # a field may come from a base (EncoderSection's EncoderHyper)
        if (klass.__name__, name) in _comments():
            return _comments()[(klass.__name__, name)]
    return ""


def _value(v: Any) -> str:
    return json.dumps(v, default=str) if not isinstance(v, str) else (v or '""')


def describe(names: tuple[str, ...] | list[str], cfg: sections.Config | None = None) -> list[str]:
    """Lines ``section.key = default  (meaning)`` for each named section (or top-level key) of
    ``cfg`` (the built-in defaults when None)."""
    cfg = cfg or sections.Config()
    out = []
    for name in names:
        value = getattr(cfg, name)
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            out.append(f"  {name} = {_value(value)}  {_doc(type(cfg), name)}".rstrip())
            continue
        plain = dataclasses.asdict(value)  # nested sections and lists of specs as plain data
        for f in dataclasses.fields(value):
            shown = _value(plain[f.name])
            out.append(f"  {name}.{f.name} = {shown}  {_doc(type(value), f.name)}".rstrip())
    return out


def help_epilog(names: tuple[str, ...], cfg: sections.Config | None = None) -> str:
    """The ``--help`` text after a job's options: the keys it reads, with their defaults."""
    lines = [
        "config keys this job reads, with their built-in defaults (a --config file or --set KEY=VALUE",
        "changes them):",
    ]
    lines += describe(names, cfg)
    lines += ["", f"and what every job reads: {', '.join(COMMON)} (retrieval --print-config shows them all)"]
    return "\n".join(lines)
