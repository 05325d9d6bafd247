"""Contexts: the phase of the run a logged value belongs to (training, validation, ...)."""

from __future__ import annotations

from typing import ClassVar

__all__ = ["MAX_CONTEXT_CHARS", "Context"]

MAX_CONTEXT_CHARS = 1024  # the event schema's MAX_NAME_CHARS (a test pins them equal)


UTF8_EXPECTED = "a str that UTF-8 can encode (no lone surrogate)"


def utf8_encodable(text: str) -> bool:
    """False for a str with a lone surrogate (e.g. a file name decoded with surrogateescape):
    it cannot travel as msgpack text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Context(str):
    """A named phase of the run. ``Context.TRAINING`` etc., or ``Context("finetuning")``: any
    non-empty string of at most ``MAX_CONTEXT_CHARS`` characters, kept in lower case.

    A Context is a ``str``, so ``context="training"`` works wherever a Context does. Each
    context becomes a PROV activity informed by the run; a ``parent/child`` context is a
    sub-activity, informed by (and ``dcterms:isPartOf``) its parent's activity.
    """

    TRAINING: ClassVar[Context]
    VALIDATION: ClassVar[Context]
    EVALUATION: ClassVar[Context]
    TESTING: ClassVar[Context]

    __slots__ = ()

    def __new__(cls, name: str) -> Context:
        if isinstance(name, Context):
            return name
        if not isinstance(name, str) or not name:
            from yprov_hpc.core.errors import InvalidKeyError

            raise InvalidKeyError("Context", name)
        if not name.isascii() and not utf8_encodable(name):
            from yprov_hpc.core.errors import InvalidKeyError

            raise InvalidKeyError("Context", name, UTF8_EXPECTED)
        lowered = name.lower()  # may be longer than name: "İ".lower() is 2 characters
        if len(lowered) > MAX_CONTEXT_CHARS:
            from yprov_hpc.core.errors import LimitExceededError

            raise LimitExceededError("Context", "name", name, f"at most {MAX_CONTEXT_CHARS} characters")
        return super().__new__(cls, lowered)

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
