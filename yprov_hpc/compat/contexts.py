"""Contexts as yProv4ML scripts use them: ``Context.MODELS``, ``Context.DATASETS``, the ``Contexts``
alias, Enum members with any value, and sub-contexts (``create_context`` / ``log_context``).

A sub-context is named after its parent: ``create_context("TRAINING_LOD2", Context.TRAINING)``
is the context ``training/training_lod2`` and becomes ``Context.TRAINING_LOD2``; the plain
string ``"TRAINING_LOD2"`` then means the same context. The merge makes a ``<parent>/<child>``
context an activity nested in its parent's (``yprov_hpc.prov.contexts``), as yProv4ML's graph
nests it.
"""

from __future__ import annotations

import threading
from enum import Enum
from typing import Any, ClassVar

from yprov_hpc.core import context as _core
from yprov_hpc.core.errors import InvalidArgumentError

__all__ = ["Context", "Contexts", "create_context", "log_context", "resolve_context"]


class Context(_core.Context):
    """yprov-hpc's Context with yProv4ML's extra members (``MODELS``, ``DATASETS``) and room for the
    sub-contexts a script creates."""

    MODELS: ClassVar[_core.Context]
    DATASETS: ClassVar[_core.Context]

    __slots__ = ()


Context.MODELS = Context("models")
Context.DATASETS = Context("datasets")
Contexts = Context  # yProv4ML's other spelling

# plain names a script used for its sub-contexts (as given and lower-cased) -> nested context
_SUBCONTEXTS: dict[str, Context] = {}
_lock = threading.Lock()


def _plain_name(context: Any) -> Any:
    """An Enum member's name (or its str value), anything else as it is."""
    if isinstance(context, Enum):
        return context.value if isinstance(context.value, str) else context.name
    return context


def resolve_context(context: Any) -> Any:
    """The context yprov-hpc records for ``context``: sub-context names become their nested
    context, Enum members with a non-string value become their member name. Anything else is
    returned unchanged (the real API then accepts or refuses it)."""
    if isinstance(context, str):
        return _SUBCONTEXTS.get(context, context)
    if isinstance(context, Enum):
        value = context.value
        if isinstance(value, str):
            return _SUBCONTEXTS.get(value, value)
        return _SUBCONTEXTS.get(context.name, context.name)
    return context


def _name_of(context: Any, call: str, arg: str, resolve: bool = True) -> str:
    """The context name of an argument; ``resolve`` maps a sub-context's plain name to it."""
    resolved = resolve_context(context) if resolve else _plain_name(context)
    if not isinstance(resolved, str) or not resolved:
        raise InvalidArgumentError(call, arg, context, "a Context, a str or an Enum member")
    return str.__str__(_core.Context(resolved))


def create_context(context: Any, is_subcontext_of: Any = None, source_of_data: Any = None) -> Context:
    """A context, the sub-context ``<parent>/<name>`` of ``is_subcontext_of`` when given, also
    reachable as ``Context.<NAME>``. ``source_of_data`` (yProv4ML's data-source context, an
    activity inside the context) nests one level further: ``<parent>/<name>/<source>``."""
    full = _name_of(context, "create_context", "context", resolve=False)  # the same call twice: one context
    if is_subcontext_of is not None:
        full = f"{_name_of(is_subcontext_of, 'create_context', 'is_subcontext_of')}/{full}"
    if source_of_data is not None:
        full = f"{full}/{_name_of(source_of_data, 'create_context', 'source_of_data', resolve=False)}"
    created = Context(full)
    raw = context.name if isinstance(context, Enum) else str(context)
    with _lock:
        for alias in {raw, raw.lower(), raw.upper()}:
            if alias != full:
                _SUBCONTEXTS[alias] = created
        if raw.isidentifier() and not hasattr(_core.Context, raw.upper()):
            setattr(Context, raw.upper(), created)
    return created


log_context = create_context  # yProv4ML 3.2.8's name for the same call
