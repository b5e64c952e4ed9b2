"""Importing the optional field libraries with an error that says what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from smdbus.button._errors import SourceUnavailable

_HINTS = {
    "evdev": "python-evdev (pip install 'smdbus[button]' or apt install python3-evdev)",
    "gpiod": "the libgpiod v2 binding gpiod>=2.1 (pip install 'smdbus[button]')",
}


def require(module: str) -> ModuleType:
    """``import module`` or raise :class:`SourceUnavailable` naming the package."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise SourceUnavailable(
            f"{module} is not importable ({e}); install {_HINTS[module]}"
        ) from e
