"""Contexts: the phase of the run a logged value belongs to (training, validation, ...)."""

from __future__ import annotations

import re
from typing import ClassVar

__all__ = ["Context"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class Context(str):
    """A named phase of the run. ``Context.TRAINING`` etc., or ``Context("finetuning")``.

    A Context is a ``str``, so ``context="training"`` works wherever a Context does. Each
    context becomes a PROV activity informed by the run.
    """

    TRAINING: ClassVar[Context]
    VALIDATION: ClassVar[Context]
    EVALUATION: ClassVar[Context]
    TESTING: ClassVar[Context]

    __slots__ = ()

    def __new__(cls, name: str) -> Context:
        if isinstance(name, Context):
            return name
        if not isinstance(name, str) or not _NAME.match(name):
            from yprov_hpc.core.errors import InvalidKeyError

            raise InvalidKeyError("Context", name)
        return super().__new__(cls, name.lower())

    def __repr__(self) -> str:
        return f"Context({str.__repr__(self)})"

    @property
    def name(self) -> str:
        """Upper-case name, as the Enum members of the predecessor library had."""
        return self.upper()

    @property
    def value(self) -> str:
        """The context's string value (Enum-style access)."""
        return str(self)


Context.TRAINING = Context("training")
Context.VALIDATION = Context("validation")
Context.EVALUATION = Context("evaluation")
Context.TESTING = Context("testing")
