"""Binding a call's arguments to one of the layouts yProv4ML's versions used."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["bind"]


def bind(
    call: str, args: Sequence[Any], kwargs: Mapping[str, Any], layout: Sequence[str], keywords: set[str]
) -> dict[str, Any]:
    """``args`` named by ``layout``, then ``kwargs`` (each in ``layout`` or ``keywords``). Raises
    TypeError as Python does for too many positionals, an unknown keyword or a duplicate."""
    if len(args) > len(layout):
        raise TypeError(f"{call}() takes at most {len(layout)} positional arguments ({len(args)} given)")
    bound = dict(zip(layout, args, strict=False))
    for name, value in kwargs.items():
        if name not in keywords and name not in layout:
            raise TypeError(f"{call}() got an unexpected keyword argument {name!r}")
        if name in bound:
            raise TypeError(f"{call}() got multiple values for argument {name!r}")
        bound[name] = value
    return bound
