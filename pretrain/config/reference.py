"""``--help-config``: every key with its type, default and documentation, read from the dataclasses."""

from __future__ import annotations

import dataclasses
import textwrap
import typing
from typing import Literal

from pretrain.config.tree import Config

__all__ = ["config_reference"]


def config_reference() -> str:
    """Every section and key with its type, default and documentation (``--help-config``)."""
    lines = []
    for section in dataclasses.fields(Config):
        lines += _reference(typing.get_type_hints(Config)[section.name], section.name)
    return "\n".join(lines)


def _reference(cls: type, prefix: str) -> list[str]:
    docs = _field_docs(cls)
    lines = [f"{prefix}:  {(cls.__doc__ or '').strip().splitlines()[0]}"]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            lines += ["", *_reference(kind, f"{prefix}.{f.name}")]
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if typing.get_origin(kind) is Literal:
            type_name = " | ".join(map(str, typing.get_args(kind)))
        else:
            type_name = getattr(kind, "__name__", str(kind).replace("typing.", ""))
        lines.append(f"  {prefix}.{f.name} ({type_name}; default {default!r})")
        lines += textwrap.wrap(docs.get(f.name, ""), width=92, initial_indent=" " * 6,
                               subsequent_indent=" " * 6)
    return [*lines, ""]


def _field_docs(cls: type) -> dict[str, str]:
    """The string literal under each field of a dataclass (its documentation)."""
    import ast
    import inspect

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs
