"""One warning per name: a yProv4ML keyword or behaviour that is accepted but not recorded here."""

from __future__ import annotations

import os
import sys
import threading
import warnings

__all__ = ["CompatWarning", "reset_warnings", "warn_once"]


class CompatWarning(UserWarning):
    """A yProv4ML argument or call was accepted but means something else, or nothing, here."""


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_warned: set[str] = set()
_lock = threading.Lock()


def warn_once(name: str, message: str) -> None:
    """Warn ``message`` the first time ``name`` is seen in this process, never again."""
    with _lock:
        if name in _warned:
            return
        _warned.add(name)
    warnings.warn(f"yprov (yProv4ML compatibility): {message}", CompatWarning, stacklevel=_user_level())


def _user_level() -> int:
    """The stack level of the first frame outside yprov_hpc, so the warning names the user's line."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


def ignored(call: str, **given: object) -> None:
    """Warn once for each keyword of ``call`` that was given (not None) but is not recorded here."""
    for name, value in given.items():
        if value is not None:
            warn_once(f"{call}.{name}", f"{call}({name}=...) is accepted but not recorded")


def reset_warnings() -> None:
    """Forget which names have warned (for tests)."""
    with _lock:
        _warned.clear()
